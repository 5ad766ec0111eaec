"""The widgets driven as a user would, without a kernel or a browser: set ``.value``, ``.click()``.

Every test uses a real Lab on the offline simulator and asserts on the experiment log and on
the rendered prompt. (PromptSpec's own property tests live in test_prompts.py.)
"""

import threading
import time

import pytest

from cosyvoice_lab import Lab, ValidationError, catalog
from cosyvoice_lab.lab.planning import DEFAULT_PREVIEW_TEXT
from cosyvoice_lab.lab.stage import MeasuringOptions
from cosyvoice_lab.prompts.spec import PRESETS, options
from cosyvoice_lab.views.listening import BlindSession, played_not_chosen, shuffled
from cosyvoice_lab.widgets import ComparisonBoard, LogBrowser, PromptBuilder, TakeCard
from cosyvoice_lab.widgets.browser import page_of, search
from cosyvoice_lab.widgets.builder import PromptDraft, counters_text
from cosyvoice_lab.widgets.cards import measurements_text

PLUS, FLASH = catalog.COMPARE_MODELS
PREVIEW = "Hello there, this is a short preview of the voice."


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    # Designed without the quality model (0.2 s of CPU a preview), which no test here reads from a
    # take; a card's DNSMOS figure is checked in test_counters_and_measurements_text.
    quiet = MeasuringOptions(predicted_quality=False)
    return Lab(tmp_path / "lab", backend="offline", progress=False, requests_per_second=None, measuring=quiet)


@pytest.fixture
def comparison(lab):
    return lab.compare(
        ["a deep, slow elderly male voice", "a bright, fast young female voice"],
        repeats=1,
        preview_text=PREVIEW,
        experiment="cmp",
    )


def designed(builder, timeout=60):
    assert builder.design(), builder.messages.value + builder.status.value
    assert builder.wait(timeout), "the background design did not finish"
    assert not builder.errors.errors, builder.errors.value
    return builder


# --- PromptBuilder: the prompt ---------------------------------------------------------------------
def test_preset_fills_the_choices_and_renders_the_prompt(lab):
    b = PromptBuilder(lab)
    assert b.prompt.value == "" and "must not be empty" in b.messages.value and b.design_button.disabled
    b.preset.value = "audiobook narrator"  # the label, as notebook 01 sets it; the key works too
    spec = PRESETS["audiobook_narrator"]
    assert b.preset.value == "audiobook_narrator"
    assert {d: w.value or None for d, w in b.dimensions.items()} == {d: getattr(spec, d) for d in b.dimensions}
    assert b.prompt.value == spec.render("en") and b.spec == spec
    n = len(b.prompt.value)
    assert f"prompt {n}/{catalog.VOICE_PROMPT_MAX}" in b.counters.value
    assert f"preview {len(DEFAULT_PREVIEW_TEXT['en'])}/{catalog.PREVIEW_TEXT_MAX}" in b.counters.value
    assert "ready to design" in b.messages.value and not b.design_button.disabled


def test_language_toggle_renders_chinese_and_relabels_the_choices(lab):
    b = PromptBuilder(lab, preset="news_anchor")
    b.language.value = "zh"
    assert b.prompt.value == PRESETS["news_anchor"].render("zh")
    assert b.dimensions["age"].options == (("—", ""), *options("age", "zh"))
    assert b.dimensions["age"].value == "middle-aged"  # relabelling kept the choice
    assert b.preview_text.value == DEFAULT_PREVIEW_TEXT["zh"]  # the default preview follows the language
    b.language.value = "en"
    assert b.prompt.value == PRESETS["news_anchor"].render("en") and b.preview_text.value == DEFAULT_PREVIEW_TEXT["en"]


def test_changing_a_choice_rerenders_and_leaves_the_preset(lab):
    b = PromptBuilder(lab, preset="audiobook_narrator")
    b.dimensions["pace"].value = "fast"
    assert b.prompt.value == PRESETS["audiobook_narrator"].replace(pace="fast").render("en")
    assert b.preset.value == ""  # custom now
    b.free_text.value = "Slight rasp on the low notes."
    assert b.prompt.value.endswith("Slight rasp on the low notes.")


def test_a_hand_edit_is_kept_until_re_render(lab):
    b = PromptBuilder(lab, preset="podcast_host")
    assert b.rerender_button.disabled
    b.prompt.value = "A relaxed young man who chats like an old friend."
    assert b.edited and not b.rerender_button.disabled and "edited by hand" in b.edited_note.value
    b.dimensions["pitch"].value = "low"
    b.language.value = "zh"
    assert b.prompt.value == "A relaxed young man who chats like an old friend."  # kept
    b.rerender_button.click()
    assert b.prompt.value == PRESETS["podcast_host"].replace(pitch="low").render("zh") and not b.edited
    assert b.rerender_button.disabled and b.edited_note.value == ""


def test_inline_validation_as_you_type(lab):
    b = PromptBuilder(lab, preset="voice_assistant")
    b.prompt.value = "a" * (catalog.VOICE_PROMPT_MAX + 1)
    assert f"prompt {catalog.VOICE_PROMPT_MAX + 1}/{catalog.VOICE_PROMPT_MAX}" in b.counters.value
    assert "#b91c1c" in b.counters.value  # the counter turns red
    assert "voice_prompt" in b.messages.value and f"limit is {catalog.VOICE_PROMPT_MAX}" in b.messages.value
    assert b.design_button.disabled
    b.prefix.value = "My Voice"
    assert "prefix" in b.messages.value and "myvoice" in b.messages.value
    assert b.design() is False and "fix 2 problem(s)" in b.status.value and not lab.log.takes()
    b.prefix.value = "ok"
    b.prompt.value = "低" * 300  # within 500 code points, over it when CJK counts double
    assert "✗" not in b.messages.value and "⚠" in b.messages.value and "voice_prompt" in b.messages.value
    b.free_text.value = "x" * 600  # a spec problem is reported only while the prompt follows the spec
    assert "free_text" not in b.messages.value
    b.rerender_button.click()
    assert "free_text is too long" in b.messages.value and b.design_button.disabled


@pytest.mark.parametrize("language", ["en", "zh"])
def test_the_count_and_the_message_follow_the_language_chosen(lab, language):
    """Issue 26, item 4: English chosen, 600 characters of free text: the message named the zh
    prompt, the counter kept the last count and the box the last rendering."""
    b = PromptBuilder(lab, preset="news_anchor", language=language)
    b.free_text.value = "x" * 600
    n = len(b.prompt.value)
    assert n > 600 and "x" * 600 in b.prompt.value, "the box shows the rendering, past the limit"
    assert f"prompt {n}/{catalog.VOICE_PROMPT_MAX}" in b.counters.value and "#b91c1c" in b.counters.value
    assert f"the {language} prompt is {n} characters" in b.messages.value
    other = {"en": "zh", "zh": "en"}[language]
    assert f"the {other} prompt" not in b.messages.value and b.design_button.disabled
    b.free_text.value = "with a slight rasp"
    assert len(b.prompt.value) < catalog.VOICE_PROMPT_MAX and "too long" not in b.messages.value


# --- PromptBuilder: designing ------------------------------------------------------------------------
def test_design_runs_in_the_background_and_adds_cards_as_takes_arrive(lab, monkeypatch):
    b = PromptBuilder(lab, preset="audiobook narrator")
    b.model.value, b.candidates.value = "both", 2
    gate, real = threading.Event(), lab.run_design
    monkeypatch.setattr(lab, "run_design", lambda *a, **kw: (gate.wait(30), real(*a, **kw))[1])
    b.design_button.click()
    assert b.running and b.design_button.disabled and b.status.value == "designing… 0/4 done"
    assert b.progress.max == 4 and b.progress.value == 0
    b.design_button.click()  # a second click while running does nothing
    assert "already designing" in b.status.value
    gate.set()
    assert b.wait(60) and not b.errors.errors, b.errors.value
    assert b.status.value == "4/4 done: 4 ok" and b.progress.value == 4 and not b.design_button.disabled
    assert len(b.cards) == 4
    # "both": one column per model, plus then flash (catalog order), whatever order they finished in
    columns = b.results.children
    assert len(columns) == 2 and all("cosyvoice-model-column" in c._dom_classes for c in columns)
    for column, model in zip(columns, (PLUS, FLASH), strict=True):
        head, *cards = column.children
        assert "v3.5-" + model.rsplit("-", 1)[-1] in head.value
        assert len(cards) == 2 and {c.take.target_model for c in cards} == {model}
    takes = lab.log.takes()
    assert len(takes) == 4 and {t.experiment for t in takes} == {"prompt-builder"}
    assert sorted(t.target_model for t in takes) == sorted([PLUS, PLUS, FLASH, FLASH])
    assert {t.prompt for t in takes} == {PRESETS["audiobook_narrator"].render("en")}
    assert all(t.prompt_spec == PRESETS["audiobook_narrator"].to_dict() for t in takes)
    card = b.cards[0]
    assert "<audio" in card.player.value and card.take.voice_id in card.header.value
    assert "F0" in card.details.value and "LUFS" in card.details.value


def test_result_cards_write_ratings_choices_and_listens_to_the_log(lab):
    b = designed(PromptBuilder(lab, preset="customer_service"))
    assert b.status.value == "2/2 done: 2 ok" and len(b.cards) == 2
    first, second = b.cards
    first.rating.value = 5
    first.keep_button.click()
    assert lab.log.get(first.take.take_id).rating == 5 and lab.log.get(first.take.take_id).chosen
    assert "kept" in first.header.value and first.keep_button.button_style == "success"
    second.listened_button.click()
    assert second.listened_button.disabled and second.listened_button.description == "✓ listened"
    passed_over = played_not_chosen(lab.log.takes())
    assert [t.take_id for t in passed_over] == [second.take.take_id]
    assert first.unkeep_button.description == "unkeep" and "cleanup" in first.unkeep_button.tooltip
    assert not first.unkeep_button.disabled and second.unkeep_button.disabled  # only a kept take unkeeps
    first.unkeep_button.click()
    assert not lab.log.get(first.take.take_id).chosen
    assert list(lab.log.annotations(first.take.take_id)["action"]) == ["rate", "played", "choose", "unchoose"]
    # the card changes with it: no longer "kept", keep no longer green, unkeep greyed out
    assert "kept" not in first.header.value and first.keep_button.button_style == ""
    assert first.unkeep_button.disabled


def test_a_preview_played_to_the_end_marks_the_take_heard(lab):
    """The player's onended types "ended" into the card's hidden Text (what the browser does)."""
    card = designed(PromptBuilder(lab, preset="customer_service")).cards[0]
    assert "onended=" in card.player.value and "cosyvoice-heard" in card.player.value
    assert "cosyvoice-heard" in card.heard._dom_classes and card.heard.layout.display == "none"
    assert not lab.log.get(card.take.take_id).played
    card.heard.value = "ended"
    assert lab.log.get(card.take.take_id).played and card.listened_button.description == "✓ listened"
    assert "heard" in card.header.value


def test_keep_on_a_voice_a_cleanup_deleted_warns_and_keeps_nothing(lab):
    b = designed(PromptBuilder(lab, preset="customer_service"))
    card = b.cards[0]
    assert "DELETED" not in card.header.value and not card.keep_button.disabled
    lab.cleanup(dry_run=False)  # deletes every voice not chosen, this one included
    assert lab.log.get(card.take.take_id).voice_status == "DELETED"
    # issue 26, item 5: the card says so at once, before anyone clicks
    assert "DELETED" in card.header.value and card.keep_button.disabled
    assert "deleted" in card.keep_button.tooltip
    card.keep_button.click()
    assert not lab.log.get(card.take.take_id).chosen
    assert "deleted" in card.message.value and "⚠" in card.message.value
    assert "kept" not in card.header.value and "DELETED" in card.header.value


def test_an_edited_prompt_is_sent_as_written_without_a_spec(lab):
    b = PromptBuilder(lab, preset="game_villain")
    b.prompt.value = "A gravelly old pirate captain, slow and menacing."
    b.model.value, b.candidates.value = FLASH, 1
    b.preview_text.value = "Arr, ye'll not find the treasure here."
    b.experiment.value = "pirates"
    designed(b)
    (take,) = lab.log.takes(experiment="pirates")
    assert take.prompt == "A gravelly old pirate captain, slow and menacing." and take.prompt_spec is None
    assert take.target_model == FLASH and take.design.preview_text == "Arr, ye'll not find the treasure here."


def test_errors_in_the_background_are_shown_in_the_widget(lab, monkeypatch):
    b = PromptBuilder(lab, preset="podcast_host")

    def boom(*a, **kw):
        raise RuntimeError("the network ate it")

    monkeypatch.setattr(lab, "run_design", boom)
    assert b.design() and b.wait(30)
    assert "RuntimeError: the network ate it" in b.errors.value and "Traceback" in b.errors.value
    assert b.status.value == "2/2 done: 0 ok, 2 failed" and not b.design_button.disabled and not b.cards


def test_a_failed_take_gets_a_card_with_its_error_and_no_rating(lab):
    b = PromptBuilder(lab, preset="podcast_host")
    b.candidates.value = 1
    lab.client.create_voice = _raise_api_error
    designed(b)
    (card,) = b.cards
    assert card.take.status == "failed" and "Throttling" in card.details.value
    assert card.controls.layout.display == "none" and b.status.value == "1/1 done: 0 ok, 1 failed"


def test_builder_designs_through_the_lab_runner_at_the_lab_concurrency(lab, monkeypatch):
    b = PromptBuilder(lab, preset="news_anchor")
    b.model.value, b.candidates.value = "both", 3
    lab.concurrency = 2  # read when the designs are sent, as compare reads it
    in_flight, peak, lock, real = [0], [0], threading.Lock(), lab.run_design

    def counted(*a, **kw):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        try:
            time.sleep(0.1)
            return real(*a, **kw)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(lab, "run_design", counted)
    designed(b)
    assert peak[0] == 2, "never more requests in flight than the lab allows"
    assert b.status.value == "6/6 done: 6 ok" and len(b.cards) == 6
    logged = lab.log.takes(experiment="prompt-builder")
    assert sorted(t.take_id for t in logged) == sorted(t.take_id for t in b.takes)
    assert all(t.ok and t.voice_status for t in logged)  # settled by the lab: statuses recorded


def test_board_and_comparison_share_one_grouping(lab, comparison):
    lab.compare(comparison.prompts, repeats=1, preview_text=PREVIEW, experiment="cmp", new_repeats=True)
    board = ComparisonBoard(comparison)
    assert list(board.cards) == [t.take_id for t in comparison.grid.takes] == [t.take_id for t in comparison.takes]
    assert board.prompts == comparison.prompts and tuple(board.models) == comparison.models
    grid = board.grid.children[0].children  # header row, then per prompt: its text and a cell per model
    first_cell = [c.take.take_id for c in grid[len(board.models) + 2].children]
    assert first_cell == [t.take_id for t in comparison.grid.cell(comparison.prompts[0], comparison.models[0])]
    assert [board.cards[i].label for i in first_cell] == ["r0", "r1"]


def _raise_api_error(design):
    from cosyvoice_lab.errors import RateLimited

    raise RateLimited(429, "Throttling", "slow down", "req-1")


# --- ComparisonBoard ----------------------------------------------------------------------------------
def test_board_grid_rates_and_chooses_into_the_log(lab, comparison):
    board = ComparisonBoard(comparison)
    assert len(board.cards) == 4 and "4/4 takes ok" in board.status.value
    take = comparison.takes[0]
    card = board.cards[take.take_id]
    assert take.target_model.removeprefix("cosyvoice-") in card.header.value and "<audio" in card.player.value
    card.rating.value = 3
    card.keep_button.click()
    assert (lab.log.get(take.take_id).rating, lab.log.get(take.take_id).chosen) == (3, True)
    assert comparison.df.set_index("take_id").loc[take.take_id, "rating"] == 3  # the view sees it


def test_blind_mode_hides_shuffles_records_and_reveals(lab, comparison):
    board = ComparisonBoard(comparison, blind=True, seed=42)
    s = board.session
    ids = [t.take_id for t in comparison.takes]
    assert s.seed == 42 and list(s.order) == shuffled(ids, 42) and board.blind_toggle.value
    texts = " ".join(c.header.value + c.details.value for c in board.cards.values())
    players = " ".join(c.player.value for c in board.cards.values())  # base64 audio: check ids only
    for t in comparison.takes:  # nothing names the model, the prompt or the voice
        assert t.voice_id not in texts + players and t.prompt not in texts
    assert "v3.5" not in texts and "plus" not in texts and "flash" not in texts and "title=" not in players
    assert [c.label for c in board.cards.values()] == ["A", "B", "C", "D"]
    for t in lab.log.takes(tag=s.tag):  # recorded before anything is heard; the seed not in a log view
        assert f"blind {s.session_id}: preference round" in t.notes and "label" not in t.notes and "seed" not in t.notes
    assert lab.log.rounds.round_record(s.session_id)["seed"] == 42
    assert len(lab.log.takes(tag=s.tag)) == 4
    ratings = {}
    for i, take_id in enumerate(s.order):
        board.cards[take_id].rating.value = ratings[take_id] = [5, 4, 2, 1][i]
    assert "4/4 rated" in board.status.value
    summary = board.reveal()
    by_model = {}
    given = lab.log.ratings.to_dataframe(session_id=s.session_id)  # the round's ratings, with rater and kind
    assert dict(zip(given["take_id"], given["rating"], strict=True)) == ratings and set(given["kind"]) == {"preference"}
    for t in comparison.takes:
        assert lab.log.get(t.take_id).rating is None and lab.log.get(t.take_id).played  # not the take's own mark
        by_model.setdefault(t.target_model, []).append(ratings[t.take_id])
    assert {m: v.mean for m, v in summary.per_model.items()} == {m: sum(r) / 2 for m, r in by_model.items()}
    assert set(summary.per_prompt) == {0, 1} and summary.prompts[0] == comparison.prompts[0]
    assert "Revealed" in board.summary_box.value and board.reveal_button.disabled
    revealed = " ".join(c.header.value for c in board.cards.values())
    assert comparison.takes[0].voice_id in revealed and "prompt 0" in revealed
    again = BlindSession.from_log(lab.log, s.session_id)  # the log alone rebuilds the session
    assert again.order == s.order and again.ratings == ratings
    board.blind_toggle.value = False  # back to the labelled grid
    assert board.session is None and board.summary_box.value == "" and len(board.cards) == 4


def test_blind_mode_keeps_existing_notes_and_skips_failed_takes(lab, comparison):
    first = comparison.takes[0]
    lab.log.note(first.take_id, "sounds tired")
    failed = lab.run_design(lab.make_design("x", preview_text=PREVIEW)[0].replace(prefix="Bad!"), experiment="cmp")
    board = ComparisonBoard([*comparison.takes, failed], log=lab.log)
    assert failed.status == "failed" and len(board.cards) == 5
    board.blind_toggle.value = True
    assert failed.take_id not in board.session.order and len(board.cards) == 4
    assert lab.log.get(first.take_id).notes.startswith("sounds tired\nblind ")


def test_board_from_takes_needs_a_log(lab, comparison):
    with pytest.raises(ValueError, match="log="):
        ComparisonBoard(comparison.takes)
    with pytest.raises(RuntimeError, match="blind"):
        ComparisonBoard(comparison.takes, log=lab.log).reveal()


# --- LogBrowser -----------------------------------------------------------------------------------
@pytest.fixture
def filled(lab, comparison):
    lab.design("a calm, deep male narrator", preview_text=PREVIEW, experiment="solo", target_model=FLASH)
    t = comparison.takes
    lab.log.rate(t[0].take_id, 5)
    lab.log.rate(t[1].take_id, 2)
    lab.log.tag(t[1].take_id, "keeper?")
    return lab


def test_browser_filters_and_searches(filled):
    lb = LogBrowser(filled)
    assert lb.page_label.value == "page 1/1 · 5 take(s)" and lb.table.value.count("<tr>") == 6
    assert {v for _, v in lb.experiment.options} == {"", "cmp", "solo"}
    assert {v for _, v in lb.tag.options} == {"", "keeper?"}
    lb.experiment.value = "solo"
    assert "1 take(s)" in lb.page_label.value and "calm, deep male narrator" in lb.table.value
    lb.experiment.value = ""
    lb.model.value = FLASH
    assert "3 take(s)" in lb.page_label.value
    lb.model.value = ""
    lb.min_rating.value = 2
    assert "2 take(s)" in lb.page_label.value
    lb.min_rating.value = 0
    lb.tag.value = "keeper?"
    assert "1 take(s)" in lb.page_label.value
    lb.tag.value = ""
    lb.search.value = "BRIGHT"
    assert "2 take(s)" in lb.page_label.value and "bright, fast young female" in lb.table.value
    lb.search.value = ""
    lb.status_filter.value = "failed"
    assert "0 take(s)" in lb.page_label.value and "no takes match" in lb.table.value


def test_browser_pages(filled):
    lb = LogBrowser(filled, page_size=2)
    assert lb.page_label.value == "page 1/3 · 5 take(s)" and lb.prev_button.disabled
    newest = lb.take_select.options[0][1]
    assert newest == filled.log.takes()[-1].take_id  # newest first
    lb.next_button.click()
    lb.next_button.click()
    assert lb.page_label.value == "page 3/3 · 5 take(s)" and lb.next_button.disabled
    assert len(lb.take_select.options) == 1
    lb.prev_button.click()
    assert lb.page == 1 and not lb.prev_button.disabled


def test_browser_select_annotate_and_rerun(filled):
    lb = LogBrowser(filled)
    # the untagged, unrated take (which compare take finishes first is up to the threads)
    take_id = next(
        v for _, v in lb.take_select.options if not filled.log.get(v).tags and filled.log.get(v).rating is None
    )
    lb.take_select.value = take_id
    card = lb.card
    assert take_id in lb.detail.value and "<audio" in card.player.value and not lb.rerun_button.disabled
    card.rating.value = 4
    card.tag_text.value = "warm"
    card.add_tag_button.click()
    card.note_text.value = "best so far"
    card.save_note_button.click()
    card.keep_button.click()
    t = filled.log.get(take_id)
    assert (t.rating, t.tags, t.notes, t.chosen, t.played) == (4, ("warm",), "best so far", True, True)
    assert "best so far" in lb.detail.value and "warm" in lb.table.value
    assert "warm" in [v for _, v in lb.tag.options]
    lb.rerun_button.click()
    assert lb.wait(60) and not lb.errors.errors, lb.errors.value
    new = lb.rerun_take
    assert new.parent_take_id == take_id and new.design == t.design and new.ok
    assert "<audio" in lb.rerun_result.children[0].player.value
    assert "6 take(s)" in lb.page_label.value and lb.take_select.value == take_id


# --- small pure pieces ---------------------------------------------------------------------------------
def test_prompt_draft_follows_the_rendering_until_edited():
    d = PromptDraft()
    assert d.render("one") == "one" and not d.edited
    d.type("mine")
    assert d.edited and d.render("two") == "mine" and d.rendered == "two"
    assert d.rerender() == "two" and not d.edited
    d.type("two")  # typing the rendering itself is no edit
    assert not d.edited


def test_counters_and_measurements_text():
    expected = f"prompt 3/{catalog.VOICE_PROMPT_MAX} · preview 5/{catalog.PREVIEW_TEXT_MAX}"
    assert counters_text("abc", "hello") == expected
    assert counters_text("abc", "hello", [catalog.QWEN_VD]) == "prompt 3/2048 · preview 5/1024"
    both = counters_text("abc", "hello", [catalog.V35_PLUS, catalog.QWEN_VD])  # each family's limit
    assert both == "prompt 3/500 CosyVoice, 2048 Qwen3-TTS-VD · preview 5/200 CosyVoice, 1024 Qwen3-TTS-VD"
    text = measurements_text(
        {"median_f0_hz": 112.4, "speaking_rate": 13.25, "rate_unit": "letters_per_s", "loudness_lufs": float("nan")}
    )
    assert text == "F0 112 Hz · rate 13.2 letters/s" and measurements_text(None) == ""
    assert measurements_text({"median_f0_hz": 112.4, "dnsmos_ovrl": 3.456}) == "F0 112 Hz · DNSMOS 3.46"


def test_search_and_page_of_are_pure():
    import pandas as pd

    df = pd.DataFrame({"take_id": list("abcde"), "voice_prompt": ["Deep", "bright", None, "deep blue", "x"]})
    assert list(search(df, "deep")["take_id"]) == ["a", "d"] and search(df, " ").equals(df)
    rows, page, pages = page_of(df, 9, size=2)
    assert (list(rows["take_id"]), page, pages) == (["a"], 2, 3)
    assert list(page_of(df, -1, size=2)[0]["take_id"]) == ["e", "d"]


def test_take_card_shows_a_missing_preview_file_instead_of_failing(lab):
    take = lab.design("a warm female voice", preview_text=PREVIEW)
    import os

    os.remove(take.audio_path)
    card = TakeCard(take, lab.log)
    assert "missing" in card.player.value


def test_start_blind_from_code_keeps_its_seed_and_hides_old_ratings(tmp_path):
    from cosyvoice_lab import Lab
    from cosyvoice_lab.widgets import ComparisonBoard

    lab = Lab(tmp_path / "lab", backend="offline", progress=False, measure=False)
    comp = lab.compare(["a deep male voice", "a bright female voice"], repeats=1, experiment="blind-seed")
    for t in comp.takes:
        lab.log.rate(t.take_id, 3)
    board = ComparisonBoard(comp)
    session = board.start_blind(seed=7)
    assert board.session is session and session.seed == 7
    assert all(len([tag for tag in lab.log.get(t.take_id).tags if tag.startswith("blind:")]) == 1 for t in comp.takes)
    cards = list(board.cards.values())
    assert all(card.rating.value is None for card in cards), "earlier ratings are not shown to a blind listener"
    cards[0].rating.value = 3  # the same stars as before still count in the blind round
    assert session.unrated and len(session.unrated) == len(cards) - 1


def test_builder_records_the_voice_status_and_shows_one_that_is_not_ok(tmp_path, monkeypatch):
    from cosyvoice_lab import Lab
    from cosyvoice_lab.offline import serve
    from cosyvoice_lab.widgets import PromptBuilder

    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with serve(enrollment_rps=None, deploying_seconds=60) as slow:
        lab = Lab(tmp_path / "lab", backend="offline", base_url=slow.base_url, progress=False, measure=False)
        builder = PromptBuilder(lab, preset="news_anchor")
        builder.candidates.value = 2
        builder.design_button.click()
        assert builder.wait(timeout=60)
        assert [t.voice_status for t in builder.takes] == ["DEPLOYING", "DEPLOYING"]
        assert all("DEPLOYING" in card.header.value for card in builder.cards)
        assert {t.voice_status for t in lab.log.takes()} == {"DEPLOYING"}


# --- what the notebooks print ------------------------------------------------------------------------
def test_after_an_interrupt_the_bar_counts_what_the_result_holds(capsys):
    """Ctrl-C while requests are in flight: they finish and are kept, and the bar counts them too."""
    import re
    import signal

    import tqdm.auto  # noqa: F401 - imported now, so that the signal lands inside the run

    from cosyvoice_lab.lab.runner import run_tasks

    def task(i):
        return lambda: (time.sleep(0.3), i)[1]

    timer = threading.Timer(0.45, signal.raise_signal, args=(signal.SIGINT,))
    timer.start()
    out = run_tasks([task(i) for i in range(20)], concurrency=2, desc="compare x", progress=True, reused=3)
    assert out.interrupted and 2 <= out.done < 20
    shown = re.findall(r"compare x:.*?(\d+)/(\d+)", capsys.readouterr().err)[-1]
    assert shown == (str(3 + out.done), "23")  # the warning of lab.compare says the same figures


def test_one_model_order_everywhere(lab):
    """Pivots, the grid, the board and the builder's columns: plus before flash, as in the catalog."""
    comparison = lab.compare(
        ["a deep, slow elderly male voice"], target_models=[FLASH, PLUS], repeats=1, preview_text=PREVIEW
    )
    assert comparison.grid.models == (PLUS, FLASH) == catalog.model_order([FLASH, PLUS, FLASH])
    assert list(comparison.pivot().columns) == [PLUS, FLASH]
    assert list(comparison.pivot(values="m_median_f0_hz").columns) == [PLUS, FLASH]
    assert list(comparison.df["target_model"]) == [PLUS, FLASH]
    assert ComparisonBoard(comparison).models == [PLUS, FLASH]


def test_compare_problems_are_said_once_not_once_per_model(lab):
    with pytest.raises(ValidationError) as info:
        lab.compare(["x" * 600, "a fine prompt"], repeats=1)
    assert len(info.value.problems) == 1
    assert str(info.value.problems[0]).startswith("prompt 0 × both models: voice_prompt")
    with pytest.raises(ValidationError) as info:
        lab.compare(["x" * 600], target_models=[FLASH], repeats=1)
    assert str(info.value.problems[0]).startswith(f"prompt 0 × {FLASH}: voice_prompt")


def test_free_text_continues_the_prompt_as_a_sentence(lab):
    b = PromptBuilder(lab, preset="news_anchor")
    b.free_text.value = "with a slight rasp"
    assert b.prompt.value.endswith("broadcasts, with a slight rasp.") and ". with" not in b.prompt.value
    b.free_text.value = "Slight smile in the voice."
    assert b.prompt.value.endswith(". Slight smile in the voice.")


def test_board_status_is_plain_text(lab, comparison):
    board = ComparisonBoard(comparison, seed=3)
    board.blind_toggle.value = True
    assert board.status.value.startswith(f"blind session {board.session.session_id}: 0/")
    assert "seed" not in board.status.value, "the seed and the take ids uncover the labels"
    assert "<" not in board.status.value
