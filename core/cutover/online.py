"""The online preparation in an upgrade: which pending statements are prepared while the old version serves (the
`prepare-online` step, after the backup and before the writers stop), which stay in the downtime and why.

`OnlineFacts` is what the facts (and so `plan.json`) record of it: each verdict for people, and each preparation as
what it was built from (its kind, table, column, new type and the table's shape), so that a recovery rebuilds exactly
the preparations the run made, with the same helper names, from the plan alone. `left_behind` decides, from the
journal, what becomes of a preparation a run stopped with: undone before its swap, finished after it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core.migrations.online import OnlinePlan, OnlineSettings, Preparation, Status, TableShape, notnull, widen
from core.errors import OnlineInsufficientDisk, OnlineTableNotOwned
from core.settings import Settings

UNDO, FINISH_SWAP, NOTHING = "undo", "finish-swap", "nothing"
# What a widening writes at worst before autovacuum reclaims anything: a new version of every row (the table with its
# indexes and TOAST again: the backfill's updates are not HOT) and the shadow of each index that holds the column.
_WRITES = """SELECT pg_total_relation_size(c.oid) + COALESCE((SELECT sum(pg_relation_size(i.indexrelid))
    FROM pg_index i WHERE i.indrelid = c.oid AND a.attnum = ANY(i.indkey)), 0)
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = %(column)s
WHERE c.oid = to_regclass(%(table)s)"""
# A table the role may not alter: PostgreSQL lets only its owner (or a member of the owning role) do so.
_NOT_OWNED = """SELECT 1 FROM pg_class c WHERE c.oid = to_regclass(%(table)s)
AND NOT pg_has_role(current_user, c.relowner, 'USAGE')"""


def online_settings(settings: Settings) -> OnlineSettings:
    """How the preparation treats the serving database, from the environment's migration settings."""
    m = settings.migration
    return OnlineSettings(batch_rows=m.online_batch_rows, pause_seconds=m.online_pause_seconds)


@dataclass(frozen=True)
class OnlineFacts:
    """The online preparation the plan holds (empty: none, the setting is off or nothing qualifies)."""

    verdicts: tuple[dict, ...] = ()   # `Verdict.to_dict()` of every flagged statement, in order
    prepared: tuple[dict, ...] = ()   # {"kind", "table", "column", "new_type", "shape"} of each preparation

    @classmethod
    def of(cls, plan: OnlinePlan) -> OnlineFacts:
        """The planner's verdicts, as JSON holds them (so that plan.json gives back an equal value)."""
        return cls.from_dict(json.loads(json.dumps({"verdicts": [v.to_dict() for v in plan.verdicts],
                                                    "prepared": [_record(p) for p in plan.preparations]})))

    def to_dict(self) -> dict[str, Any]:
        return {"verdicts": list(self.verdicts), "prepared": list(self.prepared)}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> OnlineFacts:
        """What `to_dict` wrote; a plan.json from before the online preparation has none."""
        d = d or {}
        return cls(tuple(d.get("verdicts", ())), tuple(d.get("prepared", ())))

    def preparations(self, settings: OnlineSettings) -> tuple[Preparation, ...]:
        """The preparations, built again from what they were built from (pure: the same SQL every time)."""
        return tuple(_rebuild(r, settings) for r in self.prepared)

    def tables(self) -> list[str]:
        """Every table the preparations alter: theirs, and those whose foreign keys a swap re-adds."""
        out = {r["table"] for r in self.prepared}
        out |= {fk["table"] for r in self.prepared if r["shape"] for fk in r["shape"]["foreign_keys"]}
        return sorted(out)

    def catalog_only(self, settings: OnlineSettings) -> dict[int, dict]:
        """The pending statements the preparation makes catalog-only in the downtime (every subcommand of them
        prepared), by the pre-flight finding's index: {"batches", "pause_seconds"} of the backfill that replaces
        their rewrite (`migcheck.analyze`'s `catalog_only`)."""
        rows = {(r["table"], r["column"]): r["shape"]["rows"] for r in self.prepared if r["shape"]}
        prepared: dict[int, dict] = {}
        downtime: set[int] = set()
        for v in self.verdicts:
            if v["status"] != str(Status.PREPARED):
                downtime.add(v["finding"])
                continue
            key = (v["table"], v["column"])
            d = prepared.setdefault(v["finding"], {"batches": 0, "pause_seconds": settings.pause_seconds})
            d["batches"] += int(rows[key] // settings.batch_rows) + 1 if key in rows else 0
        return {i: d for i, d in prepared.items() if i not in downtime}

    def lines(self) -> list[str]:
        """One line per flagged statement, for people: prepared online, or in the downtime and why."""
        return [f"line {v['line']}: {v['table']}{'.' + v['column'] if v.get('column') else ''}: {v['status']} "
                f"({v['summary'] or v['reason']})" for v in self.verdicts]


def _record(p: Preparation) -> dict[str, Any]:
    return {"kind": p.kind, "table": p.table, "column": p.column, "new_type": p.new_type,
            "shape": p.shape.to_dict() if p.shape is not None else None}


def _rebuild(r: dict[str, Any], settings: OnlineSettings) -> Preparation:
    if r["kind"] == "widen":
        return widen.prepare(TableShape.from_dict(r["shape"]), r["new_type"], settings)
    if r["kind"] == "not-null":
        return notnull.prepare(r["table"], r["column"])
    raise ValueError(f"unknown online preparation {r['kind']!r} in the plan")


def choose(sql_text: str, conn: Any, catalog: Any, settings: Settings, per_revision: bool) -> OnlineFacts:
    """The online preparation of the pending SQL, on the live tables (`conn`, `catalog`: the migration pre-flight's
    connection and catalog); none when the environment's `migration.online_preparation` is off. Refused before any
    change when the role does not own a table it alters."""
    if settings.migration.online_preparation == "off":
        return OnlineFacts()
    from core.migrations.online import plan, reader
    from core.migrations.sqlrules import analyse

    analysis = analyse(sql_text, catalog, per_revision=per_revision)
    online = OnlineFacts.of(plan(analysis, lambda table, column: reader.read_shape(conn, table, column),
                                 online_settings(settings), getattr(catalog, "server_version_num", None)))
    not_owned = [table for table in online.tables()
                 if conn.execute(_NOT_OWNED, {"table": table}).fetchone() is not None]
    if not_owned:
        raise OnlineTableNotOwned(settings.database.user, not_owned)
    return online


def check_room(conn: Any, online: OnlineFacts, room_bytes: int | None) -> None:
    """Refuses, before any change, a preparation whose writes do not fit in `room_bytes` (free beside the data
    directory once the rollback point is counted; None: not on this host, not checked), with 10 % to spare."""
    need = sum(int(row[0]) for r in online.prepared if r["kind"] == "widen"
               if (row := conn.execute(_WRITES, {"table": r["table"], "column": r["column"]}).fetchone()) is not None)
    if room_bytes is not None and need * 1.1 > room_bytes:
        raise OnlineInsufficientDisk(need, room_bytes)


def part_id(prep: Preparation, part: str) -> str:
    """The journal's record of one part of one preparation (`setup`, `backfill`, `build`, `swap`, `after-swap`)."""
    return f"prepare-online {prep.table}.{prep.column}: {part}"


def left_behind(prep: Preparation, states: dict[str, str]) -> str:
    """What becomes of a preparation an upgrade stopped with before its migration ran (refused, cancelled, failed,
    killed, or rolled back to the rollback point taken at the stop), from the journal's states of its parts
    (`part_id` → started | done | failed; absent: never begun):
    - nothing of it began: NOTHING;
    - its swap committed (journalled done): FINISH_SWAP: the column stays widened (the old version reads and writes
      it as before) and what follows the swap (foreign keys validated, statistics) is finished;
    - else UNDO: its helper objects dropped. Each drop is idempotent and names only helper objects: a swap that
      committed although its record did not end (a SIGKILL in between) has renamed them, so the drops find nothing
      and the column stays widened."""
    if states.get(part_id(prep, "swap")) == "done":
        return FINISH_SWAP
    if not any(key.startswith(part_id(prep, "")) for key in states):
        return NOTHING
    return UNDO
