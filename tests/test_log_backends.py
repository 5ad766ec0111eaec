"""The experiment log on both backends: a folder (SQLite) and a real PostgreSQL server.

The ``log_backend`` fixture gives a fresh folder or a fresh database URL (``pg_log_url``,
tests/pgserver.py); the ``log`` fixture opens it. The backend-neutral tests of test_log.py are
imported here, so they run again on both (pytest collects them in this module, with its
``log`` and ``log_backend`` fixtures: the recovery of stale pending takes too); the tests below
are about what differs: opening a URL, migrations and bookkeeping on PostgreSQL, audio in the
database, concurrency, redaction.
"""

import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_log import (  # noqa: F401  (re-collected here, on both backends)
    DESIGN,
    EN,
    VOICE,
    ok_take,
    test_a_dead_writers_pending_take_becomes_interrupted,
    test_a_live_writers_pending_take_is_left_alone,
    test_an_outcome_is_recorded_once,
    test_annotations_update_the_take_and_keep_a_dated_history,
    test_bad_arguments_are_refused_before_writing,
    test_connections_of_ended_threads_are_closed,
    test_dataframe_has_proper_dtypes_and_one_row_per_take,
    test_default_timeouts_come_from_the_catalog,
    test_empty_log_gives_an_empty_frame_with_the_columns,
    test_fail_unknown_then_reconcile,
    test_filters,
    test_get_accepts_a_unique_prefix,
    test_latency_defaults_to_the_time_since_start,
    test_mark_deleted_records_the_voice_status,
    test_mark_played_is_all_or_nothing,
    test_missing_takes_raise_take_not_found_which_is_a_key_error,
    test_missing_texts_are_missing_values_not_the_text_none,
    test_pending_rows_from_another_host_wait_for_stale_after,
    test_ratings_are_1_to_5,
    test_rows_come_in_start_order_with_ties_in_write_order,
    test_set_metrics_merges,
    test_takes_load_their_audio_through_the_store_and_pickle,
    test_target_model_is_the_one_word_for_a_takes_model,
    test_the_log_is_a_facade_with_no_mixin_bases,
    test_threads_share_one_log,
    test_utterances_are_recorded_with_their_audio,
    test_voice_ids,
    tone,
)

from cosyvoice_lab import folders
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import LogError
from cosyvoice_lab.log import migrations
from cosyvoice_lab.log.database import Database
from cosyvoice_lab.log.experiment_log import ExperimentLog
from cosyvoice_lab.log.urls import is_url, redact_url

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgres"])
def log_backend(request, tmp_path) -> str:
    """Where a fresh log lives: a folder, or the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "log")
    return request.getfixturevalue("pg_log_url")


@pytest.fixture
def log(log_backend, tmp_path):
    with ExperimentLog(log_backend, folder=tmp_path / "local") as opened:
        yield opened


def _raw(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


# --- opening -------------------------------------------------------------------------------------


def test_a_url_opens_a_database_log_at_the_latest_version(pg_log_url, tmp_path):
    with ExperimentLog(pg_log_url, folder=tmp_path / "here") as log:
        assert log.schema_version == migrations.SCHEMA_VERSION and log.db.check() == "ok"
        assert log.audio_dir is None and log.folder == tmp_path / "here"
        assert not (tmp_path / "here" / "audio").exists()  # the audio is in the database
    with _raw(pg_log_url) as raw:
        tables = {
            r[0] for r in raw.execute("SELECT table_name FROM information_schema.tables WHERE table_schema='public'")
        }
        assert {"takes", "annotations", "utterances", "cell_claims", "log_schema", "audio"} <= tables
        assert raw.execute("SELECT version FROM log_schema").fetchall() == [(migrations.SCHEMA_VERSION,)]
    with ExperimentLog(pg_log_url.replace("postgresql://", "postgres://")) as again:  # reopening applies nothing
        assert again.schema_version == migrations.SCHEMA_VERSION and len(again) == 0


def test_each_migration_step_from_every_earlier_version_on_postgres(pg_server):
    for start in range(1, migrations.SCHEMA_VERSION + 1):
        url = pg_server.new_database()
        assert migrations.upgrade(Database(url), target=f"{start:04d}") == start
        with _raw(url) as raw:
            assert raw.execute("SELECT version FROM log_schema").fetchall() == [(start,)]
            assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [(f"{start:04d}",)]
        db = Database(url)
        assert migrations.upgrade(db) == migrations.SCHEMA_VERSION and db.check() == "ok"
        db.close()


def test_a_newer_database_log_says_to_upgrade(pg_log_url):
    ExperimentLog(pg_log_url).close()
    with _raw(pg_log_url) as raw:
        raw.execute("UPDATE log_schema SET version = 99")
    with pytest.raises(LogError, match="newer cosyvoice_lab") as info:
        ExperimentLog(pg_log_url)
    assert info.value.path == redact_url(pg_log_url) and "***" in str(info.value)


def test_another_programs_database_is_refused_and_left_untouched(pg_log_url):
    with _raw(pg_log_url) as raw:
        raw.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(LogError, match="PostgreSQL database but not a cosyvoice_lab experiment log"):
        ExperimentLog(pg_log_url)
    with _raw(pg_log_url) as raw:
        tables = [
            r[0] for r in raw.execute("SELECT table_name FROM information_schema.tables WHERE table_schema='public'")
        ]
        assert tables == ["invoices"]


def test_the_password_is_never_shown(pg_server, pg_log_url):
    password = pg_server.password
    with ExperimentLog(pg_log_url) as log:
        take = ok_take(log, audio=tone())
        shown = [repr(log), str(log.path), log.location, repr(log.db), repr(log.audio_store), repr(take)]
        assert all(password not in text for text in shown) and "cosyvoice:***@127.0.0.1" in repr(log)
    wrong = pg_log_url.replace(password, "not-the-password")
    missing = pg_log_url.rsplit("/", 1)[0] + "/nonexistent"
    for url, why in ((wrong, "password authentication failed"), (missing, "does not exist")):
        with pytest.raises(LogError, match=why) as info:
            ExperimentLog(url)
        assert "cannot reach the log's database" in str(info.value)
        assert password not in str(info.value) and "not-the-password" not in str(info.value)


@given(st.text(alphabet="abcXYZ019-_.~!$&'()*+,;=", min_size=1, max_size=30))
def test_redact_url_hides_any_password(password):
    url = f"postgresql://me:{password}@db.example:5432/lab?sslmode=require"
    shown = redact_url(url)
    assert shown.startswith("postgresql://me:***@") and "db.example:5432/lab?sslmode=require" in shown
    assert redact_url(f"postgres://db/lab?user=me&password={quote(password, safe='')}").endswith("password=***")


def test_only_database_urls_are_urls():
    assert is_url("postgresql://u@h/db") and is_url("POSTGRES://h/db")
    assert not is_url("lab-data") and not is_url(Path("postgresql:")) and not is_url("sqlite:///x")


def test_what_the_databases_spell_differently_is_compiled_per_dialect_not_rewritten():
    from sqlalchemy import select
    from sqlalchemy.dialects import postgresql, sqlite

    from cosyvoice_lab.log.functions import json_has, pack, seconds_between
    from cosyvoice_lab.log.schema import takes

    query = select(pack(takes.c.status, takes.c.region), seconds_between(takes.c.finished_at, takes.c.started_at))
    query = query.where(json_has(takes.c.tags, "warm"))
    on_sqlite, on_pg = (str(query.compile(dialect=d.dialect())) for d in (sqlite, postgresql))
    assert "json_array(takes.status, takes.region)" in on_sqlite and "julianday" in on_sqlite
    assert "json_each(takes.tags)" in on_sqlite and "?" in on_sqlite
    assert "ARRAY[CAST(takes.status AS TEXT), CAST(takes.region AS TEXT)]" in on_pg and "EXTRACT(EPOCH" in on_pg
    assert "jsonb_build_array" in on_pg and "%(" in on_pg
    log_sources = (REPO / "cosyvoice_lab" / "log").rglob("*.py")
    assert not [p for p in log_sources if "translate(" in p.read_text() or p.name in ("dialect.py", "postgres.py")]


def test_a_folder_log_never_loads_the_database_driver(tmp_path):
    code = (
        "import sys\nfrom cosyvoice_lab import ExperimentLog\n"
        f"log = ExperimentLog({str(tmp_path / 'log')!r})\nlog.df\n"
        "assert 'psycopg' not in sys.modules, 'psycopg was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr


def test_the_environment_names_the_default_log(monkeypatch, tmp_path, pg_log_url):
    monkeypatch.setenv(folders.LOG_ENV, pg_log_url)
    assert folders.log_location() == pg_log_url
    assert folders.log_location(folder=tmp_path) == tmp_path  # a folder given wins over the default
    assert folders.log_location(folder=tmp_path, log="postgres://h/x") == "postgres://h/x"
    monkeypatch.delenv(folders.LOG_ENV)
    assert folders.log_location() == folders.default_lab_folder()


# --- the write path, on both -------------------------------------------------------------------------


def test_a_pending_row_is_committed_before_start_returns(log_backend):
    with ExperimentLog(log_backend) as mine, ExperimentLog(log_backend) as theirs:
        take = mine.table.start(DESIGN, backend="offline", experiment="e")
        assert theirs.get(take.take_id).status == "pending"  # another connection sees it
        mine.table.finish(take.take_id, voice_id=VOICE)
        assert theirs.get(take.take_id).status == "ok" and len(theirs.df) == 1


AWKWARD = ["", "NULL", "null", "a,b", 'say "hi"', "back\\slash", "{x}", " spaced ", "tab\there", "多行\n文本", "[1]"]


def test_the_frame_shows_texts_of_every_shape_as_the_takes_hold_them(log):
    """Columns with few distinct values travel packed in one cell per row (a JSON array on
    SQLite, an array literal on PostgreSQL): texts that look like NULL, quotes, commas, braces,
    backslashes, blanks and line breaks come back as written, numbers as numbers, None as missing."""
    made = []
    for i, word in enumerate([*AWKWARD, None]):
        design = VoiceDesign(DESIGN.voice_prompt, DESIGN.preview_text, prefix=word or "lab", sample_rate=16000 + i)
        take = log.table.start(design, backend="offline", region=word, host=word, experiment="shapes")
        made.append(log.table.finish(take.take_id, voice_id=VOICE, voice_status=word))
    df = log.df
    assert df["take_id"].tolist() == [t.take_id for t in made]
    for column in ("region", "host", "voice_status"):
        shown = [None if pd.isna(v) else v for v in df[column]]
        assert shown == [getattr(t, column) for t in made] == [*AWKWARD, None], column
    assert df["prefix"].tolist() == [t.design.prefix for t in made]
    assert str(df["sample_rate"].dtype) == "Int64"
    assert df["sample_rate"].tolist() == [t.design.sample_rate for t in made]
    assert str(df["audio_sample_rate"].dtype) == "Int64" and df["audio_sample_rate"].isna().all()
    assert df["status"].tolist() == ["ok"] * len(made)
    assert list(df["target_model"].cat.categories) == [DESIGN.target_model]


_TEXTS = st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")))


@given(values=st.lists(_TEXTS, min_size=1, max_size=6))
def test_any_texts_packed_by_either_database_unpack_as_they_were(pg_url, values):
    """``pack``/``unpack`` (functions.py) on any texts (PostgreSQL's text holds no NUL): what the
    database packs into one cell reads back value for value, None as None, on both databases."""
    import sqlite3

    from sqlalchemy import Text, literal, select
    from sqlalchemy.dialects import postgresql, sqlite

    from cosyvoice_lab.log.functions import pack, unpack

    query = select(pack(*[literal(v, Text) for v in values]))
    for dialect, run in (
        (postgresql.dialect(paramstyle="pyformat"), lambda sql, p: _pg_once(pg_url, sql, p)),
        (sqlite.dialect(), lambda sql, p: sqlite3.connect(":memory:").execute(sql, p).fetchone()[0]),
    ):
        compiled = query.compile(dialect=dialect)
        params = [compiled.params[k] for k in compiled.positiontup] if compiled.positional else compiled.params
        assert unpack(run(str(compiled), params)) == values, dialect.name


_PG: dict[str, psycopg.Connection] = {}


def _pg_once(url: str, sql: str, params) -> str:
    """One connection for every example of the property above."""
    if url not in _PG:
        _PG[url] = psycopg.connect(url, autocommit=True)
    return _PG[url].execute(sql, params).fetchone()[0]


def test_audio_round_trips_through_the_store_to_another_log_object(log_backend):
    audio = tone(3)
    with ExperimentLog(log_backend) as mine:
        take = ok_take(mine, audio=audio)
        name = mine.audio_store.name_of(audio)
        assert mine.audio_store.exists(name) and name in mine.audio_store.names()
        assert mine.audio_store.put_bytes(name, audio.data) is False  # content-addressed: stored once
    with ExperimentLog(log_backend) as theirs:
        again = theirs.get(take.take_id)
        assert again.audio == audio and pickle.loads(pickle.dumps(again)).audio == audio
        assert theirs.df["audio_path"].tolist() == [again.audio_path]


def test_bundles_move_takes_between_a_folder_and_a_database(log_backend, tmp_path, pg_log_url):
    other = pg_log_url if not is_url(log_backend) else str(tmp_path / "folder-log")
    with ExperimentLog(log_backend) as source:
        take = ok_take(source, audio=tone(4), experiment="x")
        source.rate(take.take_id, 5, rater="ann")
        source.tag(take.take_id, "keeper")
        bundle = source.bundles.export(tmp_path / "b.zip")
    with ExperimentLog(other) as dest:
        counts = dest.bundles.merge(bundle)
        assert counts["takes"] == 1 and counts["audio_files"] == 1
        got = dest.get(take.take_id)
        assert got.rating == 5 and got.tags == ("keeper",) and got.audio == tone(4)
        assert dest.bundles.merge(bundle)["takes"] == 0  # merging twice adds nothing


def test_each_cell_is_claimed_once_by_racing_writers(log_backend):
    logs = [ExperimentLog(log_backend) for _ in range(4)]
    won: list[str] = []
    barrier = threading.Barrier(len(logs))

    def race(log: ExperimentLog) -> None:
        barrier.wait()
        for n in range(10):
            take = log.table.claim(EN, experiment="race", cell=f"cell-{n}", backend="offline")
            if take is not None:
                won.append(take.take_id)
                log.table.finish(take.take_id, voice_id=f"{VOICE}-{n}")

    threads = [threading.Thread(target=race, args=(log,)) for log in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    frame = logs[0].df
    assert len(won) == 10 and sorted(frame["cell"]) == sorted(f"cell-{n}" for n in range(10))
    assert frame["status"].eq("ok").all()
    for log in logs:
        log.close()


def test_settling_tolerates_another_writer(log_backend):
    with ExperimentLog(log_backend) as mine, ExperimentLog(log_backend) as theirs:
        take = mine.table.start(DESIGN, backend="offline")
        theirs.table.fail(take.take_id, error_code="Gone", error_message="settled elsewhere")
        assert mine.table.finish(take.take_id, voice_id=VOICE).status == "failed"  # settled first: kept
        unknown = mine.table.start(DESIGN, backend="offline")
        mine.table.fail(unknown.take_id, error_code="Timeout", error_message="?", status="unknown")
        other = mine.table.start(DESIGN, backend="offline")
        mine.table.fail(other.take_id, error_code="Timeout", error_message="?", status="unknown")
        assert theirs.table.reconcile(unknown.take_id, voice_id=VOICE).ok
        with pytest.raises(LogError, match="already the outcome of another take"):
            mine.table.reconcile(other.take_id, voice_id=VOICE)


def test_a_writer_held_too_long_is_a_clear_error(log_backend):
    with ExperimentLog(log_backend) as holder, ExperimentLog(log_backend, busy_timeout_s=0.3) as waiter:
        with holder.db.transaction():
            with pytest.raises(LogError, match=r"another writer held the log too long \(waited 0\.[3-9]") as info:
                waiter.table.claim(EN, experiment="e", cell="c", backend="offline")
            assert "***" in str(info.value) or not is_url(log_backend)
        assert waiter.table.claim(EN, experiment="e", cell="c", backend="offline") is not None


OPENER = """
import sys
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.log.experiment_log import ExperimentLog
with ExperimentLog(sys.argv[1]) as log:
    take = log.table.start(VoiceDesign("a calm voice", "Hello there."), backend="offline")
    log.table.finish(take.take_id, voice_id="v-" + take.take_id)
"""


def test_several_processes_create_one_new_log_at_once(log_backend):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    children = [
        subprocess.Popen([sys.executable, "-c", OPENER, log_backend], env=env, stderr=subprocess.PIPE) for _ in range(3)
    ]
    errors = [child.communicate(timeout=120)[1].decode() for child in children]
    assert [child.returncode for child in children] == [0, 0, 0], errors
    with ExperimentLog(log_backend) as log:
        assert len(log) == 3 and log.schema_version == migrations.SCHEMA_VERSION


# --- the API key, through the simulator into a database log ---------------------------------------

KEY = "sk-PGLEAKCHECK0123456789abcdef"


def test_the_api_key_is_never_stored_in_a_database_log(pg_log_url, tmp_path, monkeypatch):
    from cosyvoice_lab.lab.lab import Lab
    from cosyvoice_lab.offline import serve

    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    with serve(api_key=KEY, enrollment_rps=None, model_profiles={"*": {"design_latency": 0}}) as sim:
        lab = Lab(tmp_path / "lab", log=pg_log_url, base_url=sim.base_url, progress=False, measure=False)
        assert lab.log.audio_dir is None and KEY not in repr(lab) and "***" in repr(lab)
        take = lab.design("a calm voice", preview_text="Hello there.")
        lab.compare(["a deep voice"], target_models=["cosyvoice-v3.5-flash"], repeats=1, check_quota=False)
        lab.log.rate(take.take_id, 4)
        sim.faults.error_rate, sim.faults.seed = 1.0, 1
        lab.design("a failing voice", preview_text="Hello.")
        lab.log.close()
    with _raw(pg_log_url) as raw:
        tables = [
            r[0] for r in raw.execute("SELECT table_name FROM information_schema.tables WHERE table_schema='public'")
        ]
        assert raw.execute("SELECT count(*) FROM takes").fetchone()[0] >= 3
        for table in tables:  # every column of every row, as text (audio bytes as bytes)
            for (row,) in raw.execute(f'SELECT CAST(t AS text) FROM "{table}" AS t'):
                assert KEY not in row and KEY.encode().hex() not in row, table
        assert (
            raw.execute("SELECT count(*) FROM audio WHERE position(%s::bytea in data) > 0", (KEY.encode(),)).fetchone()[
                0
            ]
            == 0
        )


def test_lab_and_cli_open_a_database_log(pg_log_url, tmp_path, monkeypatch):
    from cosyvoice_lab.cli import main
    from cosyvoice_lab.offline import serve

    with serve(enrollment_rps=None, model_profiles={"*": {"design_latency": 0}}) as sim:
        monkeypatch.setenv(folders.LOG_ENV, pg_log_url)
        args = [
            "design",
            "a bright voice",
            "--preview-text",
            "Hello there.",
            "--backend",
            "offline",
            "--base-url",
            sim.base_url,
        ]
        assert main([*args, "--folder", str(tmp_path / "local"), "--log", pg_log_url]) == 0
    with ExperimentLog(os.environ[folders.LOG_ENV]) as log:
        assert len(log) == 1 and log.takes()[0].ok


def _record_in_child(log, results) -> None:
    try:
        results.put(ok_take(log, EN).take_id)  # the parent's held connection is neither used nor closed
    except Exception as exc:
        results.put(repr(exc))


def test_a_forked_child_writes_on_its_own_connections_and_the_parents_keep_working(log):
    """Each writer thread holds one pooled connection for a take's two statements: a child forked
    while the parent holds it takes its own; the parent's still works after the child exits."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    ok_take(log, EN)  # this thread now holds a connection
    held = len(log) and log.db.open_connections  # and the pool one for reads
    for _ in range(3):
        results = ctx.Queue()
        child = ctx.Process(target=_record_in_child, args=(log, results))
        child.start()
        got = results.get(timeout=120)
        child.join(timeout=120)
        assert child.exitcode == 0 and len(got) == 32, got
        ok_take(log, EN)
    assert len(log) == 7 and log.db.open_connections == held
