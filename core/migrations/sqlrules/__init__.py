"""What each statement of a migration's SQL will lock, rewrite or scan: the MS001–MS025 rules on pglast's parse tree.

Pure: input is SQL text plus, optionally, what the live catalog says (`Catalog`); output is one `Finding` per
statement in file order. Durations are added by `core.forecast`. A statement the parser cannot read is a finding
with effect "unknown" and a warning, never dropped.

Layout, top-down: `analysis` (the driver) walks `statements` (splitting, parsing), `classify` and `alter` (each
statement's table and actions, of a `locks.Kind`), `locks` (kind → lock mode, and what each mode blocks) and the
rules of `registry`, one module per rule or small family under `rules/`. `findings`, `catalog`, `coltypes`,
`expressions`, `context` and `revisions` are what they share.
"""
from .analysis import analyse
from .catalog import Catalog, ColumnType, TableInfo
from .coltypes import rewrite_needed
from .findings import Analysis, Finding, blocks_writes, locked_tables
from .locks import AE, SHARE, SRE, SUE
from .revisions import incomplete

__all__ = ["AE", "SHARE", "SRE", "SUE", "Analysis", "Catalog", "ColumnType", "Finding", "TableInfo", "analyse",
           "blocks_writes", "incomplete", "locked_tables", "rewrite_needed"]
