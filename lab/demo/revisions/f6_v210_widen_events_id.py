"""v2.1.0: the primary key of the biggest table widened, events.id int4 -> int8 with its sequence (a rewrite of
events and of its primary key index; event_links.event_id keeps pointing at it).

Revision ID: f6a7b8c9d0e1
Revises: e5f6a7b8c9d0
"""
from alembic import op
import sqlalchemy as sa

revision = "f6a7b8c9d0e1"
down_revision = "e5f6a7b8c9d0"


def upgrade():
    op.alter_column("events", "id", type_=sa.BigInteger, existing_type=sa.Integer, existing_nullable=False)
    op.execute("ALTER SEQUENCE events_id_seq AS bigint")


def downgrade():
    op.execute("ALTER SEQUENCE events_id_seq AS integer")
    op.alter_column("events", "id", type_=sa.Integer, existing_type=sa.BigInteger, existing_nullable=False)
