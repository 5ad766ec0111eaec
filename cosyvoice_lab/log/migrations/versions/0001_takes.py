"""takes: one row per attempt, written pending before its request leaves.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from cosyvoice_lab.log.migrations.columns import FLOAT, rowid

revision = "0001"
down_revision = None

_STATUSES = "'pending','ok','failed','unknown','interrupted'"


def upgrade() -> None:
    t, i = sa.Text, sa.Integer
    op.create_table(
        "takes",
        *rowid(),
        sa.Column("take_id", t, nullable=False, unique=True),
        sa.Column("status", t, sa.CheckConstraint(f"status IN ({_STATUSES})"), nullable=False),
        sa.Column("experiment", t),
        sa.Column("backend", t, nullable=False),
        sa.Column("region", t),
        sa.Column("host", t),
        sa.Column("package_version", t),
        sa.Column("target_model", t, nullable=False),
        sa.Column("prefix", t, nullable=False),
        sa.Column("voice_prompt", t, nullable=False),
        sa.Column("preview_text", t, nullable=False),
        sa.Column("language", t),
        sa.Column("sample_rate", i),
        sa.Column("response_format", t),
        sa.Column("design_region", t),
        sa.Column("request_id", t),
        sa.Column("voice_id", t),
        sa.Column("voice_status", t),
        sa.Column("started_at", t, nullable=False),
        sa.Column("finished_at", t),
        sa.Column("latency_s", FLOAT),
        sa.Column("error_code", t),
        sa.Column("error_message", t),
        sa.Column("audio_sha256", t),
        sa.Column("audio_file", t),
        sa.Column("audio_format", t),
        sa.Column("audio_sample_rate", i),
        sa.Column("audio_duration_s", FLOAT),
        sa.Column("preview_missing", i, nullable=False, server_default="0"),
        sa.Column("metrics", t),
        sa.Column("prompt_spec", t),
        sa.Column("parent_take_id", t),
        sa.Column("cell", t),
        sa.Column("repeat", i),
        sa.Column("rating", i, sa.CheckConstraint("rating BETWEEN 1 AND 5")),
        sa.Column("chosen", i, nullable=False, server_default="0"),
        sa.Column("tags", t),
        sa.Column("notes", t, nullable=False, server_default=""),
        sa.Column("played", i, nullable=False, server_default="0"),
        sa.Column("writer_host", t),
        sa.Column("writer_pid", i),
        sa.Column("writer_start", t),
    )
    op.create_index("takes_started", "takes", ["started_at"])
    op.create_index("takes_experiment", "takes", ["experiment", "cell"])
    pending = sa.text("status = 'pending'")
    op.create_index("takes_pending", "takes", ["status"], sqlite_where=pending, postgresql_where=pending)
    if op.get_bind().dialect.name == "postgresql":  # a team's audio lives in its database
        op.create_table(
            "audio",
            sa.Column("sha256", t, primary_key=True),
            sa.Column("name", t, nullable=False),
            sa.Column("data", sa.LargeBinary, nullable=False),
        )
