"""A table's `TableShape` read from a live server (pg_class, pg_attribute, pg_index, pg_constraint, pg_depend)."""
from __future__ import annotations

from typing import Any

import psycopg

from .shape import Column, ForeignKey, Index, TableShape

_COLUMN = """
SELECT c.oid, a.attnum, c.relkind = 'p', c.reltuples, pg_relation_size(c.oid), t.typname, a.attnotnull,
       a.attidentity <> '', a.attgenerated <> '', pg_get_expr(d.adbin, d.adrelid),
       pg_get_serial_sequence(c.oid::regclass::text, a.attname)
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = %(column)s AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE c.oid = to_regclass(%(table)s)"""
_KEY = """
SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = %(oid)s AND i.indisprimary AND i.indnatts = 1"""
# Every index that holds the column (a key column, or in an expression or predicate); plain: a btree on
# columns whose definition is exactly the one rebuilt.
_INDEXES = """
SELECT x.relname, ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(n, o)
                        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o),
       i.indisunique,
       i.indexprs IS NULL AND i.indpred IS NULL AND i.indisvalid AND pg_get_indexdef(i.indexrelid) = format(
           'CREATE %%sINDEX %%s ON %%s USING btree (%%s)', CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END,
           quote_ident(x.relname), (SELECT format('%%I.%%I', n.nspname, r.relname) FROM pg_class r
                                    JOIN pg_namespace n ON n.oid = r.relnamespace WHERE r.oid = i.indrelid),
           (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.o) FROM unnest(i.indkey) WITH ORDINALITY
            k(n, o) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n)),
       con.conname, i.indisprimary
FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u')
WHERE i.indrelid = %(oid)s AND (%(attnum)s = ANY(i.indkey) OR EXISTS (
    SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
    AND d.refobjid = %(oid)s AND d.refobjsubid = %(attnum)s))
ORDER BY x.relname"""
_FOREIGN_KEYS = """
SELECT f.conname, f.conrelid::regclass::text,
       ARRAY(SELECT a.attname FROM unnest(f.conkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = k.n ORDER BY k.o),
       f.confrelid::regclass::text,
       ARRAY(SELECT a.attname FROM unnest(f.confkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = f.confrelid AND a.attnum = k.n ORDER BY k.o),
       pg_get_constraintdef(f.oid)
FROM pg_constraint f WHERE f.contype = 'f' AND ((f.conrelid = %(oid)s AND %(attnum)s = ANY(f.conkey))
                                              OR (f.confrelid = %(oid)s AND %(attnum)s = ANY(f.confkey)))
ORDER BY f.conname"""
# What else depends on the column (a view, a CHECK, a column trigger, a statistics object…): not carried over.
_OTHERS = """
SELECT DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid) FROM pg_depend d
WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = %(oid)s AND d.refobjsubid = %(attnum)s
  AND d.classid NOT IN ('pg_class'::regclass, 'pg_attrdef'::regclass)
  AND NOT (d.classid = 'pg_constraint'::regclass AND EXISTS (SELECT FROM pg_constraint k WHERE k.oid = d.objid
                                                             AND k.contype IN ('p', 'u', 'f')))
ORDER BY 1"""
# The table's own triggers: their functions' plans, cached by the serving sessions, fail ("type of parameter …
# does not match that when preparing the plan") once the column's type changes under them.
_TRIGGERS = """
SELECT tgname FROM pg_trigger WHERE tgrelid = %(oid)s AND NOT tgisinternal AND tgname NOT LIKE 'ss\\_sync\\_%%'
ORDER BY 1"""


def read_shape(conn: psycopg.Connection[Any], table: str, column: str) -> TableShape | None:
    """The shape of `table`'s `column` now; None when either does not exist."""
    row = conn.execute(_COLUMN, {"table": table, "column": column}).fetchone()
    if row is None:
        return None
    oid, attnum, partitioned, reltuples, heap, typname, not_null, identity, generated, default, seq = row
    at = {"oid": oid, "attnum": attnum}
    key = conn.execute(_KEY, at).fetchone()
    indexes = tuple(Index(name, tuple(cols), unique, plain, con, primary)
                    for name, cols, unique, plain, con, primary in conn.execute(_INDEXES, at))
    fks = tuple(ForeignKey(name, tab, tuple(cols), ref, tuple(refcols), definition)
                for name, tab, cols, ref, refcols, definition in conn.execute(_FOREIGN_KEYS, at))
    others = tuple(f"{what} uses the column" for (what,) in conn.execute(_OTHERS, at)) + tuple(
        f"trigger {name} on the table: the serving sessions' cached plans of its function would fail after the "
        f"swap" for (name,) in conn.execute(_TRIGGERS, at))
    return TableShape(table, Column(column, typname, not_null, default, seq, identity, generated),
                      key[0] if key else None, indexes, fks, partitioned, max(float(reltuples), 0.0), heap, others)
