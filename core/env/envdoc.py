"""An env file as stackshift reads it: python-dotenv's parsing (quotes, escapes, multi-line values, `export`,
inline comments, spaces around `=`), with every line kept byte for byte so a merge can write it back.

Input that compose would read otherwise than python-dotenv, or that cannot be what the operator meant, is refused
with file and line (`parse`): a bare name without `=`, a quote that swallows the lines after it, a name compose
rejects, CRLF line endings, NUL bytes. A byte-order mark at the start is dropped, as compose drops it, and noted.
"""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field

from core.env._dotenv_parser import parser as _dotenv
from core.errors import EnvSyncError

BOM = "\ufeff"

_COMMENTED_KEY = re.compile(r"^\s*#\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=")
_OPENS_QUOTE = re.compile(r"^\s*(?:export\s+)?[^=#\s]+\s*=\s*['\"]")
# A line binding a key, as templates and operators write them (to spot lines a quote swallowed), and a line
# of a PEM or base64 body, which can look like one (`MIIB…=`).
_BINDING_LINE = re.compile(r"^(?:export\s+)?[A-Za-z_][A-Za-z0-9_.]*\s*=")
_BASE64_LINE = re.compile(r"^[A-Za-z0-9+/]+=*$")
_BAD_NAME_CHAR = re.compile(r"[^\w.\-\[\]]")  # compose's names: letters, digits, `_ . - [ ]`


class EnvParseError(EnvSyncError):
    """A file that cannot be read as an env file; the message names the file, the line and what to do."""

    def __init__(self, path: str, line: int | None, why: str, fix: str = "Fix that line"):
        self.path, self.line, self.why, self.fix = path, line, why, fix
        where = f"{path}, line {line}" if line else path
        super().__init__(f"{where}: {why}. {fix}; nothing was written.")


@dataclass
class Line:
    text: str
    key: str | None = None
    value: str | None = None
    commented_key: str | None = None


@dataclass
class EnvDoc:
    """A parsed env file: its lines in order, with the active keys' parsed values."""

    path: str
    lines: list[Line]
    values: dict[str, str | None]
    line_of: dict[str, int]
    index: dict[str, int] = field(default_factory=dict)  # key -> position in `lines`
    bom: bool = False  # the text began with a byte-order mark, which parsing dropped

    def commented(self) -> set[str]:
        return {ln.commented_key for ln in self.lines if ln.commented_key} - set(self.values)


# Fast path for the lines most files are made of: blank lines then a comment, or `KEY=value` with an unquoted
# value holding no `#` and no surrounding space. It yields exactly what python-dotenv's `parse_binding` yields
# for them (checked by tests/unit/test_envmerge_properties.py); anything else goes to `parse_binding` itself.
_SIMPLE = re.compile(
    r"(?P<ws>\s*)(?:(?P<comment>#[^\n]*\n?)"
    r"|(?:export[^\S\n]+)?(?P<key>[A-Za-z_][A-Za-z0-9_.]*)=(?P<value>[^\s'\"#][^\n#]*)?\n?)"
)


class _Position(_dotenv.Position):
    def advance(self, string: str) -> None:
        self.chars += len(string)
        self.line += string.count("\n")


def _bindings(text: str):
    """python-dotenv's bindings of `text`, in order."""
    if "\r" in text:  # rare: let python-dotenv handle every line-ending subtlety
        yield from _dotenv.parse_stream(io.StringIO(text))
        return
    reader = _dotenv.Reader(io.StringIO(text))
    reader.position, reader.mark = _Position.start(), _Position.start()
    end = len(text)
    while reader.position.chars < end:
        pos = reader.position.chars
        m = _SIMPLE.match(text, pos)
        if m and (m.group("comment") is not None or m.group("key")) and (m.end() == end or text[m.end() - 1] == "\n"):
            original = _dotenv.Original(m.group(0), reader.position.line)
            reader.position.advance(m.group(0))
            if m.group("comment") is not None:
                yield _dotenv.Binding(None, None, original, False)
            else:
                yield _dotenv.Binding(m.group("key"), (m.group("value") or "").rstrip(), original, False)
            continue
        yield _dotenv.parse_binding(reader)


def parse(text: str, path: str = "<env>") -> EnvDoc:
    """Parses env text; raises EnvParseError (file, line, what to do) on input compose would read otherwise.

    A byte-order mark at the start is dropped, as compose drops it, and recorded in `EnvDoc.bom`.
    """
    bom = text.startswith(BOM)
    text = text[1:] if bom else text
    _refuse_unreadable_text(text, path)
    lines: list[Line] = []
    values: dict[str, str | None] = {}
    line_of: dict[str, int] = {}
    index: dict[str, int] = {}
    for b in _bindings(text):
        if b.error:
            raise EnvParseError(path, _first_line(b.original), *_why_unparsable(b.original.string))
        if b.key is None:
            m = _COMMENTED_KEY.match(b.original.string)
            lines.append(Line(b.original.string, commented_key=m.group(1) if m else None))
            continue
        _refuse_misread_binding(b, path)
        if b.key in values:
            raise EnvParseError(path, _first_line(b.original),
                                f"duplicate key {b.key} (first on line {line_of[b.key]})")
        values[b.key] = b.value
        line_of[b.key] = _first_line(b.original)
        index[b.key] = len(lines)
        lines.append(Line(b.original.string, key=b.key, value=b.value))
    return EnvDoc(path, lines, values, line_of, index, bom)


def _line_of(text: str, char: str) -> int:
    return text[:text.index(char)].count("\n") + 1


def _first_line(original) -> int:
    """The line a binding's own text starts on (python-dotenv counts from the blank lines before it)."""
    text = original.string
    return original.line + text[:len(text) - len(text.lstrip())].count("\n")


def _body_lines(original) -> list[str]:
    """A binding's lines, from its own first line (without the blank lines before it)."""
    return original.string.lstrip().rstrip("\n").split("\n")


def _refuse_unreadable_text(text: str, path: str) -> None:
    """Refuses NUL bytes, carriage returns and a byte-order mark past the start, naming the first line."""
    if "\x00" in text:
        raise EnvParseError(path, _line_of(text, "\x00"), "the file is binary (it contains NUL bytes)",
                            "Give the env file itself")
    if "\r" in text:
        raise EnvParseError(path, _line_of(text, "\r"), "the file has Windows line endings (CRLF); stackshift writes "
                                                       "LF and would mix the two",
                            f"Convert it first (`sed -i 's/\\r$//' {path}` or `dos2unix {path}`), then run again")
    if BOM in text:
        raise EnvParseError(path, _line_of(text, BOM), "a byte-order mark (U+FEFF) inside the file, which compose "
                                                      "rejects", "Delete it (most editors do not show it)")


def _why_unparsable(original: str) -> tuple[str, str]:
    """Why python-dotenv rejected one binding's text, and what to do, in an operator's words."""
    if _OPENS_QUOTE.match(original):
        more = original.strip().count("\n")
        if more:
            return (f"the quote opened on this line closes only {more} line(s) further down, and text follows it "
                    f"there", "Close the quote on this line (or escape a quote inside the value with a backslash)")
        return ("the quote opened on this line is not closed on it, or text that is not a comment follows it",
                "Close the quote, and put a space before any `#` comment after it")
    return "not a KEY=value line, comment or blank line", "Fix that line"


def _refuse_misread_binding(b, path: str) -> None:
    """Refuses bindings python-dotenv takes but compose reads otherwise, and quotes that swallow lines."""
    key, line = b.key, _first_line(b.original)
    if b.value is None:
        raise EnvParseError(path, line, f"`{key}` has no `=`: a bare name, which compose fills from the shell's "
                                        f"environment", f"Write `{key}=` (empty) or `{key}=value`, or comment it out")
    bad = _BAD_NAME_CHAR.search(key)
    if bad:
        raise EnvParseError(path, line, f"the name {key!r} holds {bad.group(0)!r}, which compose rejects in a name",
                            "Rename the key (letters, digits, `_ . - [ ]`)")
    inner = _body_lines(b.original)[1:]
    if not inner or not _OPENS_QUOTE.match(b.original.string):
        return
    for offset, text in enumerate(inner, 1):
        if _BINDING_LINE.match(text) and not _BASE64_LINE.match(text.strip()):
            swallowed = text.split("=", 1)[0].strip()
            raise EnvParseError(path, line, f"the quote opened on this line closes only on line {line + len(inner)}, "
                                            f"so line {line + offset} (`{swallowed}=…`) is read as part of {key}'s "
                                            f"value", "Close the quote on this line (or escape a quote inside the "
                                                      "value with a backslash)")


def read_env_file(path, label: str = "env file") -> str:
    """The text of an env file or template; EnvParseError (naming the file) if it cannot be read as UTF-8 text."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        raise EnvParseError(str(p), None, f"the {label} is a directory, not a file",
                            f"Give the path of the {label} itself")
    if p.is_symlink() and not p.exists():
        raise EnvParseError(str(p), None, f"the {label} is a symlink to {os.readlink(p)}, which does not exist",
                            "Point the link at the file, or restore the file it names")
    if not p.exists():
        raise EnvParseError(str(p), None, f"the {label} does not exist", "Check the path")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise EnvParseError(str(p), None, f"the {label} cannot be read ({exc.strerror})",
                            "Check its permissions, or run as its owner") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EnvParseError(str(p), data[:exc.start].count(b"\n") + 1, "the file is not UTF-8 text",
                            "Save it as UTF-8") from None


def render(doc: EnvDoc) -> str:
    return "".join(ln.text for ln in doc.lines)


