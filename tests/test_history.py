"""lab.history: the versions a prompt went through (original, reruns, edits), with ratings and
measures per version, from the parent links the log records, or derived when there are none."""

import pytest

from cosyvoice_lab import Lab, PromptSpec, TakeNotFound
from cosyvoice_lab.lab.history import change
from cosyvoice_lab.lab.stage import MeasuringOptions
from cosyvoice_lab.offline import serve
from cosyvoice_lab.views.history import COLUMNS

PREVIEW = "Hello, how are you today?"
SPEC = PromptSpec(gender="male", age="middle-aged", pitch="low", scenario="audiobook")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with serve(model_profiles={"*": {"design_latency": 0}}, enrollment_rps=None, seed=3) as sim:
        # a take's history never reads the quality model (0.2 s of CPU a preview)
        quiet = MeasuringOptions(predicted_quality=False)
        yield Lab(
            tmp_path_factory.mktemp("history") / "lab",
            backend="offline",
            base_url=sim.base_url,
            progress=False,
            measuring=quiet,
        )


def test_a_rerun_and_an_edit_make_three_versions(lab):
    first = lab.design(SPEC, preview_text=PREVIEW, experiment="tuning")
    again = lab.rerun(first)
    edited = lab.design(SPEC.replace(pitch="high"), preview_text=PREVIEW, experiment="tuning", parent=again)
    lab.design("an unrelated voice", preview_text=PREVIEW, experiment="tuning")  # same experiment, no link
    lab.log.rate(edited.take_id, 5)
    lab.log.rate(first.take_id, 2)
    lab.log.ratings.add(edited.take_id, 4, rater="ana", kind="adherence", session_id="s1")
    lab.log.ratings.add(edited.take_id, 2, rater="bo", kind="adherence", session_id="s1")

    history = lab.history(edited)
    table = history.table
    assert list(table.columns) == list(COLUMNS)
    assert history.linked and history.note == ""
    assert list(table["take_id"]) == [first.take_id, again.take_id, edited.take_id]
    assert list(table["kind"]) == ["original", "rerun", "edit"]
    assert list(table["version"]) == [1, 2, 3]
    assert table["change"].iloc[2] == "pitch: low → high"
    assert list(table["parent_take_id"])[1:] == [first.take_id, again.take_id]
    assert table["rating"].iloc[0] == 2 and table["rating"].iloc[2] == 5
    assert list(table["ratings_n"]) == [0, 0, 2] and table["ratings_mean"].iloc[2] == 3.0  # listening rounds
    # the measures of each version: the edit is higher-pitched than the deep original
    assert table["median_f0_hz"].iloc[2] > table["median_f0_hz"].iloc[0]
    # any version of the chain gives the same history
    assert list(lab.history(first.take_id).table["take_id"]) == list(table["take_id"])
    assert list(lab.history(again.take_id[:10]).table["take_id"]) == list(table["take_id"])
    fig = history.plot()
    assert [ax.get_ylabel() for ax in fig.axes] == ["F0 (Hz)", "rating"]
    assert "3 version(s)" in repr(history) and "parent links" in repr(history)
    page = history._repr_html_()
    assert "pitch: low → high" in page and "rerun" in page and edited.take_id[:8] in page


def test_a_take_without_links_gets_its_experiments_takes_and_says_so(lab):
    takes = [
        lab.design(f"A {word} voice for a game", preview_text=PREVIEW, experiment="builder")
        for word in ("deep", "bright")
    ]
    history = lab.history(takes[1])
    assert not history.linked
    assert "no parent links" in history.note and "builder" in history.note
    assert list(history.table["take_id"]) == [t.take_id for t in takes]
    assert list(history.table["kind"]) == ["first", "variant"]
    assert history.table["change"].iloc[1] == "prompt edited"
    assert "no parent links" in history._repr_html_()


def test_without_an_experiment_the_prompt_family_is_used(lab):
    a = lab.design(SPEC.replace(scenario="news"), preview_text=PREVIEW)
    b = lab.design(SPEC.replace(scenario="news", pace="fast"), preview_text=PREVIEW)  # one word away
    lab.design(PromptSpec(gender="female", age="child"), preview_text=PREVIEW)  # far away
    history = lab.history(b)
    assert list(history.table["take_id"]) == [a.take_id, b.take_id]
    assert history.table["change"].iloc[1] == "pace: — → fast"


def test_the_html_escapes_the_prompts(lab):
    take = lab.design("A deep voice <script>alert(1)</script>", preview_text=PREVIEW, experiment="hostile")
    page = lab.history(take)._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_unknown_takes_are_clear_errors(lab):
    with pytest.raises(TakeNotFound):
        lab.history("0" * 32)
    with pytest.raises(TypeError, match="Take or a take id"):
        lab.history(42)


def test_change_in_words():
    row = {"voice_prompt": "a", "preview_text": "p", "prefix": "x", "target_model": "cosyvoice-v3.5-plus"}
    assert change(row, dict(row)) == ""
    assert change(row, {**row, "target_model": "cosyvoice-v3.5-flash"}) == (
        "model: cosyvoice-v3.5-plus → cosyvoice-v3.5-flash"
    )
    assert change(row, {**row, "voice_prompt": "b", "preview_text": "q"}) == "prompt edited; preview text changed"
