"""Migration SQL cut into statements, each parsed by pglast (PostgreSQL's own scanner and grammar).

A migration tool may print more than SQL on the stream it renders to: its log records (timestamps, levels), a
failed connection attempt over several lines, "Generating sql for upgrade", a warning that work is skipped offline.
`set_aside` finds that text between (and, for log records, inside) statements and blanks it out, offsets kept, so
every real statement is still analysed where it is and the rest is listed apart; nothing here raises."""
from __future__ import annotations

import re
from typing import cast

import pglast
from pglast import ast


# The words a SQL statement can start with (PostgreSQL's commands): a line that starts another way, between two
# statements, is not SQL.
_STATEMENT_WORDS = frozenset({
    "ABORT", "ALTER", "ANALYZE", "ANALYSE", "BEGIN", "CALL", "CHECKPOINT", "CLOSE", "CLUSTER", "COMMENT", "COMMIT",
    "COPY", "CREATE", "DEALLOCATE", "DECLARE", "DELETE", "DISCARD", "DO", "DROP", "END", "EXECUTE", "EXPLAIN",
    "FETCH", "GRANT", "IMPORT", "INSERT", "LISTEN", "LOAD", "LOCK", "MERGE", "MOVE", "NOTIFY", "PREPARE", "REASSIGN",
    "REFRESH", "REINDEX", "RELEASE", "RESET", "REVOKE", "ROLLBACK", "SAVEPOINT", "SECURITY", "SELECT", "SET", "SHOW",
    "START", "TABLE", "TRUNCATE", "UNLISTEN", "UPDATE", "VACUUM", "VALUES", "WITH"})
_FIRST_WORD = re.compile(r"\s*([A-Za-z_]+)(?=[\s;(]|$)")
# A log record, wherever it comes: a timestamp or a level first (`2026-05-04T18:02:11 INFO …`, `INFO  [alembic…]`).
_LOG_RECORD = re.compile(r"^\s*(?:\[?\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}"
                         r"|\[?(?:DEBUG|INFO|WARN|WARNING|ERROR|CRITICAL|FATAL)\b[\]:\s])")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$")


def set_aside(sql: str) -> tuple[str, list[tuple[int, str]]]:
    """The SQL with every line that is not SQL blanked out (spaces, so offsets and line numbers stay), and those
    lines as (line number, text). Between statements, a line is SQL when it is blank, a comment, or starts with a
    statement's first word; a log record is set aside even inside a statement (not inside a quote or comment)."""
    lines = sql.splitlines(keepends=True)
    kept, aside = [], []
    scan = _Scanner()
    for number, line in enumerate(lines, start=1):
        text = line.rstrip("\r\n")
        between = scan.between()
        if scan.outside_quotes() and text.strip() and (
                _LOG_RECORD.match(text) or (between and not _starts_sql(text))):
            aside.append((number, text))
            kept.append(" " * len(text) + line[len(text):])
            continue
        scan.feed(line)
        kept.append(line)
    return "".join(kept), aside


def split_statements(sql: str) -> list[tuple[int, str]]:
    """(character offset, text) of each statement, by PostgreSQL's own scanner, so a statement the grammar
    rejects is still one piece; when the scanner rejects the text itself (a stray quote), cut at each `;` that ends
    a line outside quotes instead. Comment-only pieces are dropped (they hold no statement). Never raises."""
    try:
        raw = sql.encode("utf-8")
        pieces = [(len(raw[:sl.start].decode("utf-8", errors="ignore")), raw[sl].decode("utf-8", errors="replace"))
                  for sl in pglast.split(sql, with_parser=False, only_slices=True)]
    except Exception:  # pglast's ParseError, or anything its scanner trips on
        pieces = _Scanner.pieces(sql)
    out = []
    for start, piece in pieces:
        code = _code_start(piece)
        if _strip_comments(piece):
            out.append((start + code, piece[code:].strip().removesuffix(";").rstrip()))
    return out


def _starts_sql(line: str) -> bool:
    stripped = line.lstrip()
    if stripped.startswith(("--", "/*", ";")):
        return True
    m = _FIRST_WORD.match(line)
    return m is not None and m.group(1).upper() in _STATEMENT_WORDS


class _Scanner:
    """Where the text read so far stands: inside a quote, a comment or a dollar-quoted body, and whether a
    statement has begun and not yet ended with `;`."""

    def __init__(self) -> None:
        self.quote: str | None = None   # "'", '"', "/*" or a dollar tag
        self.open = False               # a statement has begun (text other than comments since the last `;`)

    def between(self) -> bool:
        return self.quote is None and not self.open

    def outside_quotes(self) -> bool:
        return self.quote is None

    def feed(self, text: str) -> list[int]:
        """Reads `text`; returns the offsets (in it) just after each `;` that ends a statement."""
        ends: list[int] = []
        i = 0
        while i < len(text):
            ch = text[i]
            if self.quote is not None:
                close = "*/" if self.quote == "/*" else self.quote
                j = text.find(close, i)
                if j < 0:
                    return ends
                i, self.quote = j + len(close), None
                continue
            if text.startswith("--", i):
                j = text.find("\n", i)
                i = len(text) if j < 0 else j
                continue
            if text.startswith("/*", i) or ch in "'\"":
                self.quote, self.open = ("/*" if ch == "/" else ch), self.open or ch != "/"
                i += 2 if ch == "/" else 1
                continue
            dollar = _DOLLAR_TAG.match(text, i) if ch == "$" else None
            if dollar:
                self.quote, self.open = dollar.group(0), True
                i = dollar.end()
                continue
            if ch == ";":
                self.open = False
                ends.append(i + 1)
            elif not ch.isspace():
                self.open = True
            i += 1
        return ends

    @classmethod
    def pieces(cls, sql: str) -> list[tuple[int, str]]:
        """The text cut after each statement-ending `;` (the scanner's fallback)."""
        starts = [0, *cls().feed(sql)]
        return [(a, sql[a:b]) for a, b in zip(starts, [*starts[1:], len(sql)], strict=True) if sql[a:b].strip()]


def parse(text: str) -> ast.Node:
    """The parse node of one statement's text; raises pglast's ParseError when the grammar rejects it."""
    # pglast types every node field Optional; a parsed RawStmt always holds its statement.
    return cast(ast.Node, pglast.parse_sql(text)[0].stmt)


def line_of(sql: str, offset: int) -> int:
    return sql.count("\n", 0, offset) + 1


def _code_start(s: str) -> int:
    """Offset of the first character that is neither blank nor inside a leading comment."""
    i = 0
    while i < len(s):
        if s[i].isspace():
            i += 1
        elif s.startswith("--", i):
            nl = s.find("\n", i)
            i = len(s) if nl < 0 else nl + 1
        elif s.startswith("/*", i):
            end = s.find("*/", i + 2)
            i = len(s) if end < 0 else end + 2
        else:
            break
    return i


def _strip_comments(text: str) -> str:
    return re.sub(r"--[^\n]*|/\*.*?\*/", "", text, flags=re.S).strip().strip(";").strip()
