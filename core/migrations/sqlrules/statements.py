"""Migration SQL cut into statements, each parsed by pglast (PostgreSQL's own scanner and grammar)."""
from __future__ import annotations

import re
from typing import cast

import pglast
from pglast import ast


def split_statements(sql: str) -> list[tuple[int, str]]:
    """(character offset, text) of each statement, by PostgreSQL's own scanner, so a statement the grammar
    rejects is still one piece. Comment-only pieces are dropped (they hold no statement)."""
    raw = sql.encode("utf-8")
    out = []
    for sl in pglast.split(sql, with_parser=False, only_slices=True):
        start = len(raw[:sl.start].decode("utf-8", errors="ignore"))
        piece = raw[sl].decode("utf-8", errors="replace")
        code = _code_start(piece)
        if _strip_comments(piece):
            out.append((start + code, piece[code:].strip()))
    return out


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
