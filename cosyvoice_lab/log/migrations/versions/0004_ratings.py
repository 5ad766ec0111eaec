"""ratings: dated listening ratings, several raters per take (log/ratings.py).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from cosyvoice_lab.log.migrations.columns import rowid

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    t, i = sa.Text, sa.Integer
    op.create_table(
        "ratings",
        *rowid(),
        sa.Column("rating_id", t, nullable=False, unique=True),
        sa.Column("take_id", t, nullable=False),
        sa.Column("session_id", t),
        sa.Column("seed", i, sa.CheckConstraint("seed >= 0")),
        sa.Column("kind", t, sa.CheckConstraint("kind IN ('preference','adherence')"), nullable=False),
        sa.Column("rater", t, nullable=False),
        sa.Column("rating", i, sa.CheckConstraint("rating BETWEEN 1 AND 5")),
        sa.Column("at", t, nullable=False),
    )
    op.create_index("ratings_take", "ratings", ["take_id", "at"])
    op.create_index("ratings_session", "ratings", ["session_id", "at"])
