"""Three-way `.env` merge: the operator's file, the template it was made from, and the new template.

Parsing is python-dotenv's (quotes, escapes, multi-line values, `export`, inline comments, spaces
around `=`); values are compared parsed, so `"x"` equals `x`. Per key:

| case | result | category |
|---|---|---|
| user value equals the new default | user's line, byte for byte | unchanged |
| user value equals the old default, new default differs | new template's line | default_moved |
| user value differs from the old default | user's line; a conflict too if the default changed | customized / conflict |
| new in the template, absent from the user's file | template's line | added |
| in both templates, deleted from the user's file | stays deleted | deleted_kept |
| the same, but the target compose file requires it (`${VAR:?}`) | template's line | re_added |
| removed from the template, user had the old default | dropped | dropped |
| removed from the template, customized | kept at the end, flagged | removed_kept |
| never an active key of the old template | kept at the end | user_only |
| commented out by the user | stays commented | commented |

The result follows the new template's order, sections and comments; kept keys go to a marked section at
the end with their own comments. Nothing here touches a file; `core.env.envfile` writes.

Input that compose would read otherwise than python-dotenv, or that cannot be what the operator meant, is
refused with file and line (`parse`): a bare name without `=`, a quote that swallows the lines after it, a
name compose rejects, CRLF line endings, NUL bytes. A byte-order mark at the start is dropped, as compose
drops it, and noted. Templates that cannot be right are refused too (`check_templates`).
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

from core.env._dotenv_parser import parser as _dotenv

from core.env import envsecrets
from core.errors import EnvSyncError, TemplateImplausible

KEPT_HEADER = (
    "# ------------------------------------------------------------------\n"
    "# Kept by stackshift: keys of this .env that the template does not define.\n"
    "# ------------------------------------------------------------------\n"
)
BOM = "\ufeff"
CATEGORIES = ("added", "default_moved", "customized", "conflict", "dropped", "removed_kept", "user_only", "commented",
              "deleted_kept", "re_added")
BOM_NOTE = "removed the UTF-8 byte-order mark at the start of {path} (compose ignores it; the written file has none)"
# `check_templates`: two releases of one template share at least this share of the smaller one's keys, and a
# template defines at least this share of the keys of a .env made from it (one of MIN_ENV_KEYS keys or more).
MIN_SHARED_BY_TEMPLATES = 0.25
MIN_SHARED_WITH_ENV = 0.1
MIN_ENV_KEYS = 5

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
        self.path, self.line = path, line
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


is_secret = envsecrets.is_secret  # the detector lives in core.env.envsecrets; this name is kept for callers


def check_templates(user: EnvDoc, old: EnvDoc, new: EnvDoc) -> None:
    """Refuses templates that cannot be right: empty, or sharing almost no keys with each other or the .env.

    An empty new template would cut the .env down to its customizations; an empty or foreign old template
    would turn every value into a customization, so stale defaults (`DB_HOST=db`) would never move.
    """
    for doc, role in ((old, "old"), (new, "new")):
        if not doc.values:
            raise TemplateImplausible(doc.path, "it has no KEY=value line",
                                      f"the {role} template is the application's .env.example, which defines its "
                                      f"keys")
    shared = len(old.values.keys() & new.values.keys())
    smaller = min(len(old.values), len(new.values))
    if shared < MIN_SHARED_BY_TEMPLATES * smaller:
        raise TemplateImplausible(new.path, f"it shares {shared} of its {len(new.values)} keys with the old template "
                                            f"{old.path} ({len(old.values)} keys)",
                                  f"two releases of one .env.example share far more (at least "
                                  f"{MIN_SHARED_BY_TEMPLATES:.0%} of the smaller one's keys)")
    if len(user.values) < MIN_ENV_KEYS:
        return
    for doc, role in ((old, "old"), (new, "new")):
        known = len(user.values.keys() & doc.values.keys())
        if known < MIN_SHARED_WITH_ENV * len(user.values):
            raise TemplateImplausible(doc.path, f"it defines {known} of the {len(user.values)} keys of {user.path}",
                                      f"the {role} template of the application the .env belongs to defines far "
                                      f"more of them (at least {MIN_SHARED_WITH_ENV:.0%})")


@dataclass
class Change:
    key: str
    category: str
    before: str | None
    after: str | None
    template_old: str | None = None
    template_new: str | None = None
    note: str = ""  # what a check found about this key (e.g. an accepted conflict), already safe to show


@dataclass
class MergeResult:
    text: str
    changes: list[Change]
    unchanged: int
    notes: list[str] = field(default_factory=list)  # about the file as a whole (e.g. a dropped byte-order mark)

    @property
    def by_category(self) -> dict[str, list[str]]:
        """Key names per category, every category present (a check may add a change after the merge)."""
        return {c: [ch.key for ch in self.changes if ch.category == c] for c in CATEGORIES}

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.by_category.items()} | {"unchanged": self.unchanged}

    def change(self, key: str) -> Change | None:
        return next((c for c in self.changes if c.key == key), None)


def _comments_above(doc: EnvDoc, index: int) -> list[str]:
    """The comment lines directly above line `index` (the key's own comments), up to stackshift's header.

    The header is a boundary: the comments above it belong to the template (a key the operator deleted
    leaves its template comment just above the header).
    """
    header = {h.strip() for h in KEPT_HEADER.splitlines()}
    out: list[str] = []
    i = index - 1
    while i >= 0 and doc.lines[i].key is None and doc.lines[i].commented_key is None and doc.lines[i].text.lstrip().startswith("#"):
        if doc.lines[i].text.strip() in header:  # the parser folds blank lines into the next line
            break
        out.insert(0, doc.lines[i].text)
        i -= 1
    return out


def merge(user: EnvDoc, old: EnvDoc, new: EnvDoc, required: frozenset[str] = frozenset()) -> MergeResult:
    """Merges the operator's env `user`, made from template `old`, onto template `new`.

    Args:
        required: variables the target compose file requires (`${VAR:?}`); a key the operator deleted comes
            back only if it is one of them.
    """
    out: list[str] = []
    changes: list[Change] = []
    unchanged = 0
    # Keys the user commented out; a commented key that a template comments too is the template's comment.
    user_commented = user.commented() - old.commented() - new.commented()
    user_commented_line = {ln.commented_key: ln.text for ln in user.lines if ln.commented_key in user_commented}
    placed: set[str] = set()
    for ln in new.lines:
        if ln.key is None:
            if ln.commented_key in user.values and ln.commented_key not in new.values:
                # Only commented in the template, set by the user: the user's line replaces the comment.
                key = ln.commented_key
                out.append(user.lines[_index(user, key)].text)
                placed.add(key)
                changes.append(Change(key, "user_only", user.values[key], user.values[key]))
                continue
            out.append(ln.text)
            continue
        key, n, o = ln.key, ln.value, old.values.get(ln.key)
        placed.add(key)
        if key in user.values:
            u = user.values[key]
            if u == n:
                out.append(user.lines[_index(user, key)].text)
                unchanged += 1
            elif key in old.values and u == o:
                out.append(ln.text)
                changes.append(Change(key, "default_moved", u, n, o, n))
            else:
                out.append(user.lines[_index(user, key)].text)
                category = "conflict" if key in old.values and n != o else "customized"
                changes.append(Change(key, category, u, u, o, n))
        elif key in user_commented:
            out.append(user_commented_line[key])
            changes.append(Change(key, "commented", None, None, o, n))
        elif key in old.values and key not in required:
            changes.append(Change(key, "deleted_kept", None, None, o, n))  # the operator deleted it: keep that
        elif key in old.values:
            out.append(ln.text)
            changes.append(Change(key, "re_added", None, n, o, n))
        else:
            out.append(ln.text)
            changes.append(Change(key, "added", None, n, o, n))
    if out and not out[-1].endswith("\n"):
        out[-1] += "\n"

    kept: list[str] = []
    for i, ln in enumerate(user.lines):
        key = ln.key or (ln.commented_key if ln.commented_key in user_commented else None)
        if key is None or key in placed or key in new.values:
            continue
        if ln.key is None:  # commented by the user, and not in the new template: keep the comment.
            kept += _comments_above(user, i) + [ln.text]
            continue
        u = user.values[key]
        if key in old.values and u == old.values[key]:
            changes.append(Change(key, "dropped", u, None, old.values[key], None))
            continue
        category = "removed_kept" if key in old.values else "user_only"
        changes.append(Change(key, category, u, u, old.values.get(key), None))
        kept += _comments_above(user, i) + [ln.text if ln.text.endswith("\n") else ln.text + "\n"]
    if kept:
        out.append("\n" + KEPT_HEADER)
        out += kept
    notes = [BOM_NOTE.format(path=user.path)] if user.bom else []
    return MergeResult("".join(out), changes, unchanged, notes=notes)


def _index(doc: EnvDoc, key: str) -> int:
    return doc.index[key]


def masked_changes(result: MergeResult, extra_secret_keys: frozenset[str] = frozenset()) -> list[dict]:
    """The changes as rows safe to show anyone: a secret value is only ever `(secret)` or `(unset)`.

    This is the one source of every env value stackshift shows: the CLI's report, the flow's markdown and
    table artifacts. A key is secret when its name, the operator's list, or any of its four values says so.
    """
    rows = []
    for c in result.changes:
        secret = is_secret(c.key, c.before, c.after, c.template_old, c.template_new, extra_keys=extra_secret_keys)
        rows.append({"key": c.key, "category": c.category, "before": envsecrets.shown(c.before, secret),
                     "after": envsecrets.shown(c.after, secret),
                     "new_default": envsecrets.shown(c.template_new, secret), "secret": secret, "note": c.note})
    return rows


class ComposeRejectsEnv(EnvSyncError):
    """`docker compose config` of the target refuses the merged env (e.g. a `${VAR:?}` left empty)."""
