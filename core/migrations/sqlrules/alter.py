"""ALTER TABLE classified: each subcommand becomes an action of one `Kind` (an added column's constraints too).

Most subcommands map to a kind through `SUBCOMMANDS`; the few whose kind depends on their arguments (the column
added, the constraint, the partition) have a function of their own in `_SPECIAL`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import cast

from pglast import ast, enums

from .actions import Action, Classified
from .coltypes import column_type
from .context import Context
from .expressions import table_name
from .locks import Kind

T = enums.AlterTableType
C = enums.ConstrType

SUBCOMMANDS: dict[enums.AlterTableType, Kind] = {
    T.AT_SetNotNull: Kind.SET_NOT_NULL,
    T.AT_ValidateConstraint: Kind.VALIDATE_CONSTRAINT,
    T.AT_DropColumn: Kind.DROP_COLUMN,
    **dict.fromkeys((T.AT_SetTableSpace, T.AT_SetLogged, T.AT_SetUnLogged, T.AT_SetAccessMethod),
                    Kind.REWRITE_TABLE),
    **dict.fromkeys((T.AT_EnableTrig, T.AT_DisableTrig, T.AT_EnableAlwaysTrig, T.AT_EnableReplicaTrig,
                     T.AT_EnableTrigAll, T.AT_DisableTrigAll, T.AT_EnableTrigUser, T.AT_DisableTrigUser),
                    Kind.TRIGGERS),
    **dict.fromkeys((T.AT_SetStatistics, T.AT_SetRelOptions, T.AT_ResetRelOptions, T.AT_SetOptions,
                     T.AT_ResetOptions, T.AT_ClusterOn, T.AT_DropCluster), Kind.OPTIONS),
    **dict.fromkeys((T.AT_ColumnDefault, T.AT_DropNotNull, T.AT_DropConstraint, T.AT_ChangeOwner, T.AT_SetStorage,
                     T.AT_SetCompression, T.AT_AddIdentity, T.AT_DropIdentity, T.AT_SetIdentity,
                     T.AT_ReplicaIdentity, T.AT_EnableRowSecurity, T.AT_DisableRowSecurity, T.AT_DropExpression),
                    Kind.ALTER_METADATA),
}
CONSTRAINTS: dict[enums.ConstrType, Kind] = {
    C.CONSTR_FOREIGN: Kind.ADD_FOREIGN_KEY,
    C.CONSTR_CHECK: Kind.ADD_CHECK,
    C.CONSTR_UNIQUE: Kind.ADD_UNIQUE,
    C.CONSTR_PRIMARY: Kind.ADD_UNIQUE,
    C.CONSTR_EXCLUSION: Kind.ADD_EXCLUSION,
}
_SERIALS = frozenset({"serial", "bigserial", "smallserial", "serial4", "serial8", "serial2"})


def alter_table(s: ast.AlterTableStmt, ctx: Context) -> Classified:
    # pglast types every node field Optional; the casts in this module name what the grammar guarantees.
    table = cast(str, table_name(s.relation))  # ALTER TABLE always names its table
    if s.objtype != enums.ObjectType.OBJECT_TABLE:
        return Classified(table, [Action(Kind.ALTER_OTHER_RELATION, table)])
    existing = ctx.existing(table)
    cmds = cast("tuple[ast.AlterTableCmd, ...]", s.cmds)  # … and has at least one subcommand
    return Classified(table, [a for cmd in cmds for a in _subcommand(cmd, table, existing, ctx)])


def _subcommand(cmd: ast.AlterTableCmd, table: str, existing: bool, ctx: Context) -> list[Action]:
    subtype = cast(enums.AlterTableType, cmd.subtype)  # every subcommand has its type
    special = _SPECIAL.get(subtype)
    if special is not None:
        return special(cmd, table, existing, ctx)
    kind = SUBCOMMANDS.get(subtype)
    if kind is None:
        return [Action(Kind.ALTER_UNCOVERED, table, existing, cmd, effect="unknown",
                       note=f"ALTER TABLE subcommand {subtype.name} is not covered by the rules")]
    return [Action(kind, table, existing, cmd, column=cmd.name)]


def _alter_type(cmd: ast.AlterTableCmd, table: str, existing: bool, ctx: Context) -> list[Action]:
    column = cast(str, cmd.name)  # ALTER COLUMN … TYPE names its column …
    new = column_type(_declared_type(cast(ast.ColumnDef, cmd.def_)))  # … and gives the new type as a ColumnDef
    old = ctx.old_type(table, column)
    ctx.column_types.setdefault(table, {})[column] = new
    return [Action(Kind.ALTER_COLUMN_TYPE, table, existing, cmd, column=column, old=old, new=new)]


def _declared_type(col: ast.ColumnDef) -> ast.TypeName:
    return cast(ast.TypeName, col.typeName)  # a column added or retyped always declares its type


def _add_column(cmd: ast.AlterTableCmd, table: str, existing: bool, ctx: Context) -> list[Action]:
    """The column, then (on an existing table) the foreign keys and unique indexes declared with it."""
    col = cast(ast.ColumnDef, cmd.def_)  # ADD COLUMN's definition
    ctype = column_type(_declared_type(col))
    ctx.column_types.setdefault(table, {})[cast(str, col.colname)] = ctype  # a column definition names it
    kind, default = _column_shape(col)
    actions = [Action(kind, table, existing, col, column=col.colname, new=ctype, expr=default)]
    if existing:
        actions += [constraint_action(c, table, existing) for c in col.constraints or ()
                    if c.contype in (C.CONSTR_FOREIGN, C.CONSTR_PRIMARY, C.CONSTR_UNIQUE)]
    return actions


def _column_shape(col: ast.ColumnDef) -> tuple[Kind, ast.Node | None]:
    """Which ADD COLUMN it is, the first of: serial, identity, stored generated, with a default, NOT NULL without
    one, plain; and the default's expression."""
    cons = list(col.constraints or ())
    default = next((c for c in cons if c.contype == C.CONSTR_DEFAULT), None)
    expr = default.raw_expr if default is not None else None
    type_name = cast("tuple[ast.String, ...]", _declared_type(col).names)[-1]  # a declared type has a name
    if cast(str, type_name.sval).lower() in _SERIALS:
        return Kind.ADD_COLUMN_SERIAL, expr
    if any(c.contype == C.CONSTR_IDENTITY for c in cons):
        return Kind.ADD_COLUMN_IDENTITY, expr
    if any(c.contype == C.CONSTR_GENERATED and c.generated_kind != "v" for c in cons):
        return Kind.ADD_COLUMN_GENERATED, expr
    if default is not None:
        return Kind.ADD_COLUMN_DEFAULT, expr
    if col.is_not_null or any(c.contype == C.CONSTR_NOTNULL for c in cons):
        return Kind.ADD_COLUMN_NOT_NULL, expr
    return Kind.ADD_COLUMN, expr


def constraint_action(con: ast.Constraint, table: str, existing: bool) -> Action:
    kind = CONSTRAINTS.get(cast(enums.ConstrType, con.contype), Kind.ADD_CONSTRAINT)  # every constraint has its type
    # a foreign key always names the table it references
    others = (cast(str, table_name(con.pktable)),) if kind is Kind.ADD_FOREIGN_KEY else ()
    return Action(kind, table, existing, con, others=others)


def _add_constraint(cmd: ast.AlterTableCmd, table: str, existing: bool, ctx: Context) -> list[Action]:
    return [constraint_action(cast(ast.Constraint, cmd.def_), table, existing)]


def _attach(cmd: ast.AlterTableCmd, table: str, existing: bool, ctx: Context) -> list[Action]:
    partition = cast(ast.PartitionCmd, cmd.def_)
    return [Action(Kind.ATTACH_PARTITION, table, existing, cmd, others=(cast(str, table_name(partition.name)),))]


def _detach(cmd: ast.AlterTableCmd, table: str, existing: bool, ctx: Context) -> list[Action]:
    kind = Kind.DETACH_PARTITION_CONCURRENTLY if cast(ast.PartitionCmd, cmd.def_).concurrent else Kind.DETACH_PARTITION
    return [Action(kind, table, existing, cmd)]


_SPECIAL: dict[enums.AlterTableType, Callable[[ast.AlterTableCmd, str, bool, Context], list[Action]]] = {
    T.AT_AlterColumnType: _alter_type,
    T.AT_AddColumn: _add_column,
    T.AT_AddConstraint: _add_constraint,
    T.AT_AttachPartition: _attach,
    T.AT_DetachPartition: _detach,
}
