"""Every HTML surface keeps hostile text inert: whatever a prompt, note, tag, id or folder name
holds (typed by someone, or carried in by a teammate's bundle) is shown as text, never as markup.

Each page is parsed with ``html.parser``; no ``<script>`` or ``<img>`` element and no ``on*``
attribute may appear (the package itself writes none, so any would have come from the data).
"""

import dataclasses
import json
import zipfile
from datetime import datetime, timezone
from html.parser import HTMLParser

import numpy as np
import pytest

from cosyvoice_lab import ExperimentLog, html
from cosyvoice_lab.audio import Audio
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import LogError
from cosyvoice_lab.log.export import report_sections
from cosyvoice_lab.service.speech import SpeechOptions, SpeechResult
from cosyvoice_lab.take import Take, Takes
from cosyvoice_lab.views.audition import Audition
from cosyvoice_lab.views.comparison import Comparison, comparison_grid
from cosyvoice_lab.views.listening import BlindSession
from cosyvoice_lab.widgets import snippets
from cosyvoice_lab.widgets.cards import error_report

SCRIPT = "<script>alert(1)</script>"
IMG = "\"'><img src=x onerror=alert(1)>"
H = SCRIPT + IMG
FOLDER = IMG  # a folder name cannot hold the "/" of "</script>"
PLUS, FLASH = "cosyvoice-v3.5-plus", "cosyvoice-v3.5-flash"
T0 = datetime(2025, 3, 1, 8, 30, tzinfo=timezone.utc)


class Page(HTMLParser):
    """The elements and the text of an HTML page."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, list]] = []
        self.texts: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, attrs))

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        self.texts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.texts)


def inert(page: str, *, shows: str | None = SCRIPT) -> Page:
    """Assert ``page`` holds no live tag from the hostile strings, and shows ``shows`` as text."""
    parsed = Page(page)
    live = [
        (tag, attrs)
        for tag, attrs in parsed.elements
        if tag in ("script", "img")
        or any(name.lower().startswith("on") and value != str(html.HEARD_SCRIPT) for name, value in attrs)
    ]  # the one handler allowed: the card player's own constant "played to the end" hook
    assert not live, f"hostile text became markup: {live}"
    if shows is not None:
        assert shows in parsed.text, "the hostile text should be shown (escaped), not dropped"
    return parsed


def tone(seed: int = 1) -> Audio:
    return Audio.from_numpy(0.2 * np.sin(np.arange(2400) / (4 + seed)), 24000)


def hostile_take(tmp_path, i: int = 0, **changes) -> Take:
    """A Take as a bundle could carry it: hostile text in every text and id field."""
    design = VoiceDesign(f"voice {i} {H}", f"preview {H}", target_model=PLUS if i % 2 == 0 else FLASH)
    base = Take(
        take_id=f"{H}-{i}",
        design=design,
        status="ok",
        experiment=f"exp {H}",
        backend="offline",
        host=f"host {H}",
        request_id=f"req {H}",
        voice_id=f"vid {H}",
        voice_status=f"DEPLOYING {H}",
        started_at=T0,
        latency_s=1.0,
        audio_path=str(tone(i).save(tmp_path)),
        audio_format="wav",
        audio_sample_rate=24000,
        metrics={"median_f0_hz": 123.0, f"m{i}": H},
        parent_take_id=f"p {H}",
        repeat=H,
        rating=4,
        chosen=True,
        tags=(f"tag {H}",),
        notes=f"notes {H}",
        played=True,
    )
    return dataclasses.replace(base, **changes)


def failed_take(tmp_path, i: int = 1) -> Take:
    return hostile_take(
        tmp_path,
        i,
        status="failed",
        error_code=f"code {H}",
        error_message=f"message {H}",
        voice_id=None,
        audio_path=None,
    )


def populate(log: ExperimentLog) -> list[Take]:
    """Takes written through the log's public API, hostile text in every field it accepts."""
    takes = []
    for i, model in enumerate((PLUS, FLASH)):
        design = VoiceDesign(f"voice {H}", f"preview {H}", target_model=model)
        pending = log.table.start(design, backend="offline", experiment=f"exp {H}", cell=f"cell {H}", repeat=0)
        log.table.finish(
            pending.take_id,
            voice_id=f"vid {i} {H}",
            audio=tone(i),
            voice_status=f"DEPLOYING {H}",
            metrics={"median_f0_hz": 123.0},
        )
        log.tag(pending.take_id, f"tag {H}")
        log.note(pending.take_id, f"notes {H}")
        log.rate(pending.take_id, 4)
        takes.append(log.choose(pending.take_id))
    failed = log.table.start(
        VoiceDesign(f"voice {H}", f"preview {H}", target_model=PLUS), backend="offline", experiment=f"exp {H}", repeat=1
    )
    takes.append(log.table.fail(failed.take_id, error_code=f"code {H}", error_message=f"message {H}"))
    return takes


@pytest.fixture
def log(tmp_path):
    with ExperimentLog(tmp_path / FOLDER) as opened:
        populate(opened)
        yield opened


# --- core and views -----------------------------------------------------------------------------
def test_take_and_takes_reprs_show_hostile_text_as_text(tmp_path):
    ok, failed = hostile_take(tmp_path), failed_take(tmp_path)
    missing = hostile_take(tmp_path, 2, audio_path=str(tmp_path / FOLDER / "gone.wav"))
    for take in (ok, failed, missing):
        page = inert(take._repr_html_())
        assert f"notes {SCRIPT}" in page.text and f"tag {SCRIPT}" in page.text
    assert inert(ok._repr_html_()).text.count("★") == 4 and ok._repr_html_().count("<audio") == 1
    assert "message " + SCRIPT in inert(failed._repr_html_()).text
    assert "missing" in inert(missing._repr_html_()).text
    grid = Takes([ok, failed, missing])._repr_html_()
    inert(grid)
    assert grid.count("<audio") == 1 and grid.count('cosyvoice-take"') == 3


def test_audio_player_label_and_helpers_escape():
    for page in (tone().html(label=H), html.player(tone(), label=H)):
        parsed = inert(page, shows=None)
        assert page.count("<audio") == 1 and 'preload="metadata"' in page
        assert dict(parsed.elements[0][1])["title"] == H
    inert(html.escape(H))
    inert(snippets.bold(H))
    inert(snippets.numbered_prompt(0, H))
    inert(snippets.counters(H, over=True))
    inert(snippets.check_messages([H], [H]))
    inert(snippets.blind_status(H, 1, 0, 2, [H]))
    inert(error_report(ValueError(H), context=H))


def test_comparison_grid_escapes_prompts_models_ids_and_repeats(log, tmp_path):
    comparison = Comparison(log, f"exp {H}", [f"voice {H}"], (PLUS, FLASH))
    page = comparison.html()
    inert(page)
    assert page.count("<audio") == 2 and "code " + SCRIPT in Page(page).text
    ok, failed = hostile_take(tmp_path), failed_take(tmp_path)
    grid = comparison_grid(H, [H, H], [(H, [[ok], [failed]]), (H, [[], []])])
    assert "r" + SCRIPT in inert(grid).text and grid.count("<audio") == 1


def test_audition_escapes_the_script_prompts_models_voice_ids_and_errors(tmp_path):
    ok, failed = hostile_take(tmp_path), failed_take(tmp_path)
    said = SpeechResult(
        audio=tone(),
        text=H,
        voice_id=f"vid {H}",
        model=PLUS,
        options=SpeechOptions(),
        characters=10,
        cost_cny=0.001,
        request_id=H,
        task_id=H,
        sentences=[H],
        first_chunk_latency_s=0.1,
        latency_s=0.5,
    )
    page = Audition(script=H, takes=[ok, failed], results=[said, RuntimeError(H)])._repr_html_()
    parsed = inert(page)
    assert "voice 1 " + SCRIPT in parsed.text and page.count("<audio") == 1 and "10 chars" in parsed.text
    [player] = [dict(attrs) for tag, attrs in parsed.elements if tag == "audio"]
    assert player["title"] == f"vid {H}"


def test_blind_reveal_summary_escapes_models_prompts_and_take_ids(tmp_path):
    takes = [hostile_take(tmp_path, i, design=VoiceDesign(H, "hi", target_model=f"{H} {i}")) for i in range(3)]
    session = BlindSession.start([t.take_id for t in takes], seed=1, session_id=H)
    session.rate(takes[0].take_id, 5)
    page = session.reveal(takes).html()
    assert SCRIPT + IMG[:2] in inert(page).text and "5.00 (n=1)" in page


def test_the_report_escapes_every_field_and_the_row_id(log, tmp_path):
    page = log.export_html(tmp_path / "report.html").read_text()
    parsed = inert(page)
    assert page.count("<audio") == 2 and FOLDER in parsed.text and "notes " + SCRIPT in parsed.text
    takes = [hostile_take(tmp_path), failed_take(tmp_path)]
    page = html.report(report_sections(takes), players={}, folder=H, generated="now", kbps=24)
    rows = [dict(attrs) for tag, attrs in inert(page).elements if tag == "tr" and dict(attrs).get("id")]
    assert [r["id"] for r in rows] == [f"take-{t.take_id}" for t in takes]


def test_a_bundle_carrying_hostile_take_ids_cannot_script_the_report(log, tmp_path):
    bundle = log.bundles.export(tmp_path / "mine.zip")
    with zipfile.ZipFile(bundle) as zf:
        parts = {name: zf.read(name) for name in zf.namelist()}
    ids = {t["take_id"]: f"{H}-{i}" for i, t in enumerate(json.loads(parts["takes.json"]))}
    text = parts["takes.json"].decode() + "\x00" + parts["annotations.json"].decode()
    for old, new in ids.items():
        text = text.replace(json.dumps(old), json.dumps(new))
    parts["takes.json"], parts["annotations.json"] = (p.encode() for p in text.split("\x00"))
    with zipfile.ZipFile(tmp_path / "theirs.zip", "w") as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    with ExperimentLog(tmp_path / "teammate") as theirs:
        try:
            theirs.bundles.merge(tmp_path / "theirs.zip")
        except LogError:
            return  # refusing such a bundle is safe too
        assert {t.take_id for t in theirs.takes()} == set(ids.values())
        page = theirs.export_html(tmp_path / "theirs.html").read_text()
        inert(page)
        assert {f"take-{i}" for i in ids.values()} <= {dict(a).get("id") for t, a in Page(page).elements}


# --- widgets and the Lab ---------------------------------------------------------------------------
@pytest.fixture
def lab(tmp_path, monkeypatch):
    from cosyvoice_lab import Lab

    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    lab = Lab(tmp_path / FOLDER, backend="offline", progress=False, requests_per_second=None)
    populate(lab.log)
    return lab


def html_values(widget) -> list[str]:
    """The value of every HTML widget inside ``widget``."""
    import ipywidgets as widgets

    found = [widget.value] if isinstance(widget, widgets.HTML) else []
    for child in getattr(widget, "children", ()):
        found += html_values(child)
    return found


def test_cards_escape_the_header_details_player_and_errors(lab):
    from cosyvoice_lab.widgets import TakeCard

    ok, _, failed = lab.log.takes()
    for take in (ok, failed):
        for blind in (False, True):
            card = TakeCard(take, lab.log, label=H, blind=blind)
            card.message.report(RuntimeError(H), H)
            card.message.report(RuntimeError(H), H)  # a second error appends, still inert
            for value in html_values(card):
                inert(value, shows=None)
            assert SCRIPT in Page(card.header.value).text and card.message.value.count("<details>") == 2
    card = TakeCard(failed, lab.log)
    assert "message " + SCRIPT in inert(card.details.value).text


def test_log_browser_table_and_detail_escape_every_field(lab):
    from cosyvoice_lab.widgets import LogBrowser

    browser = LogBrowser(lab)
    take_id = lab.log.takes()[0].take_id
    browser.select(take_id)
    assert "notes " + SCRIPT in inert(browser.detail.value).text
    assert "tag " + SCRIPT in inert(browser.table.value).text
    for value in html_values(browser):
        inert(value, shows=None)


def test_board_builder_and_lab_repr_escape_user_text(lab):
    from cosyvoice_lab.widgets import ComparisonBoard, PromptBuilder

    board = ComparisonBoard(lab.log.takes(), log=lab.log)
    board.start_blind(seed=1)
    board.reveal()
    for value in html_values(board):
        inert(value, shows=None)
    builder = PromptBuilder(lab)
    builder.prefix.value = H
    builder.prompt.value = H
    assert SCRIPT in inert(builder.messages.value).text
    assert FOLDER in inert(lab._repr_html_(), shows=None).text
