"""cell claims: a compare's cell is claimed in the log before it is sent.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from cosyvoice_lab.log.migrations.columns import rowid

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    t = sa.Text
    claims = op.create_table(
        "cell_claims",
        *rowid(),
        sa.Column("experiment", t, nullable=False),
        sa.Column("cell", t, nullable=False),
        sa.Column("take_id", t, nullable=False),
        sa.Column("claimed_at", t, nullable=False),
        sa.PrimaryKeyConstraint("experiment", "cell"),
    )
    # An existing log's cells are claimed by their best take so far: one that may hold a voice
    # before a failed one, the newest first.
    takes = sa.table("takes", *(sa.column(c) for c in ("experiment", "cell", "take_id", "started_at", "status")))
    order: tuple = (
        sa.case((takes.c.status == "failed", 1), else_=0),
        takes.c.started_at.desc(),
        sa.literal_column("rowid").desc(),
    )
    query = sa.select(takes.c.experiment, takes.c.cell, takes.c.take_id, takes.c.started_at).where(
        takes.c.experiment.is_not(None), takes.c.cell.is_not(None)
    )
    best: dict[tuple, dict] = {}
    for experiment, cell, take_id, started_at in op.get_bind().execute(query.order_by(*order)):
        best.setdefault(
            (experiment, cell), {"experiment": experiment, "cell": cell, "take_id": take_id, "claimed_at": started_at}
        )
    if best:
        op.get_bind().execute(sa.insert(claims), list(best.values()))
