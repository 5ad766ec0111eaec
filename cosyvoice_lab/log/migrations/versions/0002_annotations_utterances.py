"""annotation history and utterances; a version-1 log's annotations become history.

Revision ID: 0002
Revises: 0001
"""

import json
import uuid

import sqlalchemy as sa
from alembic import op

from cosyvoice_lab.log.migrations.columns import FLOAT, rowid

revision = "0002"
down_revision = "0001"

_ACTIONS = "'rate','choose','unchoose','tag','untag','note','played'"


def upgrade() -> None:
    t, i = sa.Text, sa.Integer
    annotations = op.create_table(
        "annotations",
        *rowid(),
        sa.Column("annotation_id", t, nullable=False, unique=True),
        sa.Column("take_id", t, nullable=False),
        sa.Column("at", t, nullable=False),
        sa.Column("action", t, sa.CheckConstraint(f"action IN ({_ACTIONS})"), nullable=False),
        sa.Column("value", t),
        sa.Column("author", t),
    )
    op.create_index("annotations_take", "annotations", ["take_id", "at"])
    op.create_table(
        "utterances",
        *rowid(),
        sa.Column("utterance_id", t, nullable=False, unique=True),
        sa.Column("take_id", t, nullable=False),
        sa.Column("created_at", t, nullable=False),
        sa.Column("text", t, nullable=False),
        sa.Column("params", t, nullable=False),
        sa.Column("characters", i, nullable=False),
        sa.Column("cost_cny", FLOAT, nullable=False),
        sa.Column("request_id", t),
        sa.Column("audio_sha256", t),
        sa.Column("audio_file", t),
        sa.Column("audio_format", t),
        sa.Column("audio_sample_rate", i),
        sa.Column("audio_duration_s", FLOAT),
    )
    op.create_index("utterances_take", "utterances", ["take_id"])
    _seed(annotations)


def _seed(annotations: sa.Table) -> None:
    """A version-1 log's annotations become history, so that replaying it (bundle merges) gives
    back today's values; dated when their take finished, the best time known."""
    names = ["take_id", "started_at", "finished_at", "rating", "chosen", "tags", "notes", "played"]
    takes = sa.table("takes", *(sa.column(c) for c in names))
    bind = op.get_bind()
    events = []
    for row in bind.execute(sa.select(takes)).mappings():
        at = row["finished_at"] or row["started_at"]
        found: list[tuple[str, str | None]] = [("rate", str(row["rating"]))] if row["rating"] is not None else []
        found += [("choose", None)] if row["chosen"] else []
        found += [("tag", tag) for tag in json.loads(row["tags"] or "[]")]
        found += [("note", row["notes"])] if row["notes"] else []
        found += [("played", None)] if row["played"] else []
        events += [
            {
                "annotation_id": uuid.uuid4().hex,
                "take_id": row["take_id"],
                "at": at,
                "action": a,
                "value": v,
                "author": None,
            }
            for a, v in found
        ]
    if events:
        bind.execute(sa.insert(annotations), events)
