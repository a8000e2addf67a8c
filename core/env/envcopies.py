"""The operator's existing `envs/**/*.env` copies (Dify 1.14+), each merged against its own templates.

A copy `envs/x/y.env` is made from `envs/x/y.env.example`. It is merged the same three-way way as `.env`
(`core.env.envmerge.merge`): the base is the deployed release's `envs/x/y.env.example`, the new side the target's.
A key that left the copy's template for another target template (or for the root `.env.example`) is `moved`, not
`dropped`. When the deployed release had no such template (a copy made ahead of time, or the old release's folder
not given), the base is the target's template itself: nothing counts as a stale default then, every value that
differs from the target's default is kept as the operator's, and a note says so.

A copy the compose file loads whose template the target does not ship cannot be merged: refused before anything
is written, as any env file a service loads without its template is (`envlayout.require_templates`,
EnvTemplatesMissing).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.env import envmerge
from core.env.envdoc import EnvDoc, parse, read_env_file
from core.env.envlayout import (ROOT_TEMPLATE, Elsewhere, EnvLayout, Home, existing_copies, homes, require_templates,
                                template_of)

NO_BASE_NOTE = ("{copy}: the deployed release has no {template} (looked in {where}), so it is merged against the "
                "target's template only: no value of it counts as a stale default, every value that differs from "
                "the target's default is kept")


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
                 old_dir: Path | None = None, required: frozenset[str] = frozenset(),
                 old_templates: OldTemplates | None = None) -> list[CopyMerge]:
    """Every existing `envs/**.env` copy the layout loads, merged (in path order).

    Args:
        templates: the target's `envs/**/*.env.example` (`envlayout.read_templates`).
        root: the target's root `.env.example`.
        old_dir: the deployed release's folder holding its `.env.example` and `envs/` (None: not known).
        old_templates: instead of `old_dir`, where the deployed release's templates are read (the flow reads them
            from its git commit): a template's relative path -> its text (None: not in that release), and what to
            call the place in a note.

    Raises EnvTemplatesMissing when a service loads an env file without a target template, EnvParseError for a
    copy or template that cannot be read.
    """
    require_templates(layout, templates, project_dir)
    old_templates = old_templates or OldTemplates.in_folder(old_dir)
    merged = []
    for copy in existing_copies(project_dir, layout):
        template = template_of(copy)
        text = read_env_file(project_dir / copy, "envs env file")
        old_text = old_templates.read(template)
        old = parse(old_text, f"{old_templates.where}/{template}") if old_text is not None else None
        done = merge_copy(copy, text, old, templates[template], _others(templates, template, root, layout),
                          required=required)
        if old is None:
            done.result.notes.append(NO_BASE_NOTE.format(copy=copy, template=template, where=old_templates.where))
        merged.append(done)
    return merged


@dataclass(frozen=True)
class OldTemplates:
    """Where the deployed release's `envs/**` templates are: `read(relative path)` gives a template's text, None if
    that release has none; `where` names the place for the operator."""

    read: Callable[[str], str | None]
    where: str

    @classmethod
    def in_folder(cls, folder: Path | None) -> OldTemplates:
        def read(template: str) -> str | None:
            path = folder / template if folder is not None else None
            return read_env_file(path, "old envs template") if path is not None and path.is_file() else None

        return cls(read, str(folder) if folder is not None else "nowhere")


__all__ = ["CopyMerge", "OldTemplates", "merge_copies", "merge_copy"]
