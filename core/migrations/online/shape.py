"""What the online preparation must know of a live table, beyond the pre-flight's `Catalog`: the column's type,
nullability and default, the key to batch a backfill by, and every index, constraint, trigger, view and foreign
key that involves the column. Pure data; `reader.read_shape` fills it from a live server, tests build it by hand."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Index:
    """An index on the table that holds the column."""

    name: str
    columns: tuple[str, ...]
    unique: bool = False
    plain: bool = True                # a btree on plain columns, no expression, predicate, opclass or INCLUDE
    constraint: str | None = None     # the PRIMARY KEY or UNIQUE constraint it backs
    primary: bool = False


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key of `table` (`columns`) to `ref_table` (`ref_columns`), as pg_get_constraintdef shows it."""

    name: str
    table: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    definition: str                   # FOREIGN KEY (a) REFERENCES t(id) ON DELETE CASCADE …


@dataclass(frozen=True)
class Column:
    name: str
    type: str                         # pg_type.typname: int2, int4, int8…
    not_null: bool = False
    default: str | None = None        # pg_get_expr of the default, e.g. nextval('t_id_seq'::regclass)
    sequence: str | None = None       # the sequence the column owns (serial), qualified
    identity: bool = False
    generated: bool = False


@dataclass(frozen=True)
class TableShape:
    """The table as the preparation sees it. `key`: a single-column primary key (of any type) to batch the backfill by
    (None: the table has none). `blockers`: what involves the column and that the preparation cannot carry over
    (a view, a CHECK, an expression index…), each said for people."""

    table: str
    column: Column
    key: str | None
    indexes: tuple[Index, ...] = ()   # those that hold the column
    foreign_keys: tuple[ForeignKey, ...] = ()  # those that hold the column, or reference it
    partitioned: bool = False
    rows: float = 0.0
    heap_bytes: int = 0
    blockers: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableShape:
        """The shape `to_dict` wrote (JSON turns its tuples into lists)."""
        return cls(d["table"], Column(**d["column"]), d["key"],
                   tuple(Index(**{**i, "columns": tuple(i["columns"])}) for i in d.get("indexes", ())),
                   tuple(ForeignKey(**{**f, "columns": tuple(f["columns"]), "ref_columns": tuple(f["ref_columns"])})
                         for f in d.get("foreign_keys", ())),
                   d.get("partitioned", False), d.get("rows", 0.0), d.get("heap_bytes", 0),
                   tuple(d.get("blockers", ())))
