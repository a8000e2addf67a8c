"""What each statement of a migration's SQL will lock, rewrite or scan: the MS001–MS025 rules on pglast's parse tree.

Pure: input is SQL text plus, optionally, what the live catalog says (`Catalog`); output is one `Finding` per
statement in file order. Durations are added by `core.migrations.forecast`. A statement the parser cannot read is a finding
with effect "unknown" and a warning, never dropped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

import pglast
from pglast import ast, enums
from pglast.parser import ParseError

AE, EXCL, SRE, SHARE, SUE, RE, RS = ("ACCESS EXCLUSIVE", "EXCLUSIVE", "SHARE ROW EXCLUSIVE", "SHARE",
                                     "SHARE UPDATE EXCLUSIVE", "ROW EXCLUSIVE", "ROW SHARE")
_STRENGTH = {None: 0, "ACCESS SHARE": 1, RS: 2, RE: 3, SUE: 4, SHARE: 5, SRE: 6, EXCL: 7, AE: 8}
BLOCKS_WRITES = _STRENGTH[SHARE]
EFFECTS = ("none", "scan", "rewrite", "unknown", "data-loss")  # in order of severity

RULES = {
    "MS001": ("alter-type-rewrite", "add a new column, sync it with a trigger, backfill in batches, build its "
              "indexes CONCURRENTLY, then swap in a short transaction"),
    "MS002": ("alter-type-no-rewrite", "set a short lock_timeout (e.g. '2s') and retry"),
    "MS003": ("add-column-volatile-default", "add the column with no default, SET DEFAULT, then backfill in batches"),
    "MS004": ("add-column-stored-generated/identity/domain", "add a nullable column, fill it by trigger and batched "
              "backfill"),
    "MS005": ("add-column-constant-default", "set a short lock_timeout (e.g. '2s') and retry"),
    "MS006": ("add-column-not-null-no-default", "give it a constant default, or add it nullable and backfill"),
    "MS007": ("set-not-null", "ADD CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT, then SET NOT NULL"),
    "MS008": ("add-check-valid", "ADD CONSTRAINT … NOT VALID, then VALIDATE CONSTRAINT in its own transaction"),
    "MS009": ("add-fk-valid", "ADD CONSTRAINT … NOT VALID, then VALIDATE CONSTRAINT in its own transaction"),
    "MS010": ("validate-constraint", "fine: DML continues; keep it apart from ACCESS EXCLUSIVE work"),
    "MS011": ("add-unique-or-pk", "CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT … USING INDEX"),
    "MS012": ("create-index-blocking", "CREATE INDEX CONCURRENTLY inside op.get_context().autocommit_block()"),
    "MS013": ("concurrently-in-transaction", "run it inside op.get_context().autocommit_block(): it fails in a "
              "transaction"),
    "MS014": ("create-index-concurrently", "fine; afterwards check pg_index.indisvalid"),
    "MS015": ("drop-index-blocking", "DROP INDEX CONCURRENTLY in an autocommit block"),
    "MS016": ("add-exclusion-constraint", "build a new table and copy, or schedule a maintenance window"),
    "MS017": ("table-rewrite-commands", "pg_repack, or REPACK CONCURRENTLY where available"),
    "MS018": ("reindex-blocking", "REINDEX CONCURRENTLY in an autocommit block"),
    "MS019": ("rename", "expand/contract over two releases, or a view under the old name"),
    "MS020": ("drop-column/table", "stop the app reading it first (previous release); drop dependent FKs and "
              "indexes first"),
    "MS021": ("attach-partition", "add a CHECK matching the partition bound first (NOT VALID + VALIDATE)"),
    "MS022": ("detach-partition-blocking", "DETACH PARTITION … CONCURRENTLY (PostgreSQL 14+)"),
    "MS023": ("unbatched-dml-backfill", "backfill in batches, throttled, outside the DDL transaction"),
    "MS024": ("missing-lock-timeout", "SET lock_timeout = '2s' before the first locking statement, and retry"),
    "MS025": ("single-tx-accumulation", "transaction_per_migration=True in env.py, or split the upgrade"),
}

# Functions that are not volatile (immutable or stable) among those migrations use in defaults; anything else is
# assumed volatile offline (a rewrite), and looked up in pg_proc when a catalog is given.
NON_VOLATILE_FUNCTIONS = frozenset({
    "now", "current_timestamp", "current_date", "localtimestamp", "statement_timestamp", "transaction_timestamp",
    "lower", "upper", "coalesce", "length", "abs", "to_jsonb", "to_json", "jsonb_build_object", "json_build_object",
    "array", "concat", "trim", "btrim", "date_trunc", "make_interval", "current_setting", "timezone",
})
VOLATILE_HINT = frozenset({"random", "clock_timestamp", "gen_random_uuid", "uuid_generate_v4", "uuid_generate_v1",
                           "nextval", "timeofday", "txid_current"})
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
_DATA_SKIP_MARKER = re.compile(r"data migration skipped", re.I)
_REVISION_MARK = re.compile(r"^-- Running (?:upgrade|downgrade) (\S*) -> (\S+)", re.M)


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


@dataclass
class Finding:
    index: int
    line: int
    sql: str
    statement: str                # parse-node name, or "unparsable"
    table: str | None = None
    lock: str | None = None
    effect: str = "none"
    rules: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    revision: str | None = None
    transaction: int | None = None  # number of the BEGIN…COMMIT block, None in autocommit
    work: list[tuple[str, str]] = field(default_factory=list)  # (kind, table): rewrite | scan | index | dml
    other_locks: dict[str, str] = field(default_factory=dict)  # more tables locked (the referenced side of an FK)
    forecast_seconds: dict | None = None

    @property
    def safe_alternative(self) -> str | None:
        alts = [RULES[r][1] for r in self.rules if r not in ("MS024", "MS025")]
        alts += [RULES[r][1] for r in self.rules if r in ("MS024", "MS025")]
        return "; ".join(dict.fromkeys(alts)) or None

    def add(self, rule: str | None = None, lock: str | None = None, effect: str | None = None,
            note: str | None = None, work: str | None = None) -> None:
        if rule and rule not in self.rules:
            self.rules.append(rule)
        if lock and _STRENGTH[lock] > _STRENGTH[self.lock]:
            self.lock = lock
        if effect and EFFECTS.index(effect) > EFFECTS.index(self.effect):
            self.effect = effect
        if note:
            self.notes.append(note)
        if work and self.table and (work, self.table) not in self.work:
            self.work.append((work, self.table))

    def to_dict(self) -> dict:
        return {"index": self.index, "line": self.line, "sql": self.sql, "statement": self.statement,
                "table": self.table, "lock": self.lock, "effect": self.effect, "rules": self.rules,
                "forecast_seconds": self.forecast_seconds, "safe_alternative": self.safe_alternative,
                "revision": self.revision, "notes": self.notes}


@dataclass
class Analysis:
    findings: list[Finding]
    warnings: list[str]
    created_tables: set[str]


# ---------------------------------------------------------------------------------------------------------------
# Splitting

def split_statements(sql: str) -> list[tuple[int, str]]:
    """(character offset, text) of each statement, by PostgreSQL's own scanner, so a statement the grammar
    rejects is still one piece. Comment-only pieces are dropped (they hold no statement)."""
    raw = sql.encode("utf-8")
    out = []
    for sl in pglast.split(sql, with_parser=False, only_slices=True):
        start = len(raw[:sl.start].decode("utf-8", errors="ignore"))
        piece = raw[sl].decode("utf-8", errors="replace")
        code = _code_start(piece)
        if _strip_comments(piece):
            out.append((start + code, piece[code:].strip()))
    return out


def _code_start(s: str) -> int:
    """Offset of the first character that is neither blank nor inside a leading comment."""
    i = 0
    while i < len(s):
        if s[i].isspace():
            i += 1
        elif s.startswith("--", i):
            nl = s.find("\n", i)
            i = len(s) if nl < 0 else nl + 1
        elif s.startswith("/*", i):
            end = s.find("*/", i + 2)
            i = len(s) if end < 0 else end + 2
        else:
            break
    return i


def _strip_comments(text: str) -> str:
    return re.sub(r"--[^\n]*|/\*.*?\*/", "", text, flags=re.S).strip().strip(";").strip()


def _line_of(sql: str, offset: int) -> int:
    return sql.count("\n", 0, offset) + 1


# ---------------------------------------------------------------------------------------------------------------
# Types and expressions

def column_type(tn: ast.TypeName) -> ColumnType:
    names = [n.sval for n in tn.names if n.sval != "pg_catalog"]
    name = _ALIASES.get(" ".join(names).lower(), names[-1].lower() if names else "?")
    mods = tuple(m.val.ival for m in (tn.typmods or ()) if isinstance(m, ast.A_Const) and
                 isinstance(m.val, ast.Integer))
    return ColumnType(name, mods, bool(tn.arrayBounds))


def _funcs(node) -> list[str]:
    """Names of the functions an expression calls (nextval, uuidv7…)."""
    found = []

    def visit(n):
        if isinstance(n, ast.FuncCall):
            found.append(n.funcname[-1].sval.lower())
        if isinstance(n, ast.Node):
            for attr in n:
                visit(getattr(n, attr))
        elif isinstance(n, tuple):
            for v in n:
                visit(v)

    visit(node)
    return found


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
        if old.mods == new.mods or not new.mods:
            return False
        if not old.mods:
            return True  # an unconstrained value gains a limit: every row is checked and rewritten
        if old.name in ("varchar", "varbit"):
            return new.mods[0] < old.mods[0]
        if old.name == "numeric":
            return not (len(new.mods) == len(old.mods) and new.mods[0] >= old.mods[0]
                        and new.mods[1:] == old.mods[1:])
        if old.name in ("timestamp", "timestamptz", "time", "timetz", "interval"):
            return new.mods[0] < old.mods[0]
        return True
    if (old.name, new.name) in _BINARY_COERCIBLE and (not new.mods or new.name == "text"):
        return False
    if {old.name, new.name} == {"timestamp", "timestamptz"} and old.mods == new.mods and catalog is not None:
        # PostgreSQL 12+ skips the rewrite when the session time zone is UTC (values are then unchanged).
        return not (catalog.server_version_num >= 120000 and catalog.utc_session)
    if catalog is not None and not new.mods:
        known = catalog.binary_coercible(old, new)
        if known is not None:
            return not known
    return True


def _is_volatile(expr, catalog: Catalog | None) -> bool:
    for fn in _funcs(expr):
        if catalog is not None:
            v = catalog.volatile(fn)
            if v is not None:
                if v:
                    return True
                continue
        if fn in VOLATILE_HINT or fn not in NON_VOLATILE_FUNCTIONS:
            return True
    return False


def _table_name(rv: ast.RangeVar | None) -> str | None:
    if rv is None:
        return None
    return f"{rv.schemaname}.{rv.relname}" if rv.schemaname else rv.relname


# ---------------------------------------------------------------------------------------------------------------
# The analyser

class _Run:
    def __init__(self, sql: str, catalog: Catalog | None):
        self.sql, self.catalog = sql, catalog
        self.created: set[str] = set()
        self.column_types: dict[str, dict[str, ColumnType]] = {}
        self.lock_timeout_set = False
        self.first_queueing_seen = False
        self.warnings: list[str] = []
        self.tx: int | None = None
        self.tx_count = 0

    def existing(self, table: str | None) -> bool:
        return table is not None and table not in self.created

    def info(self, table: str) -> TableInfo | None:
        return self.catalog.table(table) if self.catalog is not None and self.existing(table) else None

    def old_type(self, table: str, column: str) -> ColumnType | None:
        if table in self.column_types and column in self.column_types[table]:
            return self.column_types[table][column]
        info = self.info(table)
        return info.columns.get(column) if info else None

    def lock_timeout_rule(self, f: Finding) -> None:
        """MS024 on the first statement that waits for a write-blocking lock on an existing table, unless a
        `SET lock_timeout` came before it."""
        if self.first_queueing_seen or not blocks_writes(f, self.created):
            return
        self.first_queueing_seen = True
        if not self.lock_timeout_set:
            f.add("MS024")
            self.warnings.append(f"no lock_timeout is set before statement {f.index} (line {f.line}, {f.lock} on "
                                 f"{f.table}): while it waits for the lock, every query on the table queues "
                                 f"behind it")

    # -- statements ------------------------------------------------------------------------------------------
    def visit(self, f: Finding, stmt) -> None:
        handler = getattr(self, "_" + type(stmt).__name__, None)
        if handler is None:
            if type(stmt).__name__ in _HARMLESS:
                return
            f.add(effect="unknown", note="statement type not covered by the rules; review it by hand")
            return
        handler(f, stmt)

    def _TransactionStmt(self, f, s):
        kind = s.kind
        if kind in (enums.TransactionStmtKind.TRANS_STMT_BEGIN, enums.TransactionStmtKind.TRANS_STMT_START):
            self.tx_count += 1
            self.tx = self.tx_count
            f.transaction = self.tx
        elif kind in (enums.TransactionStmtKind.TRANS_STMT_COMMIT, enums.TransactionStmtKind.TRANS_STMT_ROLLBACK):
            f.transaction = self.tx
            self.tx = None

    def _VariableSetStmt(self, f, s):
        if s.name == "lock_timeout":
            self.lock_timeout_set = True

    def _CreateStmt(self, f, s):
        table = _table_name(s.relation)
        f.table = table
        self.created.add(table)
        cols = {}
        for elt in s.tableElts or ():
            if isinstance(elt, ast.ColumnDef) and elt.typeName is not None:
                cols[elt.colname] = column_type(elt.typeName)
            for con in (getattr(elt, "constraints", None) or ()) if isinstance(elt, ast.ColumnDef) else (elt,):
                if isinstance(con, ast.Constraint) and con.contype == enums.ConstrType.CONSTR_FOREIGN:
                    ref = _table_name(con.pktable)
                    if self.existing(ref):
                        f.other_locks[ref] = SRE
        self.column_types[table] = cols

    def _CreateTableAsStmt(self, f, s):
        table = _table_name(s.into.rel) if s.into else None
        f.table = table
        if table:
            self.created.add(table)

    def _IndexStmt(self, f, s):
        table = _table_name(s.relation)
        f.table = table
        if s.concurrent:
            f.add("MS014", SUE, "scan", work="index2")
            if self.tx is not None:
                f.add("MS013", note="CONCURRENTLY cannot run inside a transaction block: this statement will fail")
            return
        if self.existing(table):
            f.add("MS012", SHARE, "scan", work="index")
        else:
            f.add(lock=SHARE)

    def _DropStmt(self, f, s):
        kind = s.removeType
        names = [".".join(p.sval for p in obj) if isinstance(obj, tuple) else str(obj) for obj in s.objects or ()]
        f.table = names[0] if names else None
        if kind == enums.ObjectType.OBJECT_INDEX:
            f.table = None
            f.notes.append("index " + ", ".join(names))
            if s.concurrent:
                f.add(lock=SUE)
                if self.tx is not None:
                    f.add("MS013", note="DROP INDEX CONCURRENTLY cannot run inside a transaction block")
            else:
                f.add("MS015", AE)
        elif kind == enums.ObjectType.OBJECT_TABLE:
            f.add("MS020", AE)
            for n in names:
                self.created.discard(n)

    def _ReindexStmt(self, f, s):
        f.table = _table_name(s.relation) if s.relation else s.name
        concurrent = any(p.defname == "concurrently" for p in s.params or ())
        if concurrent:
            f.add(lock=SUE, effect="scan", work="reindex")
            if self.tx is not None:
                f.add("MS013", note="REINDEX CONCURRENTLY cannot run inside a transaction block")
        else:
            f.add("MS018", SHARE, "rewrite", work="reindex")

    def _VacuumStmt(self, f, s):
        rels = [_table_name(r.relation) for r in s.rels or ()]
        f.table = rels[0] if rels else None
        if any(o.defname == "full" for o in s.options or ()):
            f.add("MS017", AE, "rewrite", work="rewrite")
        else:
            f.add(lock=SUE)
            if self.tx is not None:
                f.add(note="VACUUM cannot run inside a transaction block: this statement will fail")

    def _ClusterStmt(self, f, s):
        f.table = _table_name(s.relation)
        f.add("MS017", AE, "rewrite", work="rewrite")

    def _RenameStmt(self, f, s):
        f.table = _table_name(s.relation)
        f.add("MS019", AE)

    def _TruncateStmt(self, f, s):
        f.table = _table_name(s.relations[0]) if s.relations else None
        f.add(lock=AE, note="TRUNCATE removes every row")

    def _UpdateStmt(self, f, s):
        self._dml(f, s, "UPDATE")

    def _DeleteStmt(self, f, s):
        self._dml(f, s, "DELETE")

    def _InsertStmt(self, f, s):
        f.table = _table_name(s.relation)
        f.add(lock=RE)

    def _dml(self, f, s, verb):
        table = _table_name(s.relation)
        f.table = table
        if table == "alembic_version":
            return
        f.add(lock=RE)
        if not self.existing(table):
            return
        if s.whereClause is None or not _selective(s.whereClause):
            f.add("MS023", RE, "rewrite", work="dml",
                  note=f"{verb} of every matching row in one statement: row locks are held until COMMIT")

    def _AlterTableStmt(self, f, s):
        table = _table_name(s.relation)
        f.table = table
        if s.objtype != enums.ObjectType.OBJECT_TABLE:
            f.add(lock=AE)
            return
        existing = self.existing(table)
        for cmd in s.cmds:
            self._alter_cmd(f, table, existing, cmd)

    def _alter_cmd(self, f: Finding, table: str, existing: bool, cmd) -> None:
        T = enums.AlterTableType
        sub = cmd.subtype
        if sub == T.AT_AlterColumnType:
            new = column_type(cmd.def_.typeName)
            old = self.old_type(table, cmd.name)
            if not existing:
                f.add(lock=AE)
            else:
                needed = rewrite_needed(old, new, cmd.def_.raw_default is not None, self.catalog)
                if needed:
                    f.add("MS001", AE, "rewrite", work="rewrite",
                          note=f"{cmd.name}: {old or 'current type'} → {new} rewrites the table and its indexes")
                elif needed is None:
                    f.add("MS001", AE, "unknown", work="rewrite",
                          note=f"{cmd.name}: → {new} rewrites the table unless the current type is binary-coercible "
                               f"to it; give a DSN to decide")
                else:
                    f.add("MS002", AE, note=f"{cmd.name}: {old} → {new} is binary-coercible (no rewrite)")
            self.column_types.setdefault(table, {})[cmd.name] = new
        elif sub == T.AT_AddColumn:
            self._add_column(f, table, existing, cmd.def_)
        elif sub == T.AT_SetNotNull:
            f.add("MS007", AE, "scan", work="scan") if existing else f.add(lock=AE)
        elif sub == T.AT_AddConstraint:
            self._add_constraint(f, table, existing, cmd.def_)
        elif sub == T.AT_ValidateConstraint:
            f.add("MS010", SUE, "scan", work="scan")
        elif sub == T.AT_DropColumn:
            f.add("MS020", AE, note=f"drops column {cmd.name}")
        elif sub in (T.AT_SetTableSpace, T.AT_SetLogged, T.AT_SetUnLogged, T.AT_SetAccessMethod):
            f.add("MS017", AE, "rewrite", work="rewrite")
        elif sub == T.AT_AttachPartition:
            part = _table_name(cmd.def_.name)
            f.add("MS021", SUE, "scan", work="scan", note=f"attaches {part} (ACCESS EXCLUSIVE on it)")
            f.other_locks[part] = AE
        elif sub == T.AT_DetachPartition:
            if cmd.def_.concurrent:
                f.add(lock=SUE)
                if self.tx is not None:
                    f.add("MS013", note="DETACH PARTITION CONCURRENTLY cannot run inside a transaction block")
            else:
                f.add("MS022", AE)
        elif sub in (T.AT_EnableTrig, T.AT_DisableTrig, T.AT_EnableAlwaysTrig, T.AT_EnableReplicaTrig,
                     T.AT_EnableTrigAll, T.AT_DisableTrigAll, T.AT_EnableTrigUser, T.AT_DisableTrigUser):
            f.add(lock=SRE)
        elif sub in (T.AT_SetStatistics, T.AT_SetRelOptions, T.AT_ResetRelOptions, T.AT_SetOptions,
                     T.AT_ResetOptions, T.AT_ClusterOn, T.AT_DropCluster):
            f.add(lock=SUE)
        elif sub in (T.AT_ColumnDefault, T.AT_DropNotNull, T.AT_DropConstraint, T.AT_ChangeOwner, T.AT_SetStorage,
                     T.AT_SetCompression, T.AT_AddIdentity, T.AT_DropIdentity, T.AT_SetIdentity,
                     T.AT_ReplicaIdentity, T.AT_EnableRowSecurity, T.AT_DisableRowSecurity, T.AT_DropExpression):
            f.add(lock=AE)
        else:
            f.add(lock=AE, effect="unknown", note=f"ALTER TABLE subcommand {sub.name} is not covered by the rules")

    def _add_column(self, f, table, existing, col: ast.ColumnDef) -> None:
        ctype = column_type(col.typeName)
        self.column_types.setdefault(table, {})[col.colname] = ctype
        f.add(lock=AE)
        if not existing:
            return
        names = [n.sval.lower() for n in col.typeName.names]
        cons = list(col.constraints or ())
        default = next((c for c in cons if c.contype == enums.ConstrType.CONSTR_DEFAULT), None)
        not_null = col.is_not_null or any(c.contype == enums.ConstrType.CONSTR_NOTNULL for c in cons)
        C = enums.ConstrType
        if names[-1] in ("serial", "bigserial", "smallserial", "serial4", "serial8", "serial2"):
            f.add("MS003", AE, "rewrite", work="rewrite", note=f"{col.colname} is {names[-1]}: nextval per row")
        elif any(c.contype == C.CONSTR_IDENTITY for c in cons):
            f.add("MS004", AE, "rewrite", work="rewrite", note=f"{col.colname} is an identity column")
        elif any(c.contype == C.CONSTR_GENERATED and c.generated_kind != "v" for c in cons):
            f.add("MS004", AE, "rewrite", work="rewrite", note=f"{col.colname} is a stored generated column")
        elif default is not None:
            if _is_volatile(default.raw_expr, self.catalog):
                fns = ", ".join(_funcs(default.raw_expr))
                f.add("MS003", AE, "rewrite", work="rewrite",
                      note=f"{col.colname} DEFAULT calls a volatile function ({fns}): every row is rewritten")
            elif self.catalog is not None and self.catalog.server_version_num < 110000:
                f.add("MS005", AE, "rewrite", work="rewrite", note="before PostgreSQL 11 any default rewrites")
            else:
                f.add("MS005", AE, note=f"{col.colname}: constant default, stored once (no rewrite)")
        elif not_null:
            info = self.info(table)
            rows = f" ({info.rows:,.0f} rows now)" if info else ""
            f.add("MS006", AE, note=f"{col.colname} NOT NULL with no default fails on a table with rows{rows}")
            if info and info.rows > 0:
                self.warnings.append(f"statement {f.index}: ADD COLUMN {col.colname} NOT NULL without a default "
                                     f"will fail: {table} has rows")
        for c in cons:
            if c.contype == C.CONSTR_FOREIGN:
                self._add_constraint(f, table, existing, c)
            elif c.contype in (C.CONSTR_PRIMARY, C.CONSTR_UNIQUE):
                f.add("MS011", AE, "scan", work="index")

    def _add_constraint(self, f, table, existing, con: ast.Constraint) -> None:
        C = enums.ConstrType
        if con.contype == C.CONSTR_FOREIGN:
            ref = _table_name(con.pktable)
            f.other_locks[ref] = SRE
            if con.skip_validation or not existing:
                f.add(lock=SRE)
            else:
                f.add("MS009", SRE, "scan", work="scan", note=f"locks {ref} too (SHARE ROW EXCLUSIVE)")
        elif con.contype == C.CONSTR_CHECK:
            if con.skip_validation or not existing:
                f.add(lock=AE)
            else:
                f.add("MS008", AE, "scan", work="scan")
        elif con.contype in (C.CONSTR_UNIQUE, C.CONSTR_PRIMARY):
            if con.indexname or not existing:
                f.add(lock=AE)
            else:
                f.add("MS011", AE, "scan", work="index")
        elif con.contype == C.CONSTR_EXCLUSION:
            f.add("MS016", AE, "scan", work="index") if existing else f.add(lock=AE)
        else:
            f.add(lock=AE)


_HARMLESS = frozenset({
    "CreateFunctionStmt", "CommentStmt", "CreateSeqStmt", "AlterSeqStmt", "CreateEnumStmt", "AlterEnumStmt",
    "CompositeTypeStmt", "CreateDomainStmt", "CreateExtensionStmt", "GrantStmt", "ViewStmt", "SelectStmt",
    "CreateSchemaStmt", "DefineStmt", "AlterOwnerStmt", "CreateTrigStmt", "CreatePolicyStmt", "RuleStmt",
    "AlterFunctionStmt", "VariableShowStmt", "CreateCastStmt",
})


def _selective(where) -> bool:
    """A WHERE that pins rows by equality with a constant (`id = 42`) or a short IN list; anything else (ranges,
    IS NULL, subqueries) is treated as touching most of the table."""
    if isinstance(where, ast.A_Expr):
        op = where.name[-1].sval if where.name else ""
        if op == "=" and (isinstance(where.rexpr, (ast.A_Const, ast.ParamRef))
                          or isinstance(where.lexpr, (ast.A_Const, ast.ParamRef))):
            return True
        if where.kind == enums.A_Expr_Kind.AEXPR_IN and isinstance(where.rexpr, tuple) and len(where.rexpr) <= 100:
            return True
    if isinstance(where, ast.BoolExpr) and where.boolop == enums.BoolExprType.AND_EXPR:
        return any(_selective(a) for a in where.args)
    return False


def analyse(sql: str, catalog: Catalog | None = None) -> Analysis:
    """Every statement of `sql`, in order, with its table, lock, effect and rules."""
    run = _Run(sql, catalog)
    markers = [m.start() for m in _DATA_SKIP_MARKER.finditer(sql)]
    revisions = [(m.start(), m.group(2)) for m in _REVISION_MARK.finditer(sql)]
    findings: list[Finding] = []
    for i, (offset, text) in enumerate(split_statements(sql), start=1):
        f = Finding(i, _line_of(sql, offset), text, "unparsable")
        f.revision = next((rev for pos, rev in reversed(revisions) if pos < offset), None)
        f.transaction = run.tx
        try:
            stmts = pglast.parse_sql(text)
        except ParseError as exc:
            f.effect = "unknown"
            f.notes.append(f"not analysable: {exc}")
            run.warnings.append(f"statement {i} (line {f.line}) is not analysable ({exc}); review it by hand")
            findings.append(f)
            continue
        stmt = stmts[0].stmt
        f.statement = type(stmt).__name__
        run.visit(f, stmt)
        run.lock_timeout_rule(f)
        _data_loss(f, offset, markers, revisions, run)
        findings.append(f)
    _accumulation_rule(findings, run)
    for f in findings:
        if f.table in run.created and f.effect not in ("data-loss", "unknown"):
            f.work = [w for w in f.work if w[1] not in run.created]
    return Analysis(findings, run.warnings, run.created)


def _data_loss(f: Finding, offset: int, markers: list[int], revisions: list[tuple[int, str]], run: _Run) -> None:
    """A destructive statement after an offline-mode "data migration skipped" marker of the same revision."""
    destructive = "MS020" in f.rules or f.statement in ("TruncateStmt", "DeleteStmt")
    if not destructive:
        return
    for m in markers:
        next_revision = min((pos for pos, _ in revisions if pos > m), default=len(run.sql))
        if m < offset < next_revision:
            f.add(effect="data-loss", note="follows a 'Data migration skipped' marker: in offline mode the data "
                                           "this statement removes was not copied anywhere")
            run.warnings.append(
                f"statement {f.index} (line {f.line}, revision {f.revision}) destroys data whose migration the "
                f"rendered SQL skipped ('Data migration skipped' at line {_line_of(run.sql, m)}): it is only safe "
                f"when the migration runs online and the data step succeeds — check that before upgrading")
            return


def _accumulation_rule(findings: list[Finding], run: _Run) -> None:
    """MS025: in one transaction spanning several revisions, a write-blocking lock on an existing table is held
    while later revisions do real work (a rewrite, scan, index build or backfill)."""
    by_tx: dict[int, list[Finding]] = {}
    for f in findings:
        if f.transaction is not None:
            by_tx.setdefault(f.transaction, []).append(f)
    for tx in by_tx.values():
        for i, f in enumerate(tx):
            if not blocks_writes(f, run.created):
                continue
            if any(g.table == f.table and blocks_writes(g, run.created) for g in tx[:i]):
                continue  # the lock was already held: reported on the earlier statement
            later = [g for g in tx[i + 1:] if g.revision != f.revision and g.work]
            if later:
                f.add("MS025", note=f"{f.lock} on {f.table} is held until COMMIT, through "
                                    f"{len({g.revision for g in later})} later revision(s) doing "
                                    f"{len(later)} rewrite/scan/index statement(s)")


def blocks_writes(f: Finding, created: set[str]) -> bool:
    """The statement takes a lock that blocks writes (SHARE or stronger) on its own table, which existed before
    this SQL (nobody else uses a table created in the same run) and is not Alembic's bookkeeping."""
    return (f.table is not None and f.table != "alembic_version" and f.table not in created
            and _STRENGTH[f.lock] >= BLOCKS_WRITES)


def locked_tables(f: Finding, created: set[str]) -> list[str]:
    """Every existing table whose writes the statement blocks until its transaction ends: its own table (also
    through the row locks of an unbatched backfill, MS023) and the other side of a foreign key or partition."""
    out = [f.table] if blocks_writes(f, created) or ("MS023" in f.rules and f.table not in created) else []
    return out + [t for t, lock in f.other_locks.items() if _STRENGTH[lock] >= BLOCKS_WRITES and t not in created]
