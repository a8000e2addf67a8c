"""The revisions in Alembic's offline SQL ("-- Running upgrade a -> b"), and its "Data migration skipped"
markers: a destructive statement after one, in the same revision, loses data the offline SQL never copied."""
from __future__ import annotations

import re

from .context import Context
from .findings import Finding
from .statements import line_of

_DATA_SKIP_MARKER = re.compile(r"data migration skipped", re.I)
_REVISION_MARK = re.compile(r"^-- Running (?:upgrade|downgrade) (\S*) -> (\S+)", re.M)


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
