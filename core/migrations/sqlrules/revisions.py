"""The revisions in Alembic's offline SQL ("-- Running upgrade a -> b"), and its "Data migration skipped"
markers: a destructive statement after one, in the same revision, loses data the offline SQL never copied."""
from __future__ import annotations

import re

from .context import Context
from .findings import Finding
from .statements import line_of, set_aside, split_statements

_DATA_SKIP_MARKER = re.compile(r"data migration skipped", re.I)
_REVISION_MARK = re.compile(r"^-- Running (?:upgrade|downgrade) (\S*) -> (\S+)", re.M)
# What the tool says when it leaves work out of the rendering ("Data migration skipped in offline mode", "skipping
# the backfill"): in a comment or in the text set aside.
_SKIP_WARNING = re.compile(r"\bskip(?:s|ped|ping)?\b", re.I)
# Statements that are not the revision's own work: the transaction around it and Alembic's bookkeeping.
_BOOKKEEPING = re.compile(r"^(?:BEGIN|COMMIT|START\s+TRANSACTION|(?:UPDATE|INSERT\s+INTO|DELETE\s+FROM)\s+"
                          r"alembic_version\b|CREATE\s+TABLE\s+alembic_version\b)", re.I)


def incomplete(sql: str) -> dict[str, str]:
    """Revision → why its rendering is not all that will run: the tool warned, within the revision's SQL, that it
    skipped work; or the revision rendered no statement besides Alembic's bookkeeping. Such a revision is not
    fully analysed, whatever the statements that were."""
    revisions = Revisions(sql)
    if not revisions.starts:
        return {}
    clean, aside = set_aside(sql)
    own: dict[str, int] = {rev: 0 for _, rev in revisions.starts}
    for offset, text in split_statements(clean):
        rev = revisions.at(offset)
        if rev is not None and not _BOOKKEEPING.match(text):
            own[rev] += 1
    out = {rev: "the rendering holds no statement besides Alembic's bookkeeping" for rev, n in own.items() if n == 0}
    aside_lines = dict(aside)
    offset = 0
    for number, line in enumerate(sql.splitlines(keepends=True), start=1):
        text = aside_lines.get(number) or (line if line.lstrip().startswith("--") else "")
        rev = revisions.at(offset + 1) if text and _SKIP_WARNING.search(text) else None
        if rev is not None and not _REVISION_MARK.match(text):
            out[rev] = f"the tool warned that it skipped work (line {number}: {text.strip()[:160]!r})"
        offset += len(line)
    return {rev: out[rev] for rev in own if rev in out}


class Revisions:
    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.starts = [(m.start(), m.group(2)) for m in _REVISION_MARK.finditer(sql)]
        self.skips = [m.start() for m in _DATA_SKIP_MARKER.finditer(sql)]

    def at(self, offset: int) -> str | None:
        """The revision the statement at this offset belongs to."""
        return next((rev for pos, rev in reversed(self.starts) if pos < offset), None)

    def data_loss(self, f: Finding, offset: int, ctx: Context) -> None:
        """A destructive statement after an offline-mode "data migration skipped" marker of the same revision."""
        if "MS020" not in f.rules and f.statement not in ("TruncateStmt", "DeleteStmt"):
            return
        for m in self.skips:
            next_revision = min((pos for pos, _ in self.starts if pos > m), default=len(self.sql))
            if m < offset < next_revision:
                f.add(effect="data-loss", note="follows a 'Data migration skipped' marker: in offline mode the data "
                                               "this statement removes was not copied anywhere")
                ctx.warnings.append(
                    f"statement {f.index} (line {f.line}, revision {f.revision}) destroys data whose migration the "
                    f"rendered SQL skipped ('Data migration skipped' at line {line_of(self.sql, m)}): it is only "
                    f"safe when the migration runs online and the data step succeeds — check that before upgrading")
                return
