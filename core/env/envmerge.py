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
| left the root template, in a target `envs/**` template | kept in `.env`; a stale default set anew | moved |
| removed from every template, still read by the compose file's `${VAR}` | kept in `.env` | interpolated |
| removed from the template, user had the old default | dropped | dropped |
| removed from the template, customized | kept at the end, flagged | removed_kept |
| never an active key of the old template | kept at the end | user_only |
| commented out by the user | stays commented | commented |
| (`--slim`, `core.env.envslim`) moved, at its new home's default | taken out of `.env` | moved_out |
| (`core.env.secretgen`) a secret the compose file requires, left empty, generation asked | a random value | generated |

The result follows the new template's order, sections and comments; kept keys go to a marked section at
the end with their own comments. Nothing here touches a file; `core.env.envfile` writes.

Input that compose would read otherwise than python-dotenv, or that cannot be what the operator meant, is
refused with file and line (`parse`): a bare name without `=`, a quote that swallows the lines after it, a
name compose rejects, CRLF line endings, NUL bytes. A byte-order mark at the start is dropped, as compose
drops it, and noted. Templates that cannot be right are refused too (`check_templates`).
"""
from __future__ import annotations

from dataclasses import dataclass, field


from core.env import envsecrets
from core.env.envlayout import ROOT_ENV, ROOT_TEMPLATE, Elsewhere
from core.env.envdoc import (BOM, EnvDoc, EnvParseError, Line, parse, read_env_file,  # noqa: F401 (re-exported)
                             render)
from core.errors import EnvFileEmpty, EnvSyncError, TemplateImplausible

KEPT_HEADER = (
    "# ------------------------------------------------------------------\n"
    "# Kept by stackshift: keys of this .env that the template does not define.\n"
    "# ------------------------------------------------------------------\n"
)
CATEGORIES = ("added", "default_moved", "customized", "conflict", "moved", "moved_out", "interpolated", "dropped",
              "removed_kept", "user_only", "commented", "deleted_kept", "re_added", "generated")
MOVED_NOTE = "its default now lives in {file}; kept in .env, which every service loads last"
MOVED_DEFAULT_NOTE = ("its default now lives in {file} and changed: the old default you had is set to the new one in "
                      ".env (an envs/** template is not loaded by compose, so removing the key would leave the app's "
                      "built-in default)")
INTERPOLATED_NOTE = "no template defines it any more, but the compose file still reads ${{{key}}}: kept in .env"
BOM_NOTE = "removed the UTF-8 byte-order mark at the start of {path} (compose ignores it; the written file has none)"
# `check_templates`: two releases of one template share at least this share of the smaller one's keys, and a
# template defines at least this share of the keys of a .env made from it (one of MIN_ENV_KEYS keys or more).
MIN_SHARED_BY_TEMPLATES = 0.25
MIN_SHARED_WITH_ENV = 0.1
MIN_ENV_KEYS = 5

is_secret = envsecrets.is_secret  # the detector lives in core.env.envsecrets; this name is kept for callers

def check_env(user: EnvDoc, allow_empty: bool = False, override: str = "rerun with --allow-empty-env") -> None:
    """Refuses an operator's `.env` without any KEY=value line (unless `allow_empty`): a 0-byte or comments-only file
    is far more often a truncated one than an intended one."""
    if user.values or allow_empty:
        return
    finding = "it is empty (0 bytes)" if not user.lines else "it has no KEY=value line"
    raise EnvFileEmpty(user.path or ".env", finding, override)


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
    file: str = ""  # where the key's default lives after the upgrade (a template, or `.env` for the operator's own)


@dataclass
class MergeResult:
    text: str
    changes: list[Change]
    unchanged: int
    notes: list[str] = field(default_factory=list)  # about the file as a whole (e.g. a dropped byte-order mark)
    # per key whose env files disagree, what each service gets (`core.env.effective.disputed`): values unmasked,
    # in memory only; `core.env.effective.masked` makes them safe to show
    disputed: dict = field(default_factory=dict)

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
    while (i >= 0 and doc.lines[i].key is None and doc.lines[i].commented_key is None
           and doc.lines[i].text.lstrip().startswith("#")):
        if doc.lines[i].text.strip() in header:  # the parser folds blank lines into the next line
            break
        out.insert(0, doc.lines[i].text)
        i -= 1
    return out


def merge(user: EnvDoc, old: EnvDoc, new: EnvDoc, required: frozenset[str] = frozenset(),
          elsewhere: Elsewhere | None = None) -> MergeResult:
    """Merges the operator's env `user`, made from template `old`, onto template `new`.

    Args:
        required: variables the target compose file requires (`${VAR:?}`); a key the operator deleted comes
            back only if it is one of them.
        elsewhere: what the target's layout says besides the root template (`core.env.envlayout`): the keys its
            `envs/**` templates define (such a key is `moved`, never `dropped`) and the variables its compose file
            reads (such a key is kept, `interpolated`).
    """
    # Keys the user commented out; a commented key that a template comments too is the template's comment.
    user_commented = user.commented() - old.commented() - new.commented()
    out, changes, unchanged, placed = _along_the_new_template(user, old, new, required, user_commented)
    kept = _kept_from_the_users_file(user, old, new, placed=placed, user_commented=user_commented, changes=changes,
                                     elsewhere=elsewhere or Elsewhere({}, frozenset()))
    _locate(changes, new, elsewhere)
    if kept:
        out.append("\n" + KEPT_HEADER)
        out += kept
    notes = [BOM_NOTE.format(path=user.path)] if user.bom else []
    return MergeResult("".join(out), changes, unchanged, notes=notes)


def _along_the_new_template(user: EnvDoc, old: EnvDoc, new: EnvDoc, required: frozenset[str],
                            user_commented: set[str]) -> tuple[list[str], list[Change], int, set[str]]:
    """The new template's lines, each key decided by the table in the module's docstring: the lines written, the
    changes, how many keys were unchanged, and the keys placed."""
    out: list[str] = []
    changes: list[Change] = []
    unchanged = 0
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
            line, change = _set_by_the_user(user, old, key, ln)
            out.append(line)
            if change is None:
                unchanged += 1
            else:
                changes.append(change)
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
    return out, changes, unchanged, placed


def _set_by_the_user(user: EnvDoc, old: EnvDoc, key: str, ln: Line) -> tuple[str, Change | None]:
    """The line written for the new template's line `ln` (of `key`, which the operator's file sets), and its
    change (None: unchanged)."""
    n, o, u = ln.value, old.values.get(key), user.values[key]
    if u == n:
        return user.lines[_index(user, key)].text, None
    if key in old.values and u == o:
        return ln.text, Change(key, "default_moved", u, n, o, n)
    category = "conflict" if key in old.values and n != o else "customized"
    return user.lines[_index(user, key)].text, Change(key, category, u, u, o, n)


def _kept_from_the_users_file(user: EnvDoc, old: EnvDoc, new: EnvDoc, *,  # noqa: PLR0913 (the merge's three files, then its state so far)
                              placed: set[str], user_commented: set[str], changes: list[Change],
                              elsewhere: Elsewhere) -> list[str]:
    """The operator's lines the new template has no place for (kept at the end, with their comments); their
    changes are appended to `changes`."""
    kept: list[str] = []
    for i, ln in enumerate(user.lines):
        key = ln.key or (ln.commented_key if ln.commented_key in user_commented else None)
        if key is None or key in placed or key in new.values:
            continue
        if ln.key is None:  # commented by the user, and not in the new template: keep the comment.
            kept += _comments_above(user, i) + [ln.text]
            continue
        u = user.values[key]
        still_used = _still_used(user, old, key, elsewhere)
        if still_used is not None:
            line, change = still_used
            changes.append(change)
            kept += _comments_above(user, i) + [line if line.endswith("\n") else line + "\n"]
            continue
        if key in old.values and u == old.values[key]:
            changes.append(Change(key, "dropped", u, None, old.values[key], None))
            continue
        category = "removed_kept" if key in old.values else "user_only"
        changes.append(Change(key, category, u, u, old.values.get(key), None))
        kept += _comments_above(user, i) + [ln.text if ln.text.endswith("\n") else ln.text + "\n"]
    return kept


def _still_used(user: EnvDoc, old: EnvDoc, key: str, elsewhere: Elsewhere) -> tuple[str, Change] | None:
    """A key the root template no longer has but the target still uses: the line kept in `.env`, and its change
    (`moved` to an `envs/**` template, or `interpolated` by the compose file); None if the target does not use it."""
    u, o, home = user.values[key], old.values.get(key), elsewhere.homes.get(key)
    line = user.lines[_index(user, key)].text.lstrip("\n")
    if home is not None:
        if key in old.values and u == o and home.value != o:
            return home.text, Change(key, "moved", u, home.value, o, home.value,
                                     note=MOVED_DEFAULT_NOTE.format(file=home.file), file=home.file)
        return line, Change(key, "moved", u, u, o, home.value, note=MOVED_NOTE.format(file=home.file), file=home.file)
    if key in elsewhere.interpolated:
        return line, Change(key, "interpolated", u, u, o, None, note=INTERPOLATED_NOTE.format(key=key),
                            file="docker-compose.yaml")
    return None


def _locate(changes: list[Change], new: EnvDoc, elsewhere: Elsewhere | None) -> None:
    """Sets each change's `file`: the target template that holds the key's default, `.env` for the operator's own
    keys, nothing for a dropped one."""
    homes = elsewhere.homes if elsewhere else {}
    for c in changes:
        if c.file or c.category == "dropped":
            continue
        home = homes.get(c.key)
        c.file = ROOT_TEMPLATE if c.key in new.values else home.file if home else ROOT_ENV


def _index(doc: EnvDoc, key: str) -> int:
    return doc.index[key]


def masked_changes(result: MergeResult, extra_secret_keys: frozenset[str] = frozenset()) -> list[dict]:
    """The changes as rows safe to show anyone: a secret value is only ever `(secret)` or `(unset)`.

    This is the one source of every env value stackshift shows: the CLI's report, the flow's markdown and
    table artifacts. A key is secret when its name, the operator's list, or any of its four values says so.
    """
    rows = []
    for c in result.changes:
        secret = c.category == "generated" or is_secret(c.key, c.before, c.after, c.template_old, c.template_new,
                                                        extra_keys=extra_secret_keys)
        rows.append({"key": c.key, "category": c.category, "before": envsecrets.shown(c.before, secret),
                     "after": envsecrets.shown(c.after, secret),
                     "new_default": envsecrets.shown(c.template_new, secret), "secret": secret, "note": c.note,
                     "file": c.file})
    return rows


class ComposeRejectsEnv(EnvSyncError):
    """`docker compose config` of the target refuses the merged env (e.g. a `${VAR:?}` left empty)."""
