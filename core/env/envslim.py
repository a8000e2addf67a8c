"""`--slim`: the essentials-only `.env` of Dify's split layout (1.14+), asked for explicitly, never by default.

The slim `.env` holds every key of the target's root `.env.example` (the essentials, merged as usual) plus the
operator's own values: customized and conflicting keys, keys no template defines, keys the compose file reads
(`interpolated`), and every moved key whose value is not the target's default. A moved key that is at the default of
the `envs/**` template it now lives in is taken out (`moved_out`), with its comments; the report says why. Nothing
else is created: no `envs/**.env` copy is written.

A key taken out is set by no env file any more, or only by an `envs/**.env` copy to the same value (one that a
copy sets to another value stays: `.env` overrides that copy, and taking it out would change the value). Services
that load no such copy then get no value for it from env files: the application's built-in default applies, which
the template documents; an `environment:` entry of the compose file still sets its own. The report's per-service
values show what each service gets.
"""
from __future__ import annotations

from collections.abc import Mapping

from core.env import envsecrets
from core.env.envdoc import EnvDoc, parse
from core.env.envmerge import KEPT_HEADER, MergeResult

MOVED_OUT_NOTE = ("--slim: at the target's default ({file}: {default}), so taken out of .env; no env file sets it now "
                  "and services get the application's built-in default, which {file} documents (copy that template "
                  "to {copy} to set it yourself)")
_HEADER = [h.strip() for h in KEPT_HEADER.splitlines() if h.strip()]


def removable(result: MergeResult, copies: Mapping[str, EnvDoc]) -> list[str]:
    """The moved keys `--slim` takes out of `.env`: at their new home's default, and set to no other value by an
    existing copy (whose value `.env` overrides now)."""
    return [c.key for c in result.changes if c.category == "moved" and c.after == c.template_new
            and all(doc.values.get(c.key, c.after) == c.after for doc in copies.values())]


def slim(result: MergeResult, copies: Mapping[str, EnvDoc],
         extra_secret_keys: frozenset[str] = frozenset()) -> list[str]:
    """Takes the `removable` keys out of `result` (its text, and each change becomes `moved_out` with the reason);
    returns them."""
    keys = removable(result, copies)
    if not keys:
        return []
    doc = parse(result.text)
    header = _header_at(doc)
    drop: set[int] = set()
    for key in keys:
        i = doc.index[key]
        drop.add(i)
        j = i - 1
        while j > header and doc.lines[j].key is None and doc.lines[j].commented_key is None \
                and doc.lines[j].text.lstrip().startswith("#"):
            drop.add(j)
            j -= 1
    kept = [ln for i, ln in enumerate(doc.lines) if i not in drop]
    if header >= 0 and not any(ln.key or ln.commented_key for ln in kept[header + 1:]):
        kept = kept[:header - len(_HEADER) + 1]  # nothing left in the kept section: its header goes too
    result.text = "".join(ln.text for ln in kept)
    for c in result.changes:
        if c.key in keys:
            copy = c.file.removesuffix(".example")
            c.category, c.after = "moved_out", None
            default = envsecrets.shown(c.template_new, envsecrets.is_secret(c.key, c.before, c.template_new,
                                                                            extra_keys=extra_secret_keys))
            c.note = MOVED_OUT_NOTE.format(file=c.file, default=default, copy=copy)
    return keys


def _header_at(doc: EnvDoc) -> int:
    """The index of the kept section header's last line (-1: none)."""
    texts = [ln.text.strip() for ln in doc.lines]
    for i in range(len(texts) - len(_HEADER) + 1):
        if texts[i:i + len(_HEADER)] == _HEADER:
            return i + len(_HEADER) - 1
    return -1


__all__ = ["removable", "slim"]
