"""The takes DataFrame read the fast way (issue 22): on PostgreSQL through ADBC's driver (rows
straight into Arrow), which must give exactly the frame the usual way gives (psycopg's rows,
``frame.takes_frame`` without ``arrow``), on awkward data and on any texts and floats; it falls
back to the usual way when the driver is missing or its connection fails, and never shows the
password. Real SQLite files and the real PostgreSQL server (tests/pgserver.py).
"""

import json
import logging
import math
import uuid

import pandas as pd
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from cosyvoice_lab.log import arrow_reader, frame, schema
from cosyvoice_lab.log.experiment_log import ExperimentLog

pytestmark = pytest.mark.skipif(arrow_reader.driver() is None, reason="adbc-driver-postgresql is not installed")

AWKWARD = [
    "",
    "NULL",
    "null",
    "None",
    "a,b",
    "it's",
    "''",
    'say "hi"',
    "back\\slash",
    "\\N",
    "{x}",
    "{",
    "[1]",
    " spaced ",
    "tab\there",
    "多行\n文本",
    "cr\rlf\r\n",
    "\n",
    "emoji 🎙️ é",
    "x" * 100_000,
]
FLOATS = [0.1 + 0.2, 1 / 3, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -0.0, 123456789.12345679, 1e22]


def _row(i: int, experiment: str, text: str | None, number: float | None, metrics: str | None) -> dict:
    """A takes row holding ``text`` in every text column that may hold it (NULL where allowed)."""
    return {
        "take_id": uuid.uuid4().hex,
        "status": ["ok", "failed", "pending", "unknown", "interrupted"][i % 5],
        "experiment": experiment,
        "backend": "offline" if i % 2 else "dashscope",
        "region": text,
        "host": text,
        "package_version": text,
        "target_model": text or "m",
        "prefix": text or "",
        "voice_prompt": text or "",
        "preview_text": text or "",
        "language": text,
        "sample_rate": None if text is None else i,
        "response_format": text,
        "design_region": text,
        "request_id": text,
        "voice_id": text,
        "voice_status": text,
        "started_at": f"2025-01-{1 + i % 28:02d}T08:00:00.{i:06d}Z",
        "finished_at": None if text is None else f"2025-02-01T08:00:00.{i:06d}Z",
        "latency_s": number,
        "error_code": text,
        "error_message": text,
        "audio_sha256": None if text is None else f"{i:064x}",
        "audio_file": None,
        "audio_format": text,
        "audio_sample_rate": None if text is None else 24000 + i,
        "audio_duration_s": None if number is None else -number,
        "preview_missing": i % 2,
        "metrics": metrics,
        "prompt_spec": text,
        "parent_take_id": text,
        "cell": text,
        "repeat": None if text is None else i,
        "rating": None if text is None else 1 + i % 5,
        "chosen": i % 3 == 0,
        "tags": None if text is None else json.dumps([text, "t"]),
        "notes": text or "",
        "played": i % 2,
    }


def _insert(log: ExperimentLog, rows: list[dict]) -> None:
    with log.db.transaction() as conn:
        conn.execute(insert(schema.takes), rows)


def _usual(log: ExperimentLog, **filters) -> pd.DataFrame:
    """The frame the usual way: the driver's rows, no Arrow."""
    from cosyvoice_lab.log.rows import where_clause

    return frame.takes_frame(log.db.rows, where_clause(**filters), log.audio_store)


def _answers_in_arrow(log: ExperimentLog) -> bool:
    """Whether the log reads through ADBC, statements with parameters (a filtered frame's) too."""
    takes = schema.takes
    return log.db.arrow(select(takes.c.take_id).where(takes.c.experiment.in_(["a", "b"]))) is not None


@pytest.fixture
def pg_log(pg_log_url, tmp_path):
    with ExperimentLog(pg_log_url, folder=tmp_path / "local") as log:
        yield log


def test_the_frame_read_through_adbc_is_the_usual_frame_on_awkward_data(pg_log):
    """Texts of every shape in every text column (packed, dense and sparse ones), floats that need
    17 digits, NULL in every column that allows it, metrics whose types agree and metrics whose
    types vary: the frame read through ADBC equals the usual one, dtypes, order, values and gaps."""
    rows = []
    for i, text in enumerate([*AWKWARD, None, None]):
        number = FLOATS[i % len(FLOATS)] if text is not None else None
        metrics = None if text is None else json.dumps({"f0": number, "n": i, "word": text})
        rows.append(_row(i, "awkward", text, number, metrics))
    _insert(pg_log, rows)
    assert _answers_in_arrow(pg_log)
    fast = pg_log.df
    pd.testing.assert_frame_equal(fast, _usual(pg_log), check_exact=True)
    assert sorted(fast["voice_prompt"].tolist()) == sorted(t or "" for t in [*AWKWARD, None, None])
    assert {"m_f0", "m_n", "m_word"} <= set(fast.columns)
    # a metric that is a number in one take and a text in another (the slow metrics path)
    _insert(pg_log, [_row(99, "varying", "x", 1.5, json.dumps({"n": "many", "f0": [1]}))])
    pd.testing.assert_frame_equal(pg_log.df, _usual(pg_log), check_exact=True)
    filtered = {"experiment": ["awkward", "varying"], "status": ["ok", "failed"], "min_rating": 2, "tag": "t"}
    pd.testing.assert_frame_equal(pg_log.to_dataframe(**filtered), _usual(pg_log, **filtered), check_exact=True)


def test_an_empty_log_reads_the_same_through_adbc(pg_log):
    assert _answers_in_arrow(pg_log)
    pd.testing.assert_frame_equal(pg_log.df, _usual(pg_log), check_exact=True)


def test_without_the_driver_the_frame_is_read_the_usual_way(pg_log_url, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "adbc_driver_postgresql.dbapi", None)  # not installed
    with ExperimentLog(pg_log_url, folder=tmp_path / "local") as log:
        _insert(log, [_row(i, "e", t, 0.1 * i, None) for i, t in enumerate(AWKWARD[:5])])
        assert not _answers_in_arrow(log)
        pd.testing.assert_frame_equal(log.df, _usual(log), check_exact=True)
        assert len(log.df) == 5


def test_a_connection_the_server_ended_is_replaced_and_the_frame_still_read(pg_log, pg_url):
    """The idle ADBC connection kept for the next read is cut off by the server (as a restart
    does): that read falls back to the usual way (which waits for a lost server), the next one
    opens a fresh connection."""
    _insert(pg_log, [_row(i, "e", "t", 1.0, None) for i in range(3)])
    first = pg_log.df
    database = pg_log.db.query("SELECT current_database()")[0][0]
    with psycopg.connect(pg_url, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchone()[0]
    assert ended >= 1
    pd.testing.assert_frame_equal(pg_log.df, first, check_exact=True)
    assert _answers_in_arrow(pg_log)
    pd.testing.assert_frame_equal(pg_log.df, first, check_exact=True)


def test_a_refused_adbc_login_never_shows_the_password(pg_server, pg_url, tmp_path, caplog):
    """A role whose password changes while the log is open: the log's open connections still
    answer, a new ADBC login is refused. The frame is read the usual way, and neither the log's
    texts nor what it logs show the password."""
    role, password, database = f"r_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}", f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        admin.execute(f"CREATE DATABASE {database} OWNER {role}")
    url = f"postgresql://{role}:{password}@127.0.0.1:{pg_server.port}/{database}"
    caplog.set_level(logging.DEBUG)
    with ExperimentLog(url, folder=tmp_path / "local") as log:
        _insert(log, [_row(i, "e", "t", 1.0, None) for i in range(3)])
        log.db._arrow.close()  # no idle ADBC connection: the next read must log in
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(f"ALTER ROLE {role} PASSWORD 'another-{password}'")
        assert len(log.df) == 3
        shown = [repr(log), repr(log.db), repr(log.db._arrow), str(log.path), caplog.text]
        assert all(password not in text for text in shown)
        assert "ADBC" in caplog.text  # the refused login was said (without the password)


# --- any texts and floats, on both databases ----------------------------------------------------------

_TEXTS = st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")))
_FLOATS = st.one_of(st.none(), st.floats(allow_nan=False))


@pytest.fixture(scope="module")
def property_logs(tmp_path_factory, pg_server):
    """One log per kind for every example of the property below, closed after them (in pytest's
    temporary folder, which it prunes: nothing is left in the system's)."""
    base = tmp_path_factory.mktemp("frame-prop")
    logs = (ExperimentLog(base / "folder"), ExperimentLog(pg_server.new_database(), folder=base / "pg"))
    yield logs
    for log in logs:
        log.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.tuples(_TEXTS, _FLOATS), min_size=1, max_size=4))
def test_any_texts_and_floats_come_back_as_written_on_both_databases(property_logs, values):
    """Each backend's way of reading (ADBC's on PostgreSQL, the driver's rows on SQLite) gives
    the texts and floats written, value for value, and the frame the usual way gives."""
    folder, pg = property_logs
    experiment = uuid.uuid4().hex
    rows = []
    for i, (text, number) in enumerate(values):
        finite = number is not None and math.isfinite(number)
        rows.append(_row(i, experiment, text, number, json.dumps({"x": number, "t": text}) if finite else None))
    for log in (folder, pg):
        _insert(log, rows)
        shown = log.to_dataframe(experiment=experiment)
        pd.testing.assert_frame_equal(shown, _usual(log, experiment=experiment), check_exact=True)
        by_id = shown.set_index("take_id")
        for row in rows:
            got = by_id.loc[row["take_id"]]
            for column in ("region", "voice_id", "error_message"):
                assert (None if pd.isna(got[column]) else got[column]) == row[column], (log.db.kind, column)
            assert got["voice_prompt"] == row["voice_prompt"] and got["notes"] == row["notes"]
            for column in ("latency_s", "audio_duration_s"):
                expected = row[column]
                assert math.isnan(got[column]) if expected is None else got[column] == expected, (log.db.kind, column)
    assert _answers_in_arrow(pg)
