"""v2: api_keys table, accounts.plan, events.total_tokens int4 -> int8 (a rewrite), index on events.account_id.

Revision ID: b2c3d4e5f6a7
Revises: a1b2c3d4e5f6
"""
from alembic import op
import sqlalchemy as sa

revision = "b2c3d4e5f6a7"
down_revision = "a1b2c3d4e5f6"


def upgrade():
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("account_id", sa.Integer, nullable=False),
        sa.Column("token_hash", sa.Text, nullable=False),
    )
    op.add_column("accounts", sa.Column("plan", sa.Text, nullable=True))
    op.alter_column("events", "total_tokens", type_=sa.BigInteger, existing_type=sa.Integer, existing_nullable=False)
    op.create_index("ix_events_account_id", "events", ["account_id"])


def downgrade():
    op.drop_index("ix_events_account_id", table_name="events")
    op.alter_column("events", "total_tokens", type_=sa.Integer, existing_type=sa.BigInteger, existing_nullable=False)
    op.drop_column("accounts", "plan")
    op.drop_table("api_keys")
