"""What the analysis may know about the live database: a column's type, a table's sizes, the `Catalog` to ask."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class ColumnType:
    name: str                  # pg_type.typname of the element type, e.g. int4, varchar
    mods: tuple[int, ...] = ()  # declared modifiers, e.g. (255,) or (10, 2)
    array: bool = False

    def __str__(self) -> str:
        return self.name + (f"({','.join(map(str, self.mods))})" if self.mods else "") + ("[]" if self.array else "")


@dataclass(frozen=True)
class TableInfo:
    heap_bytes: int
    toast_bytes: int
    index_bytes: int
    index_count: int
    rows: float
    columns: dict[str, ColumnType] = field(default_factory=dict)


class Catalog(Protocol):
    server_version_num: int
    utc_session: bool  # the migration's session time zone is UTC (timestamp ↔ timestamptz then keeps its values)

    def table(self, name: str) -> TableInfo | None: ...

    def volatile(self, function: str) -> bool | None: ...

    def binary_coercible(self, source: ColumnType, target: ColumnType) -> bool | None: ...


class RememberingCatalog:
    """A `Catalog` that asks the one it wraps each question once: several rules may ask the same one."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self.server_version_num = catalog.server_version_num
        self.utc_session = catalog.utc_session
        self._tables: dict[str, TableInfo | None] = {}
        self._volatile: dict[str, bool | None] = {}
        self._coercible: dict[tuple[ColumnType, ColumnType], bool | None] = {}

    def table(self, name: str) -> TableInfo | None:
        if name not in self._tables:
            self._tables[name] = self._catalog.table(name)
        return self._tables[name]

    def volatile(self, function: str) -> bool | None:
        if function not in self._volatile:
            self._volatile[function] = self._catalog.volatile(function)
        return self._volatile[function]

    def binary_coercible(self, source: ColumnType, target: ColumnType) -> bool | None:
        if (source, target) not in self._coercible:
            self._coercible[source, target] = self._catalog.binary_coercible(source, target)
        return self._coercible[source, target]
