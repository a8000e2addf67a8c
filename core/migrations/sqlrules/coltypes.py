"""Column types on the parse tree, and whether changing one rewrites the table."""
from __future__ import annotations

from typing import cast

from pglast import ast

from .catalog import Catalog, ColumnType

# Types some other type is binary-coercible to (pg_cast castmethod 'b' targets, plus typmod-widening): a change to
# one of these may avoid a rewrite, so with the current type unknown the effect is unknown, not a rewrite.
MAYBE_NO_REWRITE_TARGETS = frozenset({"text", "varchar", "numeric", "timestamp", "timestamptz", "time", "timetz",
                                      "interval", "inet", "varbit", "bit", "bpchar"})
_ALIASES = {"integer": "int4", "int": "int4", "bigint": "int8", "smallint": "int2", "serial": "int4",
            "bigserial": "int8", "smallserial": "int2", "boolean": "bool", "character varying": "varchar",
            "character": "bpchar", "char": "bpchar", "double precision": "float8", "real": "float4",
            "decimal": "numeric", "timestamp with time zone": "timestamptz", "timestamp without time zone": "timestamp"}
_BINARY_COERCIBLE = {("varchar", "text"), ("text", "varchar"), ("bpchar", "varchar"), ("cidr", "inet"),
                     ("xml", "text"), ("varbit", "bit")}
# Types whose first modifier is a length or a precision: raising it keeps every value as it is.
PG_12 = 120000  # server_version_num of PostgreSQL 12.0
_WIDENABLE = frozenset({"varchar", "varbit", "timestamp", "timestamptz", "time", "timetz", "interval"})


def column_type(tn: ast.TypeName) -> ColumnType:
    names = [n.sval for n in tn.names or () if n.sval != "pg_catalog"]
    name = _ALIASES.get(" ".join(names).lower(), names[-1].lower() if names else "?")
    mods = tuple(cast(int, m.val.ival) for m in (tn.typmods or ()) if isinstance(m, ast.A_Const) and
                 isinstance(m.val, ast.Integer))
    return ColumnType(name, mods, bool(tn.arrayBounds))


def rewrite_needed(old: ColumnType | None, new: ColumnType, using: bool,
                   catalog: Catalog | None = None) -> bool | None:
    """Does `ALTER COLUMN … TYPE new` rewrite the table? None when it cannot be known (old type unknown)."""
    if using:
        return True
    if old is None:
        return None if new.name in MAYBE_NO_REWRITE_TARGETS and not new.array else True
    if old.array != new.array:
        return True
    if old.name == new.name:
        return _modifiers_rewrite(old, new)
    return _cast_rewrites(old, new, catalog)


def _modifiers_rewrite(old: ColumnType, new: ColumnType) -> bool:
    """Same type, other modifiers (varchar(40) → varchar(255), numeric(10,2) → numeric(12,2))."""
    if old.mods == new.mods or not new.mods:
        return False
    if not old.mods:
        return True  # an unconstrained value gains a limit: every row is checked and rewritten
    if old.name in _WIDENABLE:
        return new.mods[0] < old.mods[0]
    if old.name == "numeric":
        return not (len(new.mods) == len(old.mods) and new.mods[0] >= old.mods[0] and new.mods[1:] == old.mods[1:])
    return True


def _cast_rewrites(old: ColumnType, new: ColumnType, catalog: Catalog | None) -> bool:
    """Another type: no rewrite only when the cast is binary-coercible (and the values do not change)."""
    if (old.name, new.name) in _BINARY_COERCIBLE and (not new.mods or new.name == "text"):
        return False
    if {old.name, new.name} == {"timestamp", "timestamptz"} and old.mods == new.mods and catalog is not None:
        # PostgreSQL 12+ skips the rewrite when the session time zone is UTC (values are then unchanged).
        return not (catalog.server_version_num >= PG_12 and catalog.utc_session)
    if catalog is not None and not new.mods:
        known = catalog.binary_coercible(old, new)
        if known is not None:
            return not known
    return True
