"""Alembic environment of the demo app: one transaction per revision, so a failing revision leaves
the ones before it committed (the database really is half-migrated)."""
import sys
from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context

sys.path.insert(0, "/app")
from db import url  # noqa: E402

config = context.config
if config.config_file_name:
    fileConfig(config.config_file_name)

if context.is_offline_mode():
    context.configure(url=url(), literal_binds=True, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = sa.create_engine(url(), poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
