"""v2.0.1: event_links, a small table whose rows point at events (a foreign key on events.id).

Revision ID: e5f6a7b8c9d0
Revises: b2c3d4e5f6a7
"""
from alembic import op
import sqlalchemy as sa

revision = "e5f6a7b8c9d0"
down_revision = "b2c3d4e5f6a7"


def upgrade():
    op.create_table(
        "event_links",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id", name="event_links_event_id_fkey"), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )


def downgrade():
    op.drop_table("event_links")
