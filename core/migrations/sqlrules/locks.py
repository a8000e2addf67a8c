"""Lock modes as tables: how strong each mode is, what it blocks, and which mode each kind of statement takes.

From PostgreSQL's "Explicit Locking" page and the notes of "ALTER TABLE": the lock is a property of the kind of
statement (or ALTER TABLE subcommand), never of the rules that judge it.
"""
from __future__ import annotations

from enum import StrEnum

AE, EXCL, SRE, SHARE, SUE, RE, RS, AS = ("ACCESS EXCLUSIVE", "EXCLUSIVE", "SHARE ROW EXCLUSIVE", "SHARE",
                                         "SHARE UPDATE EXCLUSIVE", "ROW EXCLUSIVE", "ROW SHARE", "ACCESS SHARE")

# mode: (strength, blocks reads, blocks writes). A stronger mode conflicts with everything a weaker one does;
# SHARE and stronger block INSERT/UPDATE/DELETE, only ACCESS EXCLUSIVE blocks plain SELECT. None: no table lock.
MODES: dict[str | None, tuple[int, bool, bool]] = {
    None: (0, False, False),
    AS: (1, False, False),
    RS: (2, False, False),
    RE: (3, False, False),
    SUE: (4, False, False),
    SHARE: (5, False, True),
    SRE: (6, False, True),
    EXCL: (7, False, True),
    AE: (8, True, True),
}


def strength(mode: str | None) -> int:
    """Rank of a lock mode: the strongest of several locks on one table is the one that counts."""
    return MODES[mode][0]


def blocks_reads(mode: str | None) -> bool:
    return MODES[mode][1]


def blocks_writes(mode: str | None) -> bool:
    return MODES[mode][2]


class Kind(StrEnum):
    """What a statement, or one subcommand of an ALTER TABLE, does: the unit the lock table and the rules read."""

    TRANSACTION = "transaction"                      # BEGIN, COMMIT, ROLLBACK, SAVEPOINT…
    SET = "set"                                      # SET lock_timeout…
    HARMLESS = "harmless"                            # CREATE FUNCTION, COMMENT, GRANT, SELECT…: no table lock
    UNCOVERED = "uncovered"                          # a statement type the rules do not know
    CREATE_TABLE = "create-table"
    CREATE_TABLE_AS = "create-table-as"
    CREATE_INDEX = "create-index"
    CREATE_INDEX_CONCURRENTLY = "create-index-concurrently"
    DROP_INDEX = "drop-index"
    DROP_INDEX_CONCURRENTLY = "drop-index-concurrently"
    DROP_TABLE = "drop-table"
    DROP_OTHER = "drop-other"                        # DROP SEQUENCE, TYPE…
    REINDEX = "reindex"
    REINDEX_CONCURRENTLY = "reindex-concurrently"
    VACUUM = "vacuum"
    VACUUM_FULL = "vacuum-full"
    CLUSTER = "cluster"
    RENAME = "rename"
    TRUNCATE = "truncate"
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    VERSION_TABLE = "version-table"                  # UPDATE/DELETE of alembic_version: Alembic's bookkeeping
    ALTER_OTHER_RELATION = "alter-other-relation"    # ALTER INDEX, SEQUENCE, VIEW…
    ALTER_COLUMN_TYPE = "alter-column-type"
    ADD_COLUMN = "add-column"                        # nullable, no default
    ADD_COLUMN_SERIAL = "add-column-serial"
    ADD_COLUMN_IDENTITY = "add-column-identity"
    ADD_COLUMN_GENERATED = "add-column-generated"    # GENERATED ALWAYS AS (…) STORED
    ADD_COLUMN_DEFAULT = "add-column-default"
    ADD_COLUMN_NOT_NULL = "add-column-not-null"      # NOT NULL and no default
    SET_NOT_NULL = "set-not-null"
    ADD_CHECK = "add-check"
    ADD_FOREIGN_KEY = "add-foreign-key"
    ADD_UNIQUE = "add-unique"                        # UNIQUE or PRIMARY KEY
    ADD_EXCLUSION = "add-exclusion"
    ADD_CONSTRAINT = "add-constraint"                # any other constraint
    VALIDATE_CONSTRAINT = "validate-constraint"
    DROP_COLUMN = "drop-column"
    REWRITE_TABLE = "rewrite-table"                  # SET TABLESPACE, SET LOGGED/UNLOGGED, SET ACCESS METHOD
    ATTACH_PARTITION = "attach-partition"
    DETACH_PARTITION = "detach-partition"
    DETACH_PARTITION_CONCURRENTLY = "detach-partition-concurrently"
    TRIGGERS = "triggers"                            # ENABLE/DISABLE TRIGGER
    OPTIONS = "options"                              # SET STATISTICS, storage parameters, CLUSTER ON
    ALTER_METADATA = "alter-metadata"                # SET DEFAULT, DROP NOT NULL, DROP CONSTRAINT, OWNER TO…
    ALTER_UNCOVERED = "alter-uncovered"              # an ALTER TABLE subcommand the rules do not know


# The lock each kind takes on its own table (None: none on an existing table).
LOCKS: dict[Kind, str | None] = {
    Kind.TRANSACTION: None, Kind.SET: None, Kind.HARMLESS: None, Kind.UNCOVERED: None,
    Kind.CREATE_TABLE: None, Kind.CREATE_TABLE_AS: None,
    Kind.CREATE_INDEX: SHARE, Kind.CREATE_INDEX_CONCURRENTLY: SUE,
    Kind.DROP_INDEX: AE, Kind.DROP_INDEX_CONCURRENTLY: SUE, Kind.DROP_TABLE: AE, Kind.DROP_OTHER: None,
    Kind.REINDEX: SHARE, Kind.REINDEX_CONCURRENTLY: SUE,
    Kind.VACUUM: SUE, Kind.VACUUM_FULL: AE, Kind.CLUSTER: AE,
    Kind.RENAME: AE, Kind.TRUNCATE: AE,
    Kind.INSERT: RE, Kind.UPDATE: RE, Kind.DELETE: RE, Kind.VERSION_TABLE: None,
    Kind.ALTER_OTHER_RELATION: AE,
    Kind.ALTER_COLUMN_TYPE: AE,
    Kind.ADD_COLUMN: AE, Kind.ADD_COLUMN_SERIAL: AE, Kind.ADD_COLUMN_IDENTITY: AE, Kind.ADD_COLUMN_GENERATED: AE,
    Kind.ADD_COLUMN_DEFAULT: AE, Kind.ADD_COLUMN_NOT_NULL: AE,
    Kind.SET_NOT_NULL: AE,
    Kind.ADD_CHECK: AE, Kind.ADD_FOREIGN_KEY: SRE, Kind.ADD_UNIQUE: AE, Kind.ADD_EXCLUSION: AE,
    Kind.ADD_CONSTRAINT: AE,
    Kind.VALIDATE_CONSTRAINT: SUE,
    Kind.DROP_COLUMN: AE, Kind.REWRITE_TABLE: AE,
    Kind.ATTACH_PARTITION: SUE, Kind.DETACH_PARTITION: AE, Kind.DETACH_PARTITION_CONCURRENTLY: SUE,
    Kind.TRIGGERS: SRE, Kind.OPTIONS: SUE, Kind.ALTER_METADATA: AE, Kind.ALTER_UNCOVERED: AE,
}

# The lock some kinds also take on other tables: the referenced side of a foreign key, the partition attached.
OTHER_SIDE_LOCKS: dict[Kind, str] = {
    Kind.CREATE_TABLE: SRE,
    Kind.ADD_FOREIGN_KEY: SRE,
    Kind.ATTACH_PARTITION: AE,
}
