"""Listening ratings on real SQLite logs: several raters per take, rounds, clearing, who an
annotation is by, rater-name validation, and ratings travelling in bundles (merged by id,
hostile values refused)."""

import json
import sqlite3
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zipedit import rewrite

from cosyvoice_lab import catalog
from cosyvoice_lab.audio import Audio
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import LogError, TakeNotFound
from cosyvoice_lab.log import migrations
from cosyvoice_lab.log.experiment_log import ExperimentLog
from cosyvoice_lab.log.ratings import clean_rater, who

DESIGN = VoiceDesign("A calm, low male voice", "Hello there, welcome to the show.")
VOICE = "cosyvoice-v3.5-plus-vd-lab-" + "0" * 32


@pytest.fixture
def log(tmp_path):
    with ExperimentLog(tmp_path / "log") as opened:
        yield opened


def ok_take(log, experiment="exp"):
    take = log.table.start(DESIGN, backend="offline", experiment=experiment)
    audio = Audio.from_numpy(0.2 * np.sin(np.arange(2400) / 7), 24000)
    return log.table.finish(take.take_id, voice_id=VOICE, audio=audio)


def test_the_ratings_table_is_the_one_store_of_revision_6(log):
    assert migrations.SCHEMA_VERSION >= 6 and log.schema_version == migrations.SCHEMA_VERSION
    columns = [r[1] for r in sqlite3.connect(log.path).execute("PRAGMA table_info(ratings)")]
    assert columns == [
        "rating_id", "take_id", "session_id", "kind", "rater", "rating", "at", "position", "hidden_repeat"
    ]  # fmt: skip


def test_several_raters_rate_one_take_and_the_latest_of_each_counts(log):
    a, b = ok_take(log), ok_take(log)
    log.ratings.add(a.take_id, 2, rater="ana", session_id="s1")
    log.ratings.add(a.take_id, 4, rater="ana", session_id="s1")  # ana changes her mind
    log.ratings.add(a.take_id, 5, rater="bo", session_id="s1")
    log.ratings.add(b.take_id, 3, rater="ana", kind="adherence", session_id="s2")
    df = log.ratings.to_dataframe()
    assert list(df.columns) == ["take_id", "rating", "rater", "kind", "session_id", "at", "position", "hidden_repeat"]
    got = {(r.take_id, r.rater, r.session_id): (r.rating, r.kind) for r in df.itertuples()}
    assert got == {
        (a.take_id, "ana", "s1"): (4, "preference"),
        (a.take_id, "bo", "s1"): (5, "preference"),
        (b.take_id, "ana", "s2"): (3, "adherence"),
    }
    assert str(df["at"].dtype) == "datetime64[ns, UTC]" and df["at"].is_monotonic_increasing
    assert len(log.ratings.to_dataframe(kind="adherence")) == 1 and len(log.ratings.to_dataframe(session_id="s1")) == 2
    assert log.get(a.take_id).rating is None, "a listening rating is not the take's own mark"


def test_a_cleared_rating_disappears_but_other_raters_and_sessions_stay(log):
    t = ok_take(log)
    log.ratings.add(t.take_id, 4, rater="ana", session_id="s1")
    log.ratings.add(t.take_id, 2, rater="ana", session_id="s2")
    log.ratings.add(t.take_id, 3, rater="bo", session_id="s1")
    log.ratings.add(t.take_id, None, rater="ana", session_id="s1")
    got = {(r.rater, r.session_id): r.rating for r in log.ratings.to_dataframe().itertuples()}
    assert got == {("ana", "s2"): 2, ("bo", "s1"): 3}
    log.ratings.add(t.take_id, 5, rater="ana", session_id="s1")  # rated again after clearing
    assert len(log.ratings.to_dataframe(session_id="s1")) == 2


def test_ratings_filter_by_experiment(log):
    mine, other = ok_take(log, "mine"), ok_take(log, "other")
    log.ratings.add(mine.take_id, 4, rater="ana")
    log.ratings.add(other.take_id, 1, rater="ana")
    assert list(log.ratings.to_dataframe("mine")["take_id"]) == [mine.take_id]
    assert log.ratings.to_dataframe("nothing").empty and list(log.ratings.to_dataframe("nothing").columns) == list(
        log.ratings.to_dataframe().columns
    )


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"rating": 0}, ValueError),
        ({"rating": 6}, ValueError),
        ({"rating": 3.0}, ValueError),
        ({"rating": True}, ValueError),
        ({"rating": 3, "kind": "taste"}, ValueError),
        ({"rating": 3, "rater": ""}, ValueError),
        ({"rating": 3, "rater": "x" * 65}, ValueError),
        ({"rating": 3, "rater": "ana\nbo"}, ValueError),
        ({"rating": 3, "session_id": "a\x00b"}, ValueError),
    ],
)
def test_bad_ratings_are_refused_and_nothing_is_written(log, kwargs, error):
    t = ok_take(log)
    rating = kwargs.pop("rating")
    with pytest.raises(error):
        log.ratings.add(t.take_id, rating, **kwargs)
    assert log.ratings.to_dataframe().empty


def test_rating_a_take_that_is_not_there(log):
    with pytest.raises(TakeNotFound):
        log.ratings.add("f" * 32, 3, rater="ana")


@given(st.text(max_size=80))
@settings(max_examples=300, deadline=None)
def test_rater_names_are_1_to_64_printable_characters(name):
    stripped = name.strip()
    ok = bool(stripped) and len(stripped) <= catalog.RATER_MAX_CHARS and stripped.isprintable()
    if ok:
        assert clean_rater(name) == stripped
    else:
        with pytest.raises(ValueError, match="rater"):
            clean_rater(name)


@pytest.mark.parametrize("bad", [None, 3, b"ana", ["ana"]])
def test_a_rater_name_must_be_text(bad):
    with pytest.raises(ValueError, match="must be a string"):
        clean_rater(bad)


def test_who_is_the_argument_then_the_environment_then_the_login(monkeypatch):
    monkeypatch.setenv(catalog.USER_ENV, " ana ")
    assert who("bo") == "bo" and who() == "ana"
    monkeypatch.setenv(catalog.USER_ENV, "x" * 100)
    with pytest.raises(ValueError, match=catalog.USER_ENV):
        who()
    monkeypatch.delenv(catalog.USER_ENV)
    assert who() is None or 0 < len(who()) <= catalog.RATER_MAX_CHARS


def test_annotations_record_who_made_them(log, monkeypatch):
    t = ok_take(log)
    monkeypatch.setenv(catalog.USER_ENV, "ana")
    log.rate(t.take_id, 4, rater="bo")
    log.tag(t.take_id, "warm", rater="cy")
    log.note(t.take_id, "nice")
    log.choose(t.take_id, rater="di")
    log.ratings.add(t.take_id, 3)
    history = log.annotations(t.take_id)
    assert list(history["author"]) == ["bo", "cy", "ana", "di"]
    assert list(log.ratings.to_dataframe()["rater"]) == ["ana"]
    with pytest.raises(ValueError, match="rater"):
        log.rate(t.take_id, 4, rater="\t")
    assert log.get(t.take_id).rating == 4


# --- bundles ------------------------------------------------------------------------------------


def test_ratings_travel_in_bundles_and_merge_once(tmp_path, log):
    t = ok_take(log)
    log.ratings.add(t.take_id, 4, rater="ana", session_id="s1")
    log.ratings.add(t.take_id, 2, rater="bo", kind="adherence", session_id="s2")
    bundle = log.bundles.export(tmp_path / "b.zip")
    with ExperimentLog(tmp_path / "theirs") as theirs:
        counts = theirs.bundles.merge(bundle)
        assert counts["ratings"] == 2
        assert theirs.bundles.merge(bundle)["ratings"] == 0
        cols = ["take_id", "rating", "rater", "kind", "session_id"]
        assert theirs.ratings.to_dataframe()[cols].values.tolist() == log.ratings.to_dataframe()[cols].values.tolist()
        theirs.ratings.add(t.take_id, 5, rater="cy", session_id="s1")  # a third rater, over there
        back = theirs.bundles.export(tmp_path / "back.zip")
    assert log.bundles.merge(back)["ratings"] == 1
    assert sorted(log.ratings.to_dataframe()["rater"]) == ["ana", "bo", "cy"]


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda r: {**r, "rater": "<script>" + "x" * 80}, "rater"),
        (lambda r: {**r, "rater": "ana\x1b[2J"}, "rater"),
        (lambda r: {**r, "rater": ""}, "rater"),
        (lambda r: {**r, "kind": "taste"}, "kind"),
        (lambda r: {**r, "rating": 9}, "rating"),
        (lambda r: {**r, "rating": "4"}, "rating"),
        (lambda r: {**r, "rating_id": "../../etc/passwd"}, "rating_id"),
        (lambda r: {**r, "take_id": "f" * 32}, "neither the bundle nor this log"),
        (lambda r: {**r, "at": "yesterday"}, "at"),
        (lambda r: {**r, "session_id": "s\n1"}, "session_id"),
        (lambda r: {k: v for k, v in r.items() if k != "rater"}, "rater is missing"),
    ],
)
def test_hostile_ratings_in_a_bundle_are_refused_whole(tmp_path, log, change, problem):
    t = ok_take(log)
    log.ratings.add(t.take_id, 4, rater="ana", session_id="s1")
    good = log.bundles.export(tmp_path / "b.zip")
    bad = rewrite(good, tmp_path / "bad.zip", "ratings.json", lambda rows: [change(rows[0])])
    with ExperimentLog(tmp_path / "theirs") as theirs:
        with pytest.raises(LogError, match=problem) as err:
            theirs.bundles.merge(bad)
        assert "nothing was merged" in str(err.value) and len(theirs) == 0 and theirs.ratings.to_dataframe().empty


def test_a_conflicting_rating_id_is_refused(tmp_path, log):
    t = ok_take(log)
    log.ratings.add(t.take_id, 4, rater="ana")
    good = log.bundles.export(tmp_path / "b.zip")
    bad = rewrite(good, tmp_path / "bad.zip", "ratings.json", lambda rows: [{**rows[0], "rating": 1}])
    with pytest.raises(LogError, match="conflicts"):
        log.bundles.merge(bad)
    assert list(log.ratings.to_dataframe()["rating"]) == [4]


def test_a_bundle_without_ratings_still_imports(tmp_path, log):
    t = ok_take(log)
    log.rate(t.take_id, 4)
    good = log.bundles.export(tmp_path / "b.zip")
    old = tmp_path / "old.zip"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(old, "w") as zout:
        for info in zin.infolist():
            if info.filename != "ratings.json":
                data = zin.read(info.filename)
                if info.filename == "manifest.json":
                    data = json.dumps({**json.loads(data), "version": 1}).encode()
                zout.writestr(info, data)
    with ExperimentLog(tmp_path / "theirs") as theirs:
        assert theirs.bundles.merge(old)["ratings"] == 0 and theirs.get(t.take_id).rating == 4


# --- the same on PostgreSQL (a team's log) ------------------------------------------------------


def test_ratings_and_a_blind_round_on_postgresql(pg_log_url):
    from cosyvoice_lab.views.listening import BlindSession

    with ExperimentLog(pg_log_url) as log:
        ids = [ok_take(log).take_id for _ in range(3)]
        session = BlindSession.start(ids, kind="adherence", rater="ana")
        session.record(log)
        session.rate("B", 4)
        session.rate("C", 2)
        session.rate("C", None)
        log.ratings.add(ids[0], 5, rater="ben", session_id=session.session_id)
        got = log.ratings.to_dataframe(session_id=session.session_id)
        assert sorted(zip(got["rater"], got["rating"], strict=True)) == [("ana", 4), ("ben", 5)]
        again = BlindSession.from_log(log, session.session_id)
        assert (again.order, again.seed, again.ratings) == (session.order, session.seed, {session.order[1]: 4})
        assert log.rounds.round_record(session.session_id)["take_ids"] == sorted(ids)


# --- one store (issue #25): own ratings, round answers, the cache, bundles ---------------------------


def test_rating_a_take_twice_keeps_one_current_own_rating_and_the_history(log):
    t = ok_take(log)
    log.rate(t.take_id, 3, rater="ana")
    assert log.rate(t.take_id, 5, rater="ana").rating == 5
    own = log.ratings.to_dataframe(kind="own")
    assert own[["take_id", "rating", "rater", "kind"]].values.tolist() == [[t.take_id, 5, "ana", "own"]]
    assert own["session_id"].isna().all() and own["position"].isna().all() and not own["hidden_repeat"].any()
    assert [(e["kind"], e["rating"]) for e in log.ratings.events([t.take_id])] == [("own", 3), ("own", 5)]
    history = log.annotations(t.take_id)  # the history of own ratings is their rows
    assert history[["action", "value", "author"]].values.tolist() == [["rate", "3", "ana"], ["rate", "5", "ana"]]
    assert log.ratings.to_dataframe().empty, "an own rating is no listening rating"
    log.rate(t.take_id, 2, rater="bo")  # another person's mark: the latest own rating is the take's
    assert log.get(t.take_id).rating == 2 and len(log.df) == 1 and log.df["rating"].tolist() == [2]
    assert sorted(log.ratings.to_dataframe(kind="own")["rater"]) == ["ana", "bo"]


def test_clearing_an_own_rating_keeps_the_history_and_empties_the_take(log):
    t = ok_take(log)
    log.rate(t.take_id, 4, rater="ana")
    assert log.rate(t.take_id, None, rater="ana").rating is None
    assert log.ratings.to_dataframe(kind="own").empty and log.df["rating"].isna().all()
    assert [e["rating"] for e in log.ratings.events([t.take_id])] == [4, None]
    assert log.to_dataframe(min_rating=1).empty


def test_the_takes_rating_is_a_cache_rebuilt_from_the_own_ratings(log):
    a, b, c = ok_take(log), ok_take(log), ok_take(log)
    log.rate(a.take_id, 4, rater="ana")
    log.rate(b.take_id, 2, rater="ana")
    log.rate(b.take_id, None, rater="bo")
    log.ratings.add(c.take_id, 5, rater="cy", session_id="s1")  # a listening rating is no own mark
    with sqlite3.connect(log.path) as raw:  # the cache damaged behind the log's back
        raw.execute("UPDATE takes SET rating = 1")
    assert {t.rating for t in log.takes()} == {1}
    assert log.ratings.rebuild_own_cache() == 3
    assert [log.get(t.take_id).rating for t in (a, b, c)] == [4, None, None]


def test_ratings_add_refuses_an_own_kind_and_a_repeat_outside_a_round(log):
    t = ok_take(log)
    with pytest.raises(ValueError, match="kind"):
        log.ratings.add(t.take_id, 3, rater="ana", kind="own")  # own marks go through log.rate
    with pytest.raises(ValueError, match="hidden repeat"):
        log.ratings.add(t.take_id, 3, rater="ana", hidden_repeat=True)
    with pytest.raises(ValueError, match="position"):
        log.ratings.add(t.take_id, 3, rater="ana", session_id="s1", position=-1)
    assert log.ratings.events() == []


def _star_round(log, experiment="exp"):
    from cosyvoice_lab.panel.rounds import Preview, Round, RoundOptions

    takes = [ok_take(log, experiment) for _ in range(3)]
    previews = [Preview(t.take_id, t.prompt, t.prompt, t.target_model) for t in takes]
    options = RoundOptions(repeat_share=1.0)
    return Round.create(log.rounds, experiment, "adherence", previews, options, max_raters=4, seed=3)


def test_a_rounds_star_answers_are_written_once_with_position_and_repeat(log):
    from cosyvoice_lab.log.schema import round_answers
    from cosyvoice_lab.panel import quality
    from cosyvoice_lab.panel.app import store_answer
    from cosyvoice_lab.panel.rounds import Round

    stars = _star_round(log)
    session = stars.join("ana")
    assert len(session.items) == 6 and sum(i.repeat for i in session.items) == 3
    values = {}
    for item in session.items:  # the first showing 4, its hidden repeat 3 (ana is a little inconsistent)
        store_answer(log, stars.kind, session, item, 3 if item.repeat else 4)
        values[item.position] = 3 if item.repeat else 4
    events = log.ratings.events()
    assert len(events) == 6, "each answer once"
    assert {(e["position"], bool(e["hidden_repeat"]), e["rating"]) for e in events} == {
        (i.position, i.repeat, values[i.position]) for i in session.items
    }
    assert all(e["session_id"] == session.session_id and e["kind"] == "adherence" for e in events)
    assert log.db.query(round_answers.select()) == []  # pair choices only
    shown = log.ratings.to_dataframe("exp")  # what the evidence reads: one rating per rater and take
    assert len(shown) == 3 and set(shown["rating"]) == {4} and not shown["hidden_repeat"].any()
    assert len(log.ratings.to_dataframe("exp", repeats=True)) == 6
    resumed = Round(log.rounds, stars.record, stars.previews, max_raters=4)  # a restarted panel
    again = resumed.sessions()[0]
    assert again.answers == values
    progress = quality.progress(resumed, log.rounds.answers([again.session_id]))
    assert progress[["rated", "total", "repeats"]].values.tolist() == [[6, 6, 3]]


def test_the_evidence_counts_a_rounds_star_answer_once(tmp_path):
    from cosyvoice_lab.panel.app import store_answer
    from cosyvoice_lab.views.comparison import Comparison
    from cosyvoice_lab.views.evidence.questions import rating_scores

    with ExperimentLog(tmp_path / "log") as log:
        stars = _star_round(log, "ev")
        for rater in ("ana", "bo"):
            session = stars.join(rater)
            for item in session.items:
                store_answer(log, stars.kind, session, item, 2 if item.repeat else 5)
        takes = log.takes(experiment="ev")
        comparison = Comparison(log, "ev", [takes[0].prompt], [takes[0].target_model])
        ratings = log.ratings.to_dataframe("ev")
        assert len(ratings) == 6 and set(ratings["rating"]) == {5}  # 3 takes x 2 raters, repeats aside
        assert len(log.ratings.events()) == 12  # every answer once, the hidden repeats too
        assert len(rating_scores(ratings)) == 3  # the evidence's score of each take (raters centred)
        assert comparison.evidence(ratings=ratings) is not None


def _hand_ratings(log):
    t = ok_take(log)
    log.rate(t.take_id, 4, rater="ana")
    log.ratings.add(t.take_id, 2, rater="bo", kind="adherence", session_id="s2", position=0)
    log.ratings.add(t.take_id, 3, rater="bo", kind="adherence", session_id="s2", position=1, hidden_repeat=True)
    return t


def test_merging_two_bundles_that_hold_the_same_ratings_adds_each_once(tmp_path, log):
    t = _hand_ratings(log)
    first = log.bundles.export(tmp_path / "first.zip")
    log.tag(t.take_id, "warm")
    second = log.bundles.export(tmp_path / "second.zip")  # another bundle, the same rating ids
    with zipfile.ZipFile(second) as zf:
        assert json.loads(zf.read("manifest.json"))["version"] == 3
        rows = json.loads(zf.read("ratings.json"))
    assert {r["kind"] for r in rows} == {"own", "adherence"} and [r["hidden_repeat"] for r in rows] == [
        False,
        False,
        True,
    ]
    with ExperimentLog(tmp_path / "theirs") as theirs:
        assert theirs.bundles.merge(first)["ratings"] == 3
        assert theirs.bundles.merge(second)["ratings"] == 0 and theirs.bundles.merge(first)["ratings"] == 0
        assert theirs.ratings.events() == log.ratings.events()
        assert theirs.get(t.take_id).rating == 4 and theirs.get(t.take_id).tags == ("warm",)
        assert theirs.annotations(t.take_id)["action"].tolist() == ["rate", "tag"]


def test_a_format_2_bundle_is_converted_on_read(tmp_path, log):
    """A teammate's bundle of the previous format: own ratings as "rate" annotation events, a blind
    round's seed-only rows, listening ratings without position: merged as the one store holds them."""
    t = _hand_ratings(log)
    good = log.bundles.export(tmp_path / "b.zip")
    with zipfile.ZipFile(good) as zf:
        ratings = json.loads(zf.read("ratings.json"))
    own, listening = ratings[0], ratings[1]
    event = {"annotation_id": own["rating_id"], "take_id": t.take_id, "at": own["at"], "action": "rate",
             "value": "4", "author": "ana"}  # fmt: skip
    seed_only = {**listening, "rating_id": "c" * 32, "rating": None, "seed": 7}
    old = {k: v for k, v in listening.items() if k not in ("position", "hidden_repeat")}
    v2 = rewrite(good, tmp_path / "v2.zip", "manifest.json", lambda m: {**m, "version": 2})
    v2 = rewrite(v2, tmp_path / "v2b.zip", "annotations.json", lambda rows: [*rows, event])
    v2 = rewrite(v2, tmp_path / "v2c.zip", "ratings.json", lambda rows: [{**old, "seed": None}, seed_only])
    with ExperimentLog(tmp_path / "theirs") as theirs:
        assert theirs.bundles.merge(v2)["ratings"] == 2  # the listening rating and the own one
        assert theirs.get(t.take_id).rating == 4
        got = {(e["rating_id"], e["kind"], e["rating"], e["position"]) for e in theirs.ratings.events()}
        assert got == {(own["rating_id"], "own", 4, None), (listening["rating_id"], "adherence", 2, None)}
        assert theirs.annotations(t.take_id)["action"].tolist() == ["rate"]
        assert theirs.bundles.merge(good)["ratings"] == 1  # format 3 of the same ids: only the repeat is new
        assert theirs.ratings.events() == log.ratings.events()  # and the older rows got their place
    hostile = rewrite(v2, tmp_path / "v2d.zip", "ratings.json", lambda rows: [{**old, "seed": -1}])
    with ExperimentLog(tmp_path / "other") as other, pytest.raises(LogError, match="seed must be from 0"):
        other.bundles.merge(hostile)


def test_own_ratings_and_round_answers_on_postgresql(pg_log_url, tmp_path):
    from cosyvoice_lab.panel.app import store_answer

    with ExperimentLog(pg_log_url, folder=tmp_path) as log:
        t = ok_take(log)
        log.rate(t.take_id, 3, rater="ana")
        log.rate(t.take_id, 5, rater="ana")
        assert log.get(t.take_id).rating == 5 and log.ratings.to_dataframe(kind="own")["rating"].tolist() == [5]
        stars = _star_round(log)
        session = stars.join("bo")
        for item in session.items:
            store_answer(log, stars.kind, session, item, 1 if item.repeat else 2)
        assert len(log.ratings.to_dataframe(session_id=session.session_id)) == 3
        assert len(log.ratings.to_dataframe(session_id=session.session_id, repeats=True)) == 6
        answers = log.rounds.answers([session.session_id])[session.session_id]
        assert {p: a["rating"] for p, a in answers.items()} == {i.position: 1 if i.repeat else 2 for i in session.items}
        log.db.query("UPDATE takes SET rating = NULL")
        assert log.ratings.rebuild_own_cache() == 4 and log.get(t.take_id).rating == 5
        bundle = log.bundles.export(tmp_path / "b.zip")
        assert log.bundles.merge(bundle)["ratings"] == 0
