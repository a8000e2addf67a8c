"""Three-way `.env` merge: the operator's file, the template it was made from, and the new template.

Parsing is python-dotenv's (quotes, escapes, multi-line values, `export`, inline comments, spaces
around `=`); values are compared parsed, so `"x"` equals `x`. Per key:

| case | result | category |
|---|---|---|
| user value equals the new default | user's line, byte for byte | unchanged |
| user value equals the old default, new default differs | new template's line | default_moved |
| user value differs from the old default | user's line; a conflict too if the default changed | customized / conflict |
| new in the template, absent from the user's file | template's line | added |
| removed from the template, user had the old default | dropped | dropped |
| removed from the template, customized | kept at the end, flagged | removed_kept |
| never an active key of the old template | kept at the end | user_only |
| commented out by the user | stays commented | commented |

The result follows the new template's order, sections and comments; kept keys go to a marked section at
the end with their own comments. Nothing here touches a file; `core.envfile` writes.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

from core._dotenv_parser import parser as _dotenv

from core.errors import EnvSyncError

KEPT_HEADER = (
    "# ------------------------------------------------------------------\n"
    "# Kept by stackshift: keys of this .env that the template does not define.\n"
    "# ------------------------------------------------------------------\n"
)
_COMMENTED_KEY = re.compile(r"^\s*#\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=")
_SECRET_KEY = re.compile(r"PASSWORD|PASSWD|SECRET|KEY|TOKEN|CREDENTIAL|PRIVATE|DSN|AUTH|SALT|CERT|PEM", re.I)
_SECRET_VALUE = re.compile(r"://[^/\s:@]+:[^/\s@]+@|-----BEGIN ")  # a URL with a password, a PEM block
CATEGORIES = ("added", "default_moved", "customized", "conflict", "dropped", "removed_kept", "user_only", "commented")


class EnvParseError(EnvSyncError):
    def __init__(self, path: str, line: int, why: str):
        self.path, self.line = path, line
        super().__init__(f"{path}, line {line}: {why}. Fix that line; nothing was written.")


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
    """Parses env text; raises EnvParseError (file and line) on a line the parser rejects or a duplicate key."""
    if "\x00" in text:
        raise EnvParseError(path, 1, "the file is binary (it contains NUL bytes)")
    lines: list[Line] = []
    values: dict[str, str | None] = {}
    line_of: dict[str, int] = {}
    index: dict[str, int] = {}
    for b in _bindings(text):
        if b.error:
            raise EnvParseError(path, b.original.line, "not a KEY=value line, comment or blank line")
        if b.key is None:
            m = _COMMENTED_KEY.match(b.original.string)
            lines.append(Line(b.original.string, commented_key=m.group(1) if m else None))
            continue
        if b.key in values:
            raise EnvParseError(path, b.original.line, f"duplicate key {b.key} (first on line {line_of[b.key]})")
        values[b.key] = b.value
        line_of[b.key] = b.original.line
        index[b.key] = len(lines)
        lines.append(Line(b.original.string, key=b.key, value=b.value))
    return EnvDoc(path, lines, values, line_of, index)


def read_env_file(path, label: str = "env file") -> str:
    """The text of an env file or template; EnvParseError (naming the file) if it is missing or not UTF-8."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise EnvParseError(str(p), 0, f"the {label} does not exist")
    data = p.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EnvParseError(str(p), data[:exc.start].count(b"\n") + 1, "the file is not UTF-8 text") from None


def render(doc: EnvDoc) -> str:
    return "".join(ln.text for ln in doc.lines)


def is_secret(key: str, *values: str | None, extra_keys: frozenset[str] = frozenset()) -> bool:
    """True for keys whose values must never be shown (name patterns, DSNs with a password, marked keys)."""
    return key in extra_keys or bool(_SECRET_KEY.search(key)) or any(v and _SECRET_VALUE.search(v) for v in values)


@dataclass
class Change:
    key: str
    category: str
    before: str | None
    after: str | None
    template_old: str | None = None
    template_new: str | None = None


@dataclass
class MergeResult:
    text: str
    changes: list[Change]
    unchanged: int
    by_category: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self):
        self.by_category = {c: [ch.key for ch in self.changes if ch.category == c] for c in CATEGORIES}

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.by_category.items()} | {"unchanged": self.unchanged}


def _comments_above(doc: EnvDoc, index: int) -> list[str]:
    """The comment lines directly above line `index` (the key's own comments), minus stackshift's header."""
    out: list[str] = []
    i = index - 1
    while i >= 0 and doc.lines[i].key is None and doc.lines[i].commented_key is None and doc.lines[i].text.lstrip().startswith("#"):
        out.insert(0, doc.lines[i].text)
        i -= 1
    header = {h.strip() for h in KEPT_HEADER.splitlines()}
    return [ln for ln in out if ln.strip() not in header]  # the parser folds blank lines into the next line


def merge(user: EnvDoc, old: EnvDoc, new: EnvDoc) -> MergeResult:
    """Merges the operator's env `user`, made from template `old`, onto template `new`."""
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
    return MergeResult("".join(out), changes, unchanged)


def _index(doc: EnvDoc, key: str) -> int:
    return doc.index[key]


def masked_changes(result: MergeResult, extra_secret_keys: frozenset[str] = frozenset()) -> list[dict]:
    """The changes as rows safe to show anyone: secret values are only ever 'changed', 'set' or 'unset'."""
    rows = []
    for c in result.changes:
        secret = is_secret(c.key, c.before, c.after, c.template_old, c.template_new, extra_keys=extra_secret_keys)

        def show(v: str | None) -> str:
            if v is None:
                return "(unset)"
            return "(secret)" if secret else v

        rows.append({"key": c.key, "category": c.category, "before": show(c.before), "after": show(c.after),
                     "new_default": show(c.template_new), "secret": secret})
    return rows


class ComposeRejectsEnv(EnvSyncError):
    pass


def check_compose(env_text: str, compose_file) -> None:
    """Runs `docker compose config` of `compose_file` with the merged env; raises if compose rejects it
    (e.g. a `${VAR:?}` left empty). Compose's message names variables, never their values."""
    import subprocess
    import tempfile
    from pathlib import Path

    from core.envfile import write_atomic

    with tempfile.TemporaryDirectory(prefix="stackshift-env-") as tmp:
        env = Path(tmp) / ".env"
        write_atomic(env, env_text)
        done = subprocess.run(["docker", "compose", "--project-directory", str(Path(compose_file).parent),
                               "--file", str(compose_file), "--env-file", str(env), "config", "--quiet"],
                              capture_output=True, text=True)
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        raise ComposeRejectsEnv(f"`docker compose config` of {compose_file} rejects the merged env: {detail}. "
                                f"Set the variable in your .env; nothing was written.")
