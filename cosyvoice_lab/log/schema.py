"""The experiment log's tables, declared once (SQLAlchemy Core ``MetaData``).

Every other part of the log derives from these declarations: the select lists and row
conversion (``rows.py``), the DataFrames' columns and dtypes (``frame.py``), the bundle schema's
columns (``bundle_schema.py``), the Take's fields (checked by a test). Migrations
(``migrations/versions``) are the frozen history that builds them; a test compares a migrated
database with this module on SQLite and on PostgreSQL.

A column's ``info`` says how the takes DataFrame shows it: ``kind`` (its dtype: ``str``,
``time``, ``float``, ``Int64``, ``bool``, ``category``, ``status``, ``backend``, ``tags``,
``notes``, ``metrics``; by default from its type) and ``load`` (``dense``: fetched for every row,
the default; ``packed``: few distinct values, texts or integers, fetched together in one cell
per row (``functions.pack``); ``sparse``: empty for most takes, fetched only for rows that have
it; ``none``: not in the frame).

Timestamps are fixed-width ISO 8601 UTC text (``2025-01-31T08:00:00.000000Z``): readable in
any shell, sortable as text, parsed fast by Arrow. JSON columns hold NULL rather than an empty
object/array. Flags are INTEGER 0/1. Each table also has a ``rowid`` (write order): SQLite's
implicit one, a generated identity column on PostgreSQL (``ROWID`` names it in queries).
"""

from typing import Any

from sqlalchemy import (
    REAL,
    CheckConstraint,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    literal_column,
)
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION

metadata = MetaData()

# REAL on SQLite (its 8-byte float), DOUBLE PRECISION on PostgreSQL (its REAL is 4 bytes).
Float: Any = REAL().with_variant(DOUBLE_PRECISION(), "postgresql")

# The write order of rows: SQLite's implicit rowid, PostgreSQL's identity column of that name.
ROWID: Any = literal_column("rowid")


def _c(
    name: str, type_: Any, *args: Any, nullable: bool = True, kind: str | None = None, load: str = "dense", **kw: Any
) -> Column:
    info = {"load": load, **({"kind": kind} if kind else {})}
    return Column(name, type_, *args, nullable=nullable, info=info, **kw)


STATUSES_SQL = "'pending','ok','failed','unknown','interrupted'"

takes = Table(
    "takes",
    metadata,
    _c("take_id", Text, nullable=False, unique=True),  # uuid4 hex, globally unique (bundles merge by it)
    _c("status", Text, CheckConstraint(f"status IN ({STATUSES_SQL})"), nullable=False, kind="status", load="packed"),
    _c("experiment", Text),
    _c("backend", Text, nullable=False, kind="backend", load="packed"),  # 'dashscope' or 'offline'
    _c("region", Text, load="packed"),
    _c("host", Text, load="packed"),  # the API host the request went to
    _c("package_version", Text, load="packed"),
    # the VoiceDesign, field by field: enough to send it again
    _c("target_model", Text, nullable=False, kind="category", load="packed"),
    _c("prefix", Text, nullable=False, load="packed"),
    _c("voice_prompt", Text, nullable=False),
    _c("preview_text", Text, nullable=False),
    _c("language", Text, load="sparse"),
    _c("sample_rate", Integer, load="packed"),
    _c("response_format", Text, load="packed"),
    _c("design_region", Text, load="packed"),
    # the outcome
    _c("request_id", Text),
    _c("voice_id", Text),
    _c("voice_status", Text, load="packed"),
    _c("started_at", Text, nullable=False, kind="time"),
    _c("finished_at", Text, kind="time"),
    _c("latency_s", Float),
    _c("error_code", Text, load="sparse"),
    _c("error_message", Text, load="sparse"),
    _c("audio_sha256", Text),
    _c("audio_file", Text, load="none"),  # audio/<sha256>.<ext>; the frame shows audio_path
    _c("audio_format", Text, load="packed"),
    _c("audio_sample_rate", Integer, load="packed"),
    _c("audio_duration_s", Float),
    _c("preview_missing", Integer, nullable=False, server_default="0", kind="bool", load="sparse"),
    _c("metrics", Text, kind="metrics"),  # JSON object, NULL when none
    _c("prompt_spec", Text, load="sparse"),  # JSON of the PromptSpec, NULL when none
    _c("parent_take_id", Text, load="sparse"),
    _c("cell", Text),
    _c("repeat", Integer),
    # human annotations (current values; their history is the annotations table, the rating's
    # the 'own' rows of ratings: this column caches the latest of them, ratings.cache_own)
    _c("rating", Integer, CheckConstraint("rating BETWEEN 1 AND 5"), load="sparse"),
    _c("chosen", Integer, nullable=False, server_default="0", kind="bool", load="sparse"),
    _c("tags", Text, kind="tags", load="sparse"),  # JSON array, NULL when none
    _c("notes", Text, nullable=False, server_default="", kind="notes", load="sparse"),
    _c("played", Integer, nullable=False, server_default="0", kind="bool", load="sparse"),
    # who wrote the pending row: decides when a 'pending' take is stale (recovery.py)
    _c("writer_host", Text, load="none"),
    _c("writer_pid", Integer, load="none"),
    _c("writer_start", Text, load="none"),
)
Index("takes_started", takes.c.started_at)
Index("takes_experiment", takes.c.experiment, takes.c.cell)
# Opening a log scans pending rows; a partial index keeps that free at 100k takes.
_PENDING = takes.c.status == literal_column("'pending'")
Index("takes_pending", takes.c.status, sqlite_where=_PENDING, postgresql_where=_PENDING)

ANNOTATION_ACTIONS = ("rate", "choose", "unchoose", "tag", "untag", "note", "played")
annotations = Table(
    "annotations",
    metadata,
    Column("annotation_id", Text, nullable=False, unique=True),  # uuid4 hex: bundles merge by it
    Column("take_id", Text, nullable=False),
    Column("at", Text, nullable=False),
    Column(
        "action", Text, CheckConstraint(f"action IN ({', '.join(repr(a) for a in ANNOTATION_ACTIONS)})"), nullable=False
    ),
    Column("value", Text),  # the rating, tag or note text; NULL otherwise
    Column("author", Text),
)
Index("annotations_take", annotations.c.take_id, annotations.c.at)

utterances = Table(
    "utterances",
    metadata,
    Column("utterance_id", Text, nullable=False, unique=True),
    Column("take_id", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("params", Text, nullable=False),  # JSON object of synthesis parameters
    Column("characters", Integer, nullable=False),
    Column("cost_cny", Float, nullable=False),
    Column("request_id", Text),
    Column("audio_sha256", Text),
    Column("audio_file", Text),
    Column("audio_format", Text),
    Column("audio_sample_rate", Integer),
    Column("audio_duration_s", Float),
)
Index("utterances_take", utterances.c.take_id)

cell_claims = Table(
    "cell_claims",
    metadata,
    Column("experiment", Text, nullable=False),
    Column("cell", Text, nullable=False),  # '<prompt hash>|<model>|r<repeat>' (lab/planning.py)
    Column("take_id", Text, nullable=False),  # the take sent for it; its row names the writer
    Column("claimed_at", Text, nullable=False),
    PrimaryKeyConstraint("experiment", "cell"),
)

# Every star rating of a take, one dated row each (ratings.py; the one store since revision 0006):
# a person's own mark ('own': log.rate; takes.rating caches the latest) and the listening rounds'
# answers ('preference', 'adherence': log.ratings.add, the panel, a notebook's blind round). The
# latest row per (session_id, take_id, rater, kind, hidden_repeat) is the current rating.
RATING_KINDS = ("own", "preference", "adherence")
ratings = Table(
    "ratings",
    metadata,
    Column("rating_id", Text, nullable=False, unique=True),  # uuid4 hex: bundles merge by it
    Column("take_id", Text, nullable=False),
    Column("session_id", Text),  # a round rater's session (round_raters.session_id); NULL outside a round
    Column("kind", Text, CheckConstraint("kind IN ('own','preference','adherence')"), nullable=False),
    Column("rater", Text, nullable=False),
    Column("rating", Integer, CheckConstraint("rating BETWEEN 1 AND 5")),  # NULL: cleared
    Column("at", Text, nullable=False),
    Column("position", Integer, CheckConstraint("position >= 0")),  # index into the rater's presented order
    # 1: this showing repeats an item already shown to the rater, unannounced (rater consistency)
    Column("hidden_repeat", Integer, CheckConstraint("hidden_repeat IN (0, 1)"), nullable=False, server_default="0"),
)
Index("ratings_take", ratings.c.take_id, ratings.c.at)
Index("ratings_session", ratings.c.session_id, ratings.c.at)

# Listening rounds (rounds.py): a round (kind, items, seed, options, state), each rater's exact
# presentation order, and every pair choice (the latest per session and position is the current one;
# a star round's answers are rows of ``ratings``).
rounds = Table(
    "rounds",
    metadata,
    Column("round_id", Text, nullable=False, unique=True),  # 'r-' + 12 hex: what a panel resumes by
    Column("experiment", Text),  # the experiment whose takes it plays; NULL: takes chosen by hand
    Column("kind", Text, CheckConstraint("kind IN ('preference','adherence','pair')"), nullable=False),
    Column("items", Text, nullable=False),  # JSON array: take ids (star kinds) or [take_a, take_b] pairs
    Column("seed", Integer, CheckConstraint("seed >= 0"), nullable=False),  # each rater's order is drawn from it
    Column("options", Text, nullable=False),  # JSON object: repeat_share, subset_size, must_play, no_preference
    Column("state", Text, CheckConstraint("state IN ('open','closed','revealed')"), nullable=False),
    Column("created_at", Text, nullable=False),
)
round_raters = Table(
    "round_raters",
    metadata,
    Column("round_id", Text, nullable=False),  # rounds.round_id
    Column("rater", Text, nullable=False),  # NFC-normalised, compared exactly (no case folding)
    Column("session_id", Text, nullable=False, unique=True),  # ratings.session_id, round_answers.session_id
    Column("invite_sha256", Text, unique=True),  # sha256 hex of the personal link's token; NULL: joined by name
    Column("presented", Text, nullable=False),  # JSON array of [item index, flipped 0/1] in presentation order
    Column("joined_at", Text, nullable=False),
    UniqueConstraint("round_id", "rater"),
)
Index("round_raters_round", round_raters.c.round_id)
round_answers = Table(
    "round_answers",
    metadata,
    Column("answer_id", Text, nullable=False, unique=True),  # uuid4 hex
    Column("session_id", Text, nullable=False),  # round_raters.session_id
    Column("position", Integer, CheckConstraint("position >= 0"), nullable=False),  # index into presented
    Column("preferred", Text),  # the take id chosen; NULL: no preference
    Column("at", Text, nullable=False),  # strictly increasing within a process
)
Index("round_answers_session", round_answers.c.session_id, round_answers.c.at)

# The tables of the log's record (what a bundle or a copy carries; not the audio).
RECORD_TABLES = (takes, annotations, utterances, cell_claims, ratings)

# PostgreSQL only: a team's audio, content-addressed, in the same database (a folder log keeps
# files in folder/audio). Not in ``metadata``: a folder log has no such table.
audio_metadata = MetaData()
audio = Table(
    "audio",
    audio_metadata,
    Column("sha256", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

# Who wrote a pending row (recovery.py); never read back into a Take.
WRITER_COLUMNS = ("writer_host", "writer_pid", "writer_start")
# The columns read back into a Take, in table order.
TAKE_COLUMNS = tuple(c.name for c in takes.columns if c.name not in WRITER_COLUMNS)


def frame_kind(column: Column) -> str:
    """The takes DataFrame's kind of a column (its ``info``, else from its type)."""
    if "kind" in column.info:
        return column.info["kind"]
    if isinstance(column.type, Integer):
        return "Int64"
    if column.type is Float or isinstance(column.type, REAL):
        return "float"
    return "str"
