"""v3 (broken on purpose): a CHECK constraint every seeded row violates, so the upgrade fails halfway.

Revision ID: d4e5f6a7b8c9
Revises: c3d4e5f6a7b8
"""
from alembic import op
import sqlalchemy as sa

revision = "d4e5f6a7b8c9"
down_revision = "c3d4e5f6a7b8"


def upgrade():
    op.add_column("events", sa.Column("archived", sa.Boolean))
    op.create_check_constraint("ck_events_tokens_negative", "events", "total_tokens < 0")


def downgrade():
    op.drop_constraint("ck_events_tokens_negative", "events")
    op.drop_column("events", "archived")
