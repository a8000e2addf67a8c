"""Integer widening online (`ALTER COLUMN … TYPE bigint` on int4, `integer` on int2): a shadow column of the new
type kept in sync by a trigger, a batched backfill, its indexes built CONCURRENTLY, NOT NULL proven by a CHECK
validated online, then a short swap: the shadow column takes the column's name, default, sequence, indexes and
constraints, and the foreign keys are re-added NOT VALID and validated after. The app's statement then finds the
column already of its type: a catalog-only change that reuses the indexes."""
from __future__ import annotations

from psycopg import sql

from . import names
from .preparation import Backfill, OnlineSettings, Preparation, Statement, Step
from .shape import ForeignKey, Index, TableShape

WIDTH = {"int2": 2, "int4": 4, "int8": 8}


def blockers(shape: TableShape, new_type: str) -> list[str]:
    """Why this widening cannot be prepared online (empty: it can)."""
    col = shape.column
    out = list(shape.blockers)
    if WIDTH.get(col.type, 99) >= WIDTH.get(new_type, 0):
        out.append(f"{col.type} → {new_type} is not an integer widening")
    if col.identity:
        out.append("an identity column: its sequence cannot follow the swap")
    if col.generated:
        out.append("a generated column")
    if shape.key is None:
        out.append("no single-column primary key to batch the backfill by")
    if shape.partitioned:
        out.append("a partitioned table")
    out += [f"index {i.name} is not a plain btree on columns" for i in shape.indexes if not i.plain]
    if any("$" in n for n in (shape.table, col.name, *(i.name for i in shape.indexes))):
        out.append("a name with '$' in it")
    return out


def prepare(shape: TableShape, new_type: str, settings: OnlineSettings) -> Preparation:
    t, col = shape.table, shape.column
    shadow = names.helper(col.name, t, col.name)
    sync = f"ss_sync_{names.tag(t, col.name)}"
    fn, trigger = names.sibling(t, sync), sql.Identifier(sync)
    check = sql.Identifier(f"ss_nn_{names.tag(t, col.name)}")
    rel, c, s = names.relation(t), sql.Identifier(col.name), sql.Identifier(shadow)
    setup = [Step("add the shadow column", (sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
        rel, s, sql.SQL(new_type)),)),
        Step("keep it in sync on INSERT and UPDATE", (
            sql.SQL("CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS "
                    "$ss$ BEGIN NEW.{} := NEW.{}; RETURN NEW; END $ss$").format(fn, s, c),
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(trigger, rel),
            sql.SQL("CREATE TRIGGER {} BEFORE INSERT OR UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {}()").format(
                trigger, rel, fn)))]
    build = [_index_build(t, i, col.name, shadow) for i in shape.indexes]
    if col.not_null:
        setup.append(Step("prove it NOT NULL (CHECK … NOT VALID)", (sql.SQL(
            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}, ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID").format(
            rel, check, check, s),)))
        build.append(Step("validate the NOT NULL check", (sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
            rel, check),), autocommit=True))
    undo = [Step("drop the sync trigger", (sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(trigger, rel),
                                           sql.SQL("DROP FUNCTION IF EXISTS {}()").format(fn))),
            *[Step(f"drop the shadow index of {i.name}", (sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                names.sibling(t, names.helper(i.name, t, col.name))),), autocommit=True) for i in shape.indexes],
            Step("drop the shadow column", (sql.SQL("ALTER TABLE {} DROP COLUMN IF EXISTS {}").format(rel, s),))]
    fks = shape.foreign_keys
    return Preparation(
        "widen", t, col.name, _summary(shape, new_type, settings), tuple(setup),
        _backfill(shape, shadow), tuple(build), _swap(shape, shadow, trigger, fn, check),
        (*[Step(f"validate foreign key {fk.name}", (sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
            names.relation(fk.table), sql.Identifier(fk.name)),), autocommit=True) for fk in fks],
         Step("analyze the new column", (sql.SQL("ANALYZE {} ({})").format(rel, c),), autocommit=True)),
        (), tuple(undo),
        (f"column {shadow}", f"trigger {sync}", *[f"index {names.helper(i.name, t, col.name)}"
                                                            for i in shape.indexes]), shape, new_type)


def _summary(shape: TableShape, new_type: str, settings: OnlineSettings) -> str:
    col, n = shape.column, len(shape.indexes)
    batches = int(shape.rows // settings.batch_rows) + 1
    extra = [f"{n} index(es) built CONCURRENTLY"] if n else []
    extra += ["its sequence"] * bool(col.sequence)
    extra += [f"{len(shape.foreign_keys)} foreign key(s) re-added NOT VALID and validated"] * bool(shape.foreign_keys)
    return (f"{col.type} → {new_type}: shadow column synced by a trigger, about {shape.rows:,.0f} rows backfilled in "
            f"~{batches:,} batches of {settings.batch_rows:,}; " + ", ".join([*extra, "swapped in one short lock"]))


def _backfill(shape: TableShape, shadow: str) -> Backfill:
    """Keyset batches in key order: the first from the start, each next one after the last key done, none past the
    greatest key when the backfill begins (fixed statements, so a prepared plan stays an index range scan whatever
    the key's type)."""
    rel, key = names.relation(shape.table), sql.Identifier(shape.key or "")
    c, s = sql.Identifier(shape.column.name), sql.Identifier(shadow)

    def batch(where: Statement) -> Statement:
        return sql.SQL(
            "WITH batch AS (SELECT {key} FROM {rel} {where} ORDER BY {key} LIMIT %(rows)s), "
            "copied AS (UPDATE {rel} AS t SET {s} = t.{c} FROM batch WHERE t.{key} = batch.{key} "
            "AND t.{s} IS DISTINCT FROM t.{c} RETURNING 1) "
            "SELECT (SELECT {key} FROM batch ORDER BY {key} DESC LIMIT 1), (SELECT count(*) FROM copied)").format(
            key=key, rel=rel, s=s, c=c, where=where)
    return Backfill(shape.table, shape.key or "", batch(sql.SQL("WHERE {} <= %(upper)s").format(key)),
                    batch(sql.SQL("WHERE {k} > %(after)s AND {k} <= %(upper)s").format(k=key)), shape.rows,
                    sql.SQL("SELECT max({}) FROM {}").format(key, rel))


def _index_build(table: str, index: Index, column: str, shadow: str) -> Step:
    cols = sql.SQL(", ").join(sql.Identifier(shadow if k == column else k) for k in index.columns)
    name = names.helper(index.name, table, column)
    unique = sql.SQL("UNIQUE ") if index.unique else sql.SQL("")
    return Step(f"build the shadow of index {index.name} CONCURRENTLY", (
        # an INVALID one a killed build left
        sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(names.sibling(table, name)),
        sql.SQL("CREATE {}INDEX CONCURRENTLY {} ON {} ({})").format(
            unique, sql.Identifier(name), names.relation(table), cols)), autocommit=True)


def _swap(shape: TableShape, shadow: str, trigger: sql.Identifier, fn: sql.Identifier,
          check: sql.Identifier) -> Step:
    t, col = shape.table, shape.column
    rel, c, s = names.relation(t), sql.Identifier(col.name), sql.Identifier(shadow)
    others = dict.fromkeys(fk.table for fk in shape.foreign_keys if fk.table != t)
    locked = sql.SQL(", ").join([rel, *map(names.relation, others)])
    out: list[Statement] = [sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(locked)]
    out += [sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(names.relation(fk.table), sql.Identifier(fk.name))
            for fk in shape.foreign_keys if fk.table != t or col.name not in fk.columns]
    if col.not_null:
        out += [sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(rel, s),
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(rel, check)]
    if col.default is not None:
        out.append(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(rel, s, sql.SQL(col.default)))
    if col.sequence is not None:
        out.append(sql.SQL("ALTER SEQUENCE {} OWNED BY {}.{}").format(
            sql.Identifier(*col.sequence.split(".", 1)), rel, s))
    out += [sql.SQL("DROP TRIGGER {} ON {}").format(trigger, rel), sql.SQL("DROP FUNCTION {}()").format(fn),
            sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(rel, c),
            sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(rel, s, c)]
    out += [_take_over(t, i, col.name) for i in shape.indexes]
    out += [_readd(fk) for fk in shape.foreign_keys]
    return Step("swap the columns", tuple(out))


def _take_over(table: str, index: Index, column: str) -> Statement:
    """The shadow index takes the original's place: as its constraint, or by its name."""
    shadow = names.helper(index.name, table, column)
    if index.constraint is not None:
        kind = sql.SQL("PRIMARY KEY" if index.primary else "UNIQUE")
        return sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {}").format(
            names.relation(table), sql.Identifier(index.constraint), kind, sql.Identifier(shadow))
    return sql.SQL("ALTER INDEX {} RENAME TO {}").format(names.sibling(table, shadow), sql.Identifier(index.name))


def _readd(fk: ForeignKey) -> Statement:
    definition = fk.definition.removesuffix(" NOT VALID")
    return sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID").format(
        names.relation(fk.table), sql.Identifier(fk.name), sql.SQL(definition))
