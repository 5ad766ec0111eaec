"""rounds, round_raters, round_answers: listening rounds, each rater's order, every answer (log/rounds.py).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from cosyvoice_lab.log.migrations.columns import rowid

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    t, i = sa.Text, sa.Integer
    op.create_table(
        "rounds",
        *rowid(),
        sa.Column("round_id", t, nullable=False, unique=True),
        sa.Column("experiment", t),
        sa.Column("kind", t, sa.CheckConstraint("kind IN ('preference','adherence','pair')"), nullable=False),
        sa.Column("items", t, nullable=False),
        sa.Column("seed", i, sa.CheckConstraint("seed >= 0"), nullable=False),
        sa.Column("options", t, nullable=False),
        sa.Column("state", t, sa.CheckConstraint("state IN ('open','closed','revealed')"), nullable=False),
        sa.Column("created_at", t, nullable=False),
    )
    op.create_table(
        "round_raters",
        *rowid(),
        sa.Column("round_id", t, nullable=False),
        sa.Column("rater", t, nullable=False),
        sa.Column("session_id", t, nullable=False, unique=True),
        sa.Column("invite_sha256", t, unique=True),
        sa.Column("presented", t, nullable=False),
        sa.Column("joined_at", t, nullable=False),
        sa.UniqueConstraint("round_id", "rater"),
    )
    op.create_index("round_raters_round", "round_raters", ["round_id"])
    op.create_table(
        "round_answers",
        *rowid(),
        sa.Column("answer_id", t, nullable=False, unique=True),
        sa.Column("session_id", t, nullable=False),
        sa.Column("position", i, sa.CheckConstraint("position >= 0"), nullable=False),
        sa.Column("rating", i, sa.CheckConstraint("rating BETWEEN 1 AND 5")),
        sa.Column("preferred", t),
        sa.Column("at", t, nullable=False),
    )
    op.create_index("round_answers_session", "round_answers", ["session_id", "at"])
