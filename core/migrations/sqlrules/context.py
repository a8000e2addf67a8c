"""What the analysis knows part-way through the SQL: the tables created so far, the column types it has seen, the
open transaction, whether a lock_timeout is set. Classification updates it; rules read it."""
from __future__ import annotations

from .catalog import Catalog, ColumnType, RememberingCatalog, TableInfo


class Context:
    def __init__(self, sql: str, catalog: Catalog | None) -> None:
        self.sql = sql
        self.catalog = None if catalog is None else RememberingCatalog(catalog)
        self.created: set[str] = set()        # tables this SQL creates (dropped again: forgotten)
        self.column_types: dict[str, dict[str, ColumnType]] = {}  # as this SQL declares or changes them
        self.lock_timeout_set = False
        self.writes_blocked_before = False    # an earlier statement waited for a write-blocking lock
        self.warnings: list[str] = []
        self.tx: int | None = None            # number of the open BEGIN…COMMIT block
        self.tx_count = 0
        self.index = 0                        # the statement being analysed

    def existing(self, table: str | None) -> bool:
        """The table existed before this SQL: only then can it be large, or can anyone wait on it."""
        return table is not None and table not in self.created

    def info(self, table: str | None) -> TableInfo | None:
        if table is None or self.catalog is None or not self.existing(table):
            return None
        return self.catalog.table(table)

    def old_type(self, table: str, column: str) -> ColumnType | None:
        if table in self.column_types and column in self.column_types[table]:
            return self.column_types[table][column]
        info = self.info(table)
        return info.columns.get(column) if info else None
