"""Index builds and drops: CREATE INDEX without CONCURRENTLY (MS012), CREATE INDEX CONCURRENTLY (MS014), DROP
INDEX without CONCURRENTLY (MS015), REINDEX without CONCURRENTLY (MS018). CONCURRENTLY inside a transaction block
is MS013 (rules/transactions.py)."""
from __future__ import annotations

from ..actions import Action
from ..context import Context
from ..locks import Kind
from ..registry import Hit, action_rule


@action_rule(
    "MS012", "create-index-blocking", {Kind.CREATE_INDEX},
    remedy="CREATE INDEX CONCURRENTLY inside op.get_context().autocommit_block()",
    triggers=["CREATE INDEX i ON t (c)", "CREATE UNIQUE INDEX i ON t (c)"],
    passes=["CREATE INDEX CONCURRENTLY i ON t (c)", "CREATE TABLE t (c int);\nCREATE INDEX i ON t (c)"])
def create_index_blocking(a: Action, ctx: Context) -> Hit | None:
    return Hit("scan", "index") if a.existing else None


@action_rule(
    "MS014", "create-index-concurrently", {Kind.CREATE_INDEX_CONCURRENTLY},
    remedy="fine; afterwards check pg_index.indisvalid",
    triggers=["CREATE INDEX CONCURRENTLY i ON t (c)"],
    passes=["CREATE INDEX i ON t (c)"])
def create_index_concurrently(a: Action, ctx: Context) -> Hit | None:
    return Hit("scan", "index2")


@action_rule(
    "MS015", "drop-index-blocking", {Kind.DROP_INDEX},
    remedy="DROP INDEX CONCURRENTLY in an autocommit block",
    triggers=["DROP INDEX i"],
    passes=["DROP INDEX CONCURRENTLY i"])
def drop_index_blocking(a: Action, ctx: Context) -> Hit | None:
    return Hit()


@action_rule(
    "MS018", "reindex-blocking", {Kind.REINDEX},
    remedy="REINDEX CONCURRENTLY in an autocommit block",
    triggers=["REINDEX TABLE t", "REINDEX INDEX i"],
    passes=["REINDEX TABLE CONCURRENTLY t"])
def reindex_blocking(a: Action, ctx: Context) -> Hit | None:
    return Hit("rewrite", "reindex")
