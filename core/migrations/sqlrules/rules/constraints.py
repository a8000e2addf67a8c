"""Constraints that scan or build an index under a strong lock: SET NOT NULL (MS007), CHECK and FOREIGN KEY
without NOT VALID (MS008, MS009), VALIDATE CONSTRAINT (MS010), UNIQUE or PRIMARY KEY (MS011), EXCLUDE (MS016)."""
from __future__ import annotations

from ..actions import Action
from ..context import Context
from ..expressions import table_name
from ..locks import Kind
from ..registry import Hit, action_rule

NOT_VALID_THEN_VALIDATE = "ADD CONSTRAINT … NOT VALID, then VALIDATE CONSTRAINT in its own transaction"
SCAN = Hit("scan", "scan")


@action_rule(
    "MS007", "set-not-null", {Kind.SET_NOT_NULL},
    remedy="ADD CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT, then SET NOT NULL",
    triggers=["ALTER TABLE t ALTER COLUMN c SET NOT NULL"],
    passes=["ALTER TABLE t ALTER COLUMN c DROP NOT NULL",
            "CREATE TABLE t (c int);\nALTER TABLE t ALTER COLUMN c SET NOT NULL"])
def set_not_null(a: Action, ctx: Context) -> Hit | None:
    return SCAN if a.existing else None


@action_rule(
    "MS008", "add-check-valid", {Kind.ADD_CHECK},
    remedy=NOT_VALID_THEN_VALIDATE,
    triggers=["ALTER TABLE t ADD CONSTRAINT k CHECK (c > 0)"],
    passes=["ALTER TABLE t ADD CONSTRAINT k CHECK (c > 0) NOT VALID",
            "CREATE TABLE t (c int);\nALTER TABLE t ADD CONSTRAINT k CHECK (c > 0)"])
def add_check_valid(a: Action, ctx: Context) -> Hit | None:
    return SCAN if a.existing and not a.node.skip_validation else None


@action_rule(
    "MS009", "add-fk-valid", {Kind.ADD_FOREIGN_KEY},
    remedy=NOT_VALID_THEN_VALIDATE,
    triggers=["ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (c) REFERENCES u (id)",
              "ALTER TABLE t ADD COLUMN c int REFERENCES u (id)"],
    passes=["ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (c) REFERENCES u (id) NOT VALID",
            "CREATE TABLE t (c int);\nALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (c) REFERENCES u (id)"])
def add_fk_valid(a: Action, ctx: Context) -> Hit | None:
    if not a.existing or a.node.skip_validation:
        return None
    return Hit("scan", "scan", f"locks {table_name(a.node.pktable)} too (SHARE ROW EXCLUSIVE)")


@action_rule(
    "MS010", "validate-constraint", {Kind.VALIDATE_CONSTRAINT},
    remedy="fine: DML continues; keep it apart from ACCESS EXCLUSIVE work",
    triggers=["ALTER TABLE t VALIDATE CONSTRAINT f"],
    passes=["ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (c) REFERENCES u (id) NOT VALID"])
def validate_constraint(a: Action, ctx: Context) -> Hit | None:
    return SCAN


@action_rule(
    "MS011", "add-unique-or-pk", {Kind.ADD_UNIQUE},
    remedy="CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT … USING INDEX",
    triggers=["ALTER TABLE t ADD CONSTRAINT u UNIQUE (c)", "ALTER TABLE t ADD PRIMARY KEY (id)",
              "ALTER TABLE t ADD COLUMN c int UNIQUE"],
    passes=["ALTER TABLE t ADD CONSTRAINT u UNIQUE USING INDEX ui",
            "CREATE TABLE t (c int);\nALTER TABLE t ADD CONSTRAINT u UNIQUE (c)"])
def add_unique_or_pk(a: Action, ctx: Context) -> Hit | None:
    return Hit("scan", "index") if a.existing and not a.node.indexname else None


@action_rule(
    "MS016", "add-exclusion-constraint", {Kind.ADD_EXCLUSION},
    remedy="build a new table and copy, or schedule a maintenance window",
    triggers=["ALTER TABLE t ADD CONSTRAINT x EXCLUDE USING gist (c WITH &&)"],
    passes=["CREATE TABLE t (c int);\nALTER TABLE t ADD CONSTRAINT x EXCLUDE USING gist (c WITH &&)"])
def add_exclusion(a: Action, ctx: Context) -> Hit | None:
    return Hit("scan", "index") if a.existing else None
