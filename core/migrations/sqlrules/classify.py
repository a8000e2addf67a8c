"""Each parsed statement classified: its table and its actions (`Kind`s), with what the analysis must remember
(tables created, the open transaction, a lock_timeout set). No verdicts here: those are the rules'."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from pglast import ast, enums

from .actions import Action, Classified
from .alter import alter_table
from .catalog import ColumnType
from .coltypes import column_type
from .context import Context
from .expressions import table_name
from .locks import Kind

# Statement types that take no lock worth reporting on an existing table.
HARMLESS = frozenset({
    "CreateFunctionStmt", "CommentStmt", "CreateSeqStmt", "AlterSeqStmt", "CreateEnumStmt", "AlterEnumStmt",
    "CompositeTypeStmt", "CreateDomainStmt", "CreateExtensionStmt", "GrantStmt", "ViewStmt", "SelectStmt",
    "CreateSchemaStmt", "DefineStmt", "AlterOwnerStmt", "CreateTrigStmt", "CreatePolicyStmt", "RuleStmt",
    "AlterFunctionStmt", "VariableShowStmt", "CreateCastStmt",
})
_TX = enums.TransactionStmtKind


def classify(stmt: ast.Node, ctx: Context) -> Classified:
    name = type(stmt).__name__
    handler = _STATEMENTS.get(name)
    if handler is not None:
        return handler(stmt, ctx)
    if name in HARMLESS:
        return Classified(None, [Action(Kind.HARMLESS)])
    return Classified(None, [Action(Kind.UNCOVERED, effect="unknown",
                                    note="statement type not covered by the rules; review it by hand")])


def _one(kind: Kind, table: str | None, **facts: Any) -> Classified:
    return Classified(table, [Action(kind, table, **facts)])


def _transaction(s: ast.TransactionStmt, ctx: Context) -> Classified:
    if s.kind in (_TX.TRANS_STMT_BEGIN, _TX.TRANS_STMT_START):
        ctx.tx_count += 1
        ctx.tx = ctx.tx_count
    elif s.kind in (_TX.TRANS_STMT_COMMIT, _TX.TRANS_STMT_ROLLBACK):
        ctx.tx = None
    return _one(Kind.TRANSACTION, None)


def _set(s: ast.VariableSetStmt, ctx: Context) -> Classified:
    if s.name == "lock_timeout":
        ctx.lock_timeout_set = True
    return _one(Kind.SET, None)


def _create_table(s: ast.CreateStmt, ctx: Context) -> Classified:
    """A new table (exempt from size rules from now on); its foreign keys lock the existing tables they reference."""
    table = cast(str, table_name(s.relation))  # CREATE TABLE always names its table
    ctx.created.add(table)
    cols: dict[str, ColumnType] = {}
    refs = []
    for elt in s.tableElts or ():
        if isinstance(elt, ast.ColumnDef) and elt.typeName is not None and elt.colname is not None:
            cols[elt.colname] = column_type(elt.typeName)
        for con in (getattr(elt, "constraints", None) or ()) if isinstance(elt, ast.ColumnDef) else (elt,):
            if isinstance(con, ast.Constraint) and con.contype == enums.ConstrType.CONSTR_FOREIGN:
                ref = table_name(con.pktable)
                if ctx.existing(ref):
                    refs.append(ref)
    ctx.column_types[table] = cols
    return _one(Kind.CREATE_TABLE, table, others=tuple(refs))


def _create_table_as(s: ast.CreateTableAsStmt, ctx: Context) -> Classified:
    table = table_name(s.into.rel) if s.into else None
    if table:
        ctx.created.add(table)
    return _one(Kind.CREATE_TABLE_AS, table)


def _index(s: ast.IndexStmt, ctx: Context) -> Classified:
    table = table_name(s.relation)
    kind = Kind.CREATE_INDEX_CONCURRENTLY if s.concurrent else Kind.CREATE_INDEX
    return _one(kind, table, existing=ctx.existing(table), node=s)


def _drop(s: ast.DropStmt, ctx: Context) -> Classified:
    names = [".".join(p.sval for p in obj) if isinstance(obj, tuple) else str(obj) for obj in s.objects or ()]
    table = names[0] if names else None
    if s.removeType == enums.ObjectType.OBJECT_INDEX:
        kind = Kind.DROP_INDEX_CONCURRENTLY if s.concurrent else Kind.DROP_INDEX
        return Classified(None, [Action(kind, note="index " + ", ".join(names))])
    if s.removeType == enums.ObjectType.OBJECT_TABLE:
        ctx.created.difference_update(names)
        return _one(Kind.DROP_TABLE, table)
    return _one(Kind.DROP_OTHER, table)


def _reindex(s: ast.ReindexStmt, ctx: Context) -> Classified:
    table = table_name(s.relation) if s.relation else s.name
    if any(p.defname == "concurrently" for p in s.params or ()):
        return _one(Kind.REINDEX_CONCURRENTLY, table, effect="scan", work="reindex")
    return _one(Kind.REINDEX, table)


def _vacuum(s: ast.VacuumStmt, ctx: Context) -> Classified:
    rels = [table_name(r.relation) for r in s.rels or ()]
    table = rels[0] if rels else None
    if any(o.defname == "full" for o in s.options or ()):
        return _one(Kind.VACUUM_FULL, table)
    note = "VACUUM cannot run inside a transaction block: this statement will fail" if ctx.tx is not None else None
    return _one(Kind.VACUUM, table, note=note)


def _cluster(s: ast.ClusterStmt, ctx: Context) -> Classified:
    return _one(Kind.CLUSTER, table_name(s.relation))


def _rename(s: ast.RenameStmt, ctx: Context) -> Classified:
    return _one(Kind.RENAME, table_name(s.relation))


def _truncate(s: ast.TruncateStmt, ctx: Context) -> Classified:
    table = table_name(s.relations[0]) if s.relations else None
    return _one(Kind.TRUNCATE, table, note="TRUNCATE removes every row")


def _insert(s: ast.InsertStmt, ctx: Context) -> Classified:
    return _one(Kind.INSERT, table_name(s.relation))


def _dml(kind: Kind) -> Callable[[ast.UpdateStmt | ast.DeleteStmt, Context], Classified]:
    def classify_dml(s: ast.UpdateStmt | ast.DeleteStmt, ctx: Context) -> Classified:
        table = table_name(s.relation)
        if table == "alembic_version":
            return _one(Kind.VERSION_TABLE, table)
        return _one(kind, table, existing=ctx.existing(table), node=s)
    return classify_dml


_STATEMENTS: dict[str, Callable[[Any, Context], Classified]] = {
    "TransactionStmt": _transaction, "VariableSetStmt": _set,
    "CreateStmt": _create_table, "CreateTableAsStmt": _create_table_as, "AlterTableStmt": alter_table,
    "IndexStmt": _index, "DropStmt": _drop, "ReindexStmt": _reindex, "VacuumStmt": _vacuum,
    "ClusterStmt": _cluster, "RenameStmt": _rename, "TruncateStmt": _truncate,
    "InsertStmt": _insert, "UpdateStmt": _dml(Kind.UPDATE), "DeleteStmt": _dml(Kind.DELETE),
}
