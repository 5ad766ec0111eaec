"""Logs written before the log moved to SQLAlchemy and Alembic open, upgrade in place, and give every
row back; the tables ``schema.py`` declares are exactly what the migrations build.

The fixtures (tests/fixtures/logs, made by ``make.py`` there with the code of commit 77336ce):
folder logs at schema v2, v3 and v4 (``PRAGMA user_version``) and a pg_dump of a PostgreSQL log at
v4 (``log_schema``), each holding takes of every status, annotations, listening ratings, cell
claims and an utterance with its audio.
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from cosyvoice_lab.errors import LogError
from cosyvoice_lab.log import migrations
from cosyvoice_lab.log.experiment_log import ExperimentLog
from cosyvoice_lab.log.schema import audio_metadata, metadata

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "logs"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
TABLES = ("takes", "annotations", "utterances", "cell_claims", "ratings")


def _folder_copy(version: int, tmp_path: Path) -> Path:
    folder = tmp_path / f"v{version}"
    shutil.copytree(FIXTURES / f"v{version}", folder)
    return folder


def _rows(path: Path, table: str) -> list[list]:
    with sqlite3.connect(path) as raw:
        return sorted(map(list, raw.execute(f"SELECT * FROM {table}")))


def _at_head(expected: dict[str, list]) -> dict[str, list]:
    """The rows a log of revision 4 or 5 holds once upgraded to 0006 (one ratings store): "rate"
    events become own ratings (their id kept), seed-only rows go, ratings gain position and
    hidden_repeat (NULL, 0 outside a round) and lose the seed."""
    out = dict(expected)
    if "annotations" in expected:
        out["annotations"] = sorted(r for r in expected["annotations"] if r[3] != "rate")
    if "ratings" in expected:
        listening = [[*r[:3], *r[4:], None, 0] for r in expected["ratings"] if r[3] is None]
        own = [
            [aid, take, None, "own", author or "anonymous", None if value is None else int(value), at, None, 0]
            for aid, take, at, action, value, author in expected.get("annotations", [])
            if action == "rate"
        ]
        out["ratings"] = sorted(listening + own)
    return out


@pytest.mark.parametrize("version", [2, 3, 4])
def test_a_folder_log_of_an_earlier_schema_upgrades_in_place_with_every_row(version, tmp_path):
    folder = _folder_copy(version, tmp_path)
    expected = EXPECTED[f"v{version}"]
    with ExperimentLog(folder) as log:
        assert log.schema_version == migrations.SCHEMA_VERSION and log.db.check() == "ok"
        assert len(log) == len(expected["takes"]) == 4
        for row in expected["takes"]:
            take = log.get(row[0])
            assert take.status == row[1] and take.design.voice_prompt == row[9]
        ok = [t for t in log.takes() if t.status == "ok" and t.audio_path]
        assert ok and ok[0].audio is not None  # the preview is found through the store
        assert len(log.annotations()) == len(expected["annotations"]) and len(log.utterances.to_dataframe()) == 1
        assert sorted(log.df["take_id"]) == sorted(r[0] for r in expected["takes"])
    for table, rows in _at_head(expected).items():  # every row, every value (a column added since: NULL)
        width = len(rows[0])
        got = _rows(folder / "log.sqlite3", table)
        assert [r[:width] for r in got] == rows and all(v is None for r in got for v in r[width:]), table
    with sqlite3.connect(folder / "log.sqlite3") as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == migrations.SCHEMA_VERSION
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [(migrations.HEAD,)]
        claims = raw.execute("SELECT experiment, cell FROM cell_claims ORDER BY cell").fetchall()
    assert claims == [("e1", "p1|plus|r0"), ("e1", "p2|flash|r0")]  # v2: seeded from the takes


def test_a_v4_log_upgrades_to_the_head_with_the_listening_round_tables(tmp_path):
    from cosyvoice_lab.log.rounds import RaterRecord, RoundRecord

    folder = _folder_copy(4, tmp_path)
    with sqlite3.connect(folder / "log.sqlite3") as raw:  # the fixture: numbered migration v4, no rounds
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 4
        assert not raw.execute("SELECT name FROM sqlite_master WHERE name LIKE 'round%'").fetchall()
    with ExperimentLog(folder) as log:
        assert log.schema_version == migrations.SCHEMA_VERSION >= 5
        take_ids = [t.take_id for t in log.takes()][:2]
        log.rounds.create(RoundRecord("r-000000000001", "e1", "preference", tuple(take_ids), 7))
        log.rounds.add_rater(RaterRecord("r-000000000001", "ana", "s-1", False, ((1, 0), (0, 0))))
        log.ratings.add(take_ids[1], 4, rater="ana", session_id="s-1", position=0)
        assert log.rounds.get("r-000000000001").items == tuple(take_ids)
        assert log.rounds.answers(["s-1"])["s-1"][0]["rating"] == 4
    with sqlite3.connect(folder / "log.sqlite3") as raw:
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        indexes = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [(migrations.HEAD,)]
        with pytest.raises(sqlite3.IntegrityError):  # the CHECKs came with the tables
            raw.execute("INSERT INTO round_answers VALUES ('x', 's-1', -1, NULL, 'now')")
    assert {"rounds", "round_raters", "round_answers"} <= tables
    assert {"round_raters_round", "round_answers_session"} <= indexes


OPENER = """
import sys
from cosyvoice_lab.log.experiment_log import ExperimentLog
with ExperimentLog(sys.argv[1]) as log:
    from cosyvoice_lab.log.migrations import SCHEMA_VERSION
    assert log.schema_version == SCHEMA_VERSION and len(log) == 4
"""


def test_processes_opening_an_old_log_at_once_apply_each_step_once(tmp_path):
    folder = _folder_copy(2, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    children = [
        subprocess.Popen([sys.executable, "-c", OPENER, str(folder)], env=env, stderr=subprocess.PIPE) for _ in range(3)
    ]
    errors = [child.communicate(timeout=120)[1].decode() for child in children]
    assert [c.returncode for c in children] == [0, 0, 0], errors
    assert len(_rows(folder / "log.sqlite3", "cell_claims")) == 2  # the v3 step's seed ran once


def test_a_log_at_a_revision_this_package_does_not_ship_is_refused(tmp_path):
    folder = _folder_copy(4, tmp_path)
    ExperimentLog(folder).close()
    with sqlite3.connect(folder / "log.sqlite3") as raw:
        raw.execute("UPDATE alembic_version SET version_num = ?", (f"{migrations.SCHEMA_VERSION + 1:04d}",))
    before = (folder / "log.sqlite3").read_bytes()
    with pytest.raises(
        LogError, match=rf"schema version {migrations.SCHEMA_VERSION + 1}, written by a newer cosyvoice_lab.*[Uu]pgrade"
    ):
        ExperimentLog(folder)
    assert (folder / "log.sqlite3").read_bytes() == before


def _load_dump(url: str, name: str = "pg_v4.sql") -> None:
    from pgserver import find_bindir

    psql = find_bindir() / "psql"
    if not psql.exists():
        pytest.skip("psql is not installed")
    subprocess.run(
        [str(psql), "-q", "-v", "ON_ERROR_STOP=1", "-f", str(FIXTURES / name), url],
        check=True,
        capture_output=True,
    )


def _pg_rows(url: str) -> dict[str, list]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as raw:
        return {t: sorted(map(list, raw.execute(f"SELECT * FROM {t}"))) for t in (*TABLES, "audio")}


def test_a_postgresql_log_of_the_numbered_migrations_is_stamped_and_keeps_every_row(pg_log_url, tmp_path):
    _load_dump(pg_log_url)
    before = _pg_rows(pg_log_url)
    assert len(before["takes"]) == 4 and before["ratings"] and before["cell_claims"] and before["audio"]
    with ExperimentLog(pg_log_url, folder=tmp_path) as log:
        assert log.schema_version == migrations.SCHEMA_VERSION and log.db.check() == "ok"
        assert sorted(log.df["take_id"]) == sorted(r[1] for r in before["takes"])  # rowid comes first
        assert next(t for t in log.takes() if t.audio_path).audio is not None
        take = log.table.start(log.takes()[0].design, backend="offline")  # and it is writable
        log.table.finish(take.take_id, voice_id="v-new")
    after = _pg_rows(pg_log_url)
    width = len(before["takes"][0])  # (a column added since: NULL)
    assert [r[:width] for r in after["takes"] if r[1] != take.take_id] == before["takes"]
    unchanged = (*TABLES[1:], "audio")
    at_head = _at_head({t: [r[1:] for r in before[t]] for t in ("annotations", "ratings")})  # (rowid first)
    assert {t: after[t] for t in unchanged if t not in at_head} == {t: before[t] for t in unchanged if t not in at_head}
    assert {t: sorted(r[1:] for r in after[t]) for t in at_head} == at_head
    import psycopg

    with psycopg.connect(pg_log_url, autocommit=True) as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [(migrations.HEAD,)]
        assert raw.execute("SELECT version FROM log_schema").fetchall() == [(migrations.SCHEMA_VERSION,)]


def _differences(url: str, *, skip_tables: tuple[str, ...] = ()) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = compare_metadata(context, metadata)
    finally:
        engine.dispose()

    def wanted(diff) -> bool:
        item = diff[0] if isinstance(diff, list) else diff
        if item[0] == "remove_table" and item[1].name in (*skip_tables, "alembic_version"):
            return False
        if item[0] == "remove_column" and item[3].name == "rowid":  # PostgreSQL's write order column
            return False
        return not (item[0] == "remove_constraint" and "rowid" in item[1].columns)

    return [d for d in diffs if wanted(d)]


def test_the_declared_tables_are_what_the_migrations_build_on_sqlite(tmp_path):
    ExperimentLog(tmp_path / "log").close()
    assert _differences(f"sqlite:///{tmp_path / 'log' / 'log.sqlite3'}") == []


def test_the_declared_tables_are_what_the_migrations_build_on_postgresql(pg_log_url, tmp_path):
    ExperimentLog(pg_log_url, folder=tmp_path).close()
    url = pg_log_url.replace("postgresql://", "postgresql+psycopg://")
    assert _differences(url, skip_tables=("log_schema", *audio_metadata.tables)) == []


def test_alembic_agrees_on_the_head_revision():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(migrations.HERE))
    assert ScriptDirectory.from_config(config).get_current_head() == migrations.HEAD


# --- one definition: everything that lists the log's columns agrees with schema.py ---------------------


def test_the_take_the_bundle_schema_and_the_frame_follow_the_declared_columns():
    import dataclasses

    from cosyvoice_lab.log import bundle_schema, frame, rows, schema
    from cosyvoice_lab.take import Take

    columns = {c.name for c in schema.takes.columns}
    design_columns = set(rows._DESIGN_COLUMNS)
    take_fields = {f.name for f in dataclasses.fields(Take)} - {"design", "audio_loader"}
    # a Take holds columns of the log (audio_file as audio_path; the design's as its fields); a
    # column may be the log's alone (its frames show it), a Take field never is
    assert take_fields | design_columns | {"audio_file"} <= set(schema.TAKE_COLUMNS) | {"audio_path"}
    assert set(schema.TAKE_COLUMNS) == columns - set(schema.WRITER_COLUMNS)
    assert set(bundle_schema.TAKE_FIELDS) - {"design"} == take_fields
    assert {rows._DESIGN_COLUMNS[c] for c in design_columns} == set(bundle_schema.DESIGN_FIELDS)
    for table, fields in (
        (schema.annotations, bundle_schema.ANNOTATION_FIELDS),
        (schema.utterances, bundle_schema.UTTERANCE_FIELDS),
        (schema.ratings, bundle_schema.RATING_FIELDS),
    ):
        assert list(fields) == [c.name for c in table.columns], table.name
    shown = set(schema.TAKE_COLUMNS) - {"audio_file", "metrics"}
    assert set(frame.TAKE_ORDER) == shown | {"audio_path"} and len(frame.TAKE_ORDER) == len(set(frame.TAKE_ORDER))
    assert bundle_schema.ACTIONS == schema.ANNOTATION_ACTIONS


# --- revision 0006: ratings become one store (issue #25) ---------------------------------------------
EXPECTED_V5 = json.loads((FIXTURES / "expected_v5.json").read_text())


def _reads_as_v5_did(log: ExperimentLog, expected: dict) -> None:
    """An upgraded v5 log reports what the v5 code read from it: the same current ratings, own
    ratings and their history, rounds, raters, answers and round records."""
    import pandas as pd

    from cosyvoice_lab.log.schema import round_answers
    from cosyvoice_lab.panel import quality
    from cosyvoice_lab.panel.rounds import Round

    frame = log.ratings.to_dataframe()  # the same rows, modulo the new columns
    got = [[r.take_id, int(r.rating), r.rater, r.kind, None if pd.isna(r.session_id) else r.session_id]
           for r in frame.itertuples()]  # fmt: skip
    assert sorted(got) == sorted(expected["ratings"]) and not frame["hidden_repeat"].any()
    assert {t.take_id: t.rating for t in log.takes()} == expected["own"]
    history = log.annotations().query("action == 'rate'")  # the own ratings' history, from their rows
    values = [v if isinstance(v, str) else None for v in history["value"]]
    assert [list(r) for r in zip(history["take_id"], values, history["author"], strict=True)] == expected["rate_events"]
    assert log.ratings.rebuild_own_cache() == len(expected["own"])
    assert {t.take_id: t.rating for t in log.takes()} == expected["own"]
    star_sessions = {}
    for round_id, want in expected["rounds"].items():
        record = log.rounds.get(round_id)
        items = [list(i) if isinstance(i, tuple) else i for i in record.items]
        assert (record.kind, items, record.seed, record.state) == (want["kind"], want["items"], want["seed"],
                                                                   want["state"])  # fmt: skip
        raters = log.rounds.raters(round_id)
        assert [[r.rater, r.session_id, [list(p) for p in r.presented]] for r in raters] == want["raters"]
        answers = log.rounds.answers([r.session_id for r in raters])
        for session_id, by_position in want["answers"].items():
            mine = {str(p): [a["rating"], a["preferred"]] for p, a in answers[session_id].items()}
            if by_position:  # the panel's answers, where they were
                assert mine == by_position, session_id
            else:  # a notebook's round: its ratings are its answers now, at their positions
                rated = [r for r in expected["ratings"] if r[4] == session_id]
                assert sorted(v[0] for v in mine.values()) == sorted(r[1] for r in rated)
            if record.kind != "pair":
                star_sessions[session_id] = (record, want)
    assert log.db.query(round_answers.select().where(round_answers.c.preferred.is_not(None))) != []
    pair_sessions = {r.session_id for rid, w in expected["rounds"].items() if w["kind"] == "pair"
                     for r in log.rounds.raters(rid)}  # fmt: skip
    assert {row.session_id for row in log.db.query(round_answers.select())} <= pair_sessions  # choices only
    for session_id, record in expected["round_record"].items():
        if record is not None:  # a notebook's blind round, rebuilt from its round now
            assert log.rounds.round_record(session_id) == record
    for round_id in {r.round_id for r, w in star_sessions.values() if any(w["answers"].values())}:
        round_ = Round(log.rounds, log.rounds.get(round_id), {}, max_raters=8)
        progress = quality.progress(round_, log.rounds.answers([s.session_id for s in round_.sessions()]))
        assert progress["rated"].tolist() == progress["total"].tolist() and set(progress["repeats"]) == {2}
        shown = log.ratings.to_dataframe(repeats=True)
        mine = shown[shown["session_id"].isin(progress["session_id"])]
        assert len(mine) == 8 and mine["hidden_repeat"].sum() == 4  # each answer once: 2 raters x 4 showings
    events = log.ratings.events()
    assert all(e["rating"] is not None or e["kind"] == "own" or e["session_id"] for e in events)
    assert len({e["rating_id"] for e in events}) == len(events)


def test_a_v5_folder_log_upgrades_to_one_ratings_store(tmp_path):
    folder = _folder_copy(5, tmp_path)
    with sqlite3.connect(folder / "log.sqlite3") as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [("0005",)]
        seeds = raw.execute("SELECT count(*) FROM ratings WHERE seed IS NOT NULL").fetchone()[0]
    assert seeds == 2  # the notebook round's seed-only rows
    with ExperimentLog(folder) as log:
        assert log.schema_version == migrations.SCHEMA_VERSION >= 6 and log.db.check() == "ok"
        _reads_as_v5_did(log, EXPECTED_V5["sqlite"])
    ExperimentLog(folder).close()  # opening again changes nothing
    with ExperimentLog(folder) as log:
        _reads_as_v5_did(log, EXPECTED_V5["sqlite"])


def test_a_v5_postgresql_log_upgrades_to_one_ratings_store(pg_log_url, tmp_path):
    _load_dump(pg_log_url, "pg_v5.sql")
    with ExperimentLog(pg_log_url, folder=tmp_path) as log:
        assert log.schema_version == migrations.SCHEMA_VERSION >= 6 and log.db.check() == "ok"
        _reads_as_v5_did(log, EXPECTED_V5["postgresql"])
        take = log.takes()[0]
        log.rate(take.take_id, 1, rater="zed")  # and it is writable
        assert log.get(take.take_id).rating == 1


def test_the_upgrade_to_0006_keeps_a_blind_round_recorded_before_the_round_tables(tmp_path):
    """A notebook round of revision 4 lives only in seed-only rows: the upgrade gives it a round, so
    it is still rebuilt with the same labels."""
    from cosyvoice_lab.views.listening import BlindSession

    folder = _folder_copy(4, tmp_path)
    with sqlite3.connect(folder / "log.sqlite3") as raw:
        ids = sorted(r[0] for r in raw.execute("SELECT take_id FROM takes"))[:3]
        for n, take_id in enumerate(ids):
            raw.execute(
                "INSERT INTO ratings VALUES (?, ?, 'old-1', 42, 'adherence', 'ana', NULL, ?)",
                (f"{n:032x}", take_id, f"2026-01-01T00:00:0{n}.000000Z"),
            )
        raw.execute(
            "INSERT INTO ratings VALUES (?, ?, 'old-1', NULL, 'adherence', 'ana', 4, '2026-01-01T00:01:00.000000Z')",
            ("a" * 32, ids[1]),
        )
    expected = BlindSession.start(ids, seed=42, session_id="old-1", kind="adherence", rater="ana")
    with ExperimentLog(folder) as log:
        again = BlindSession.from_log(log, "old-1")
        assert (again.order, again.seed, again.kind, again.rater) == (expected.order, 42, "adherence", "ana")
        assert again.ratings == {ids[1]: 4}
        assert log.ratings.to_dataframe(session_id="old-1")["position"].tolist() == [expected.order.index(ids[1])]
