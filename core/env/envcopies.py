"""The operator's existing `envs/**/*.env` copies (Dify 1.14+), each merged against its own templates.

A copy `envs/x/y.env` is made from `envs/x/y.env.example`. It is merged the same three-way way as `.env`
(`core.env.envmerge.merge`): the base is the deployed release's `envs/x/y.env.example`, the new side the target's.
A key that left the copy's template for another target template (or for the root `.env.example`) is `moved`, not
`dropped`. When the deployed release had no such template (a copy made ahead of time, or the old release's folder
not given), the base is the target's template itself: nothing counts as a stale default then, every value that
differs from the target's default is kept as the operator's, and a note says so.

A copy the compose file loads whose template the target does not ship cannot be merged: refused
(EnvTemplateMissing) before anything is written.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.env import envmerge
from core.env.envdoc import EnvDoc, parse, read_env_file
from core.env.envlayout import ROOT_TEMPLATE, Elsewhere, EnvLayout, Home, existing_copies, homes, template_of
from core.errors import EnvSyncError

NO_BASE_NOTE = ("{copy}: the deployed release has no {template} (looked in {where}), so it is merged against the "
                "target's template only: no value of it counts as a stale default, every value that differs from "
                "the target's default is kept")


class EnvTemplateMissing(EnvSyncError):
    """An `envs/**` env file the operator has, and the target's compose file loads, but whose template the target
    does not ship: it cannot be merged."""

    def __init__(self, copy: str, template: str, where: Path):
        self.copy, self.template = copy, template
        super().__init__(f"{copy} exists and the target's compose file loads it, but the target ships no {template} "
                         f"(looked in {where}) to merge it against. Check that the compose file belongs to the target "
                         f"release and that its envs/ folder is complete (`git status`, `git checkout -- envs`); "
                         f"nothing was written.")


@dataclass(frozen=True)
class CopyMerge:
    """One copy merged: its path (relative to the project folder), the text read, and the merge's result."""

    path: str
    original: str
    result: envmerge.MergeResult

    @property
    def changed(self) -> bool:
        return self.result.text != self.original


def _others(templates: dict[str, EnvDoc], own: str, root: EnvDoc, layout: EnvLayout) -> Elsewhere:
    """Where a key that left this copy's template may now live: another target template, or the root template."""
    found = homes({p: d for p, d in templates.items() if p != own})
    for key, value in root.values.items():
        if key not in found:
            found[key] = Home(ROOT_TEMPLATE, root.lines[root.index[key]].text.lstrip("\n"), value)
    return Elsewhere(found, layout.interpolated)


def merge_copy(copy: str, text: str, old: EnvDoc | None, new: EnvDoc, others: Elsewhere, *,  # noqa: PLR0913 (the merge's three files and where keys went, then the target's requirements)
               required: frozenset[str] = frozenset()) -> CopyMerge:
    """Merges the copy `copy` (relative path; `text` as read) from template `old` (None: none in the deployed
    release) onto `new`; each change names the file its key lives in after the upgrade."""
    user = parse(text, copy)
    template = template_of(copy)
    result = envmerge.merge(user, old if old is not None else new, new, required, others)
    for c in result.changes:
        if c.key in new.values:
            c.file = template
        elif c.file == ".env":
            c.file = copy
        if c.category == "moved" and c.file != template:
            c.note = c.note.replace("kept in .env, which every service loads last", f"kept in {copy}")
    return CopyMerge(copy, text, result)


def merge_copies(project_dir: Path, layout: EnvLayout, templates: dict[str, EnvDoc], root: EnvDoc, *,  # noqa: PLR0913 (the target's layout and templates, then the deployed release's)
                 old_dir: Path | None, required: frozenset[str] = frozenset()) -> list[CopyMerge]:
    """Every existing `envs/**.env` copy the layout loads, merged (in path order).

    Args:
        templates: the target's `envs/**/*.env.example` (`envlayout.read_templates`).
        root: the target's root `.env.example`.
        old_dir: the deployed release's folder holding its `.env.example` and `envs/` (None: not known).

    Raises EnvTemplateMissing for a copy without a target template, EnvParseError for one that cannot be read.
    """
    merged = []
    for copy in existing_copies(project_dir, layout):
        template = template_of(copy)
        if template not in templates:
            raise EnvTemplateMissing(copy, template, project_dir / "envs")
        text = read_env_file(project_dir / copy, "envs env file")
        old_path = old_dir / template if old_dir is not None else None
        old = parse(read_env_file(old_path, "old envs template"), str(old_path)) \
            if old_path is not None and old_path.is_file() else None
        done = merge_copy(copy, text, old, templates[template], _others(templates, template, root, layout),
                          required=required)
        if old is None:
            done.result.notes.append(NO_BASE_NOTE.format(copy=copy, template=template,
                                                         where=old_dir if old_dir is not None else "nowhere"))
        merged.append(done)
    return merged


__all__ = ["CopyMerge", "EnvTemplateMissing", "merge_copies", "merge_copy"]
