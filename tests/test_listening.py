"""Blind listening as pure objects: order, seed, labels, ratings, the reveal summary (no widgets)."""

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cosyvoice_lab.views.listening import BlindSession, Mean, anonymous_label, played_not_chosen, shuffled

MODELS = ("plus", "flash")


@dataclass
class FakeTake:
    take_id: str
    model: str
    prompt: str
    tags: tuple = ()
    notes: str = ""
    rating: int | None = None
    played: bool = False
    chosen: bool = False
    voice_id: str = ""
    preview_missing: bool = False
    audio: None = None


TAKES = [
    FakeTake(f"t{i}", model, prompt)
    for i, (prompt, model) in enumerate(
        [(p, m) for p in ("deep voice", "bright voice") for m in ("plus", "flash") for _ in range(2)]
    )
]


def test_labels_run_like_spreadsheet_columns():
    assert [anonymous_label(i) for i in (0, 1, 25, 26, 27, 51, 52, 701, 702)] == [
        "A",
        "B",
        "Z",
        "AA",
        "AB",
        "AZ",
        "BA",
        "ZZ",
        "AAA",
    ]
    with pytest.raises(ValueError):
        anonymous_label(-1)


@given(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=30, unique=True), st.integers(0, 2**32 - 1))
def test_the_order_depends_only_on_the_set_of_takes_and_the_seed(ids, seed):
    order = shuffled(ids, seed)
    assert sorted(order) == sorted(ids)
    assert shuffled(list(reversed(ids)), seed) == order


def test_different_seeds_give_different_orders():
    ids = [t.take_id for t in TAKES]
    assert len({tuple(shuffled(ids, seed)) for seed in range(20)}) > 10


def test_a_session_records_its_seed_and_labels():
    s = BlindSession.start([t.take_id for t in TAKES], seed=7, session_id="s1")
    assert s.order == tuple(shuffled([t.take_id for t in TAKES], 7)) and s.tag == "blind:s1"
    first = s.order[0]
    assert s.label(first) == "A"
    assert s.note_for(first) == f"blind s1: seed 7, preference round, 8 takes, rater {s.rater}" and s.rater
    assert BlindSession.start(["x"]).seed >= 0  # a fresh seed when none is given
    with pytest.raises(KeyError):
        s.label("nope")
    with pytest.raises(ValueError, match="at least one"):
        BlindSession.start([])


def test_append_note_keeps_existing_notes_once():
    assert BlindSession.append_note("", "line") == "line"
    assert BlindSession.append_note("mine", "line") == "mine\nline"
    assert BlindSession.append_note("mine\nline", "line") == "mine\nline"


def test_ratings_and_the_reveal_summary():
    s = BlindSession.start([t.take_id for t in TAKES], seed=3)
    ratings = {"t0": 5, "t1": 4, "t2": 2, "t4": 3, "t6": 1}
    for take_id, r in ratings.items():
        s.rate(take_id, r)
    s.rate("t7", 2)
    s.rate("t7", None)  # cleared again
    assert sorted(s.unrated) == sorted(s.label(t) for t in ("t3", "t5", "t7"))
    with pytest.raises(ValueError):
        s.rate("t0", 6)
    summary = s.reveal(TAKES)
    assert s.revealed and summary.rated == 5
    assert summary.per_model == {"plus": Mean((5 + 4 + 3) / 3, 3), "flash": Mean((2 + 1) / 2, 2)}
    assert summary.per_prompt == {0: Mean((5 + 4 + 2) / 3, 3), 1: Mean((3 + 1) / 2, 2)}
    assert summary.prompts == {0: "deep voice", 1: "bright voice"} and summary.best_model() == "plus"
    assert [r.label for r in summary.rows] == [anonymous_label(i) for i in range(8)]
    assert "plus: 4.00 (n=3)" in summary.to_text() and "flash" in summary.html()


def test_the_summary_numbers_prompts_in_the_order_given():
    s = BlindSession.start(["t0", "t4"], seed=1)
    summary = s.summary(TAKES, prompts=["bright voice", "deep voice"])
    assert summary.prompts == {0: "bright voice", 1: "deep voice"}
    assert summary.per_model["plus"] == Mean(None, 0) and summary.best_model() is None
    with pytest.raises(KeyError):
        s.summary(TAKES[1:])


def test_a_session_is_rebuilt_from_what_the_log_recorded():
    s = BlindSession.start([t.take_id for t in TAKES[:4]], seed=99, session_id="abc")
    logged = [
        FakeTake(
            t.take_id,
            t.model,
            t.prompt,
            tags=(s.tag,),
            rating=4 if t.take_id == "t1" else None,
            notes=s.append_note("earlier note", s.note_for(t.take_id)),
        )
        for t in TAKES[:4]
    ]
    again = BlindSession.from_log([*logged, *TAKES[4:]], "abc")
    assert again.order == s.order and again.seed == 99 and again.ratings == {"t1": 4}
    with pytest.raises(ValueError, match="no consistent record"):
        BlindSession.from_log(TAKES, "abc")


def test_two_sessions_get_different_fresh_seeds_and_shuffles():
    ids = [t.take_id for t in TAKES]
    first, second = BlindSession.start(ids), BlindSession.start(ids)
    assert first.seed != second.seed and first.order != second.order
    assert first.session_id != second.session_id


def fake_takes():
    return [FakeTake(t.take_id, t.model, t.prompt, voice_id=f"cosyvoice-v3.5-{t.model}-vid{t.take_id}") for t in TAKES]


def test_before_the_reveal_nothing_shown_pairs_a_label_with_a_model_prompt_or_take():
    takes = fake_takes()
    s = BlindSession.start([t.take_id for t in takes], rater="ana")
    s.rate(s.order[0], 4)
    shown = " ".join([s.html(takes), repr(s), str(s), *(s.note_for(t.take_id) for t in takes)])
    for t in takes:
        assert t.take_id not in shown.replace("take", "") and t.voice_id not in shown and t.prompt not in shown
    assert not any(model in shown for model in MODELS)
    assert "label" not in shown and str(s.seed) not in repr(s)
    assert "A" in s.html(takes) and "★★★★" in s.html(takes) and "rater ana" in s.html(takes)
    with pytest.raises(RuntimeError, match="reveal"):
        s.ratings_frame()
    s.reveal(takes)
    assert str(s.seed) in repr(s)


def test_an_adherence_round_shows_the_description_but_not_the_model():
    takes = fake_takes()
    s = BlindSession.start([t.take_id for t in takes], kind="adherence", rater="bo")
    page = s.html(takes)
    assert "deep voice" in page and "bright voice" in page and "match its description" in page
    assert not any(model in page for model in MODELS) and not any(t.take_id in page for t in takes)
    with pytest.raises(ValueError, match="preference"):
        BlindSession.start(["t0"], kind="favourite")


def test_ratings_carry_the_rater_and_the_round_kind():
    takes = fake_takes()
    s = BlindSession.start([t.take_id for t in takes], kind="adherence", rater="Ana María")
    s.rate("t0", 5)
    s.rate("t3", 2)
    s.reveal(takes)
    frame = s.ratings_frame()
    assert set(frame["take_id"]) == {"t0", "t3"} and set(frame["rating"]) == {5, 2}
    assert set(frame["rater"]) == {"Ana María"} and set(frame["kind"]) == {"adherence"}
    assert set(frame["session_id"]) == {s.session_id}


@given(st.text(min_size=1, max_size=20).filter(lambda x: x.strip() == x and "\n" not in x and "\r" not in x))
def test_kind_and_rater_come_back_from_the_log(rater):
    s = BlindSession.start(["t0", "t1", "t2"], kind="adherence", rater=rater, session_id="xyz")
    logged = [FakeTake(t, "plus", "p", tags=(s.tag,), notes=s.note_for(t)) for t in ("t0", "t1", "t2")]
    again = BlindSession.from_log(logged, "xyz")
    assert (again.order, again.seed, again.kind, again.rater) == (s.order, s.seed, "adherence", rater)


def test_sessions_recorded_with_labels_are_still_read():
    s = BlindSession.start(["t0", "t1"], seed=5, session_id="old")
    notes = {t: f"blind old: seed 5, label {s.label(t)}, position {s.order.index(t) + 1}/2" for t in s.order}
    logged = [FakeTake(t, "plus", "p", tags=(s.tag,), notes=notes[t]) for t in ("t0", "t1")]
    again = BlindSession.from_log(logged, "old")
    assert again.order == s.order and again.kind == "preference"


def test_a_blind_card_shows_no_mark_from_outside_the_round():
    from cosyvoice_lab import html

    take = FakeTake("t0", "plus", "deep voice", played=True, chosen=True)
    take.voice_status = "DELETED"  # type: ignore[attr-defined]
    header = html.card_header(take, label="C", blind=True)  # type: ignore[arg-type]
    assert "C" in header and not any(mark in header for mark in ("kept", "heard", "DELETED", "plus", "deep"))


def test_played_not_chosen():
    takes = [
        FakeTake("a", "m", "p", played=True),
        FakeTake("b", "m", "p", played=True, chosen=True),
        FakeTake("c", "m", "p"),
    ]
    assert [t.take_id for t in played_not_chosen(takes)] == ["a"]
