"""The report worth sending (views/report.py, log/export.py): grouped by experiment, then prompt ×
model, with the Evidence and plots on top; compressed audio; readable; escaped; fits the window in
Debian's headless chromium at desktop and phone widths."""

import base64
import os
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from browser import CHROMIUM, launch

from cosyvoice_lab import Lab
from cosyvoice_lab.audio import Audio
from cosyvoice_lab.views import report as reports

PLUS, FLASH = "cosyvoice-v3.5-plus", "cosyvoice-v3.5-flash"
HOSTILE = '<script>window.__pwned = 1</script>"\'><img src=x onerror="window.__pwned = 2">'
PROMPTS = [
    "A calm, deep, slow elderly male narrator",
    "A bright, fast, cheerful young woman " + HOSTILE,
    "A friendly young man with a clear voice, relaxed and conversational, who reads long stories aloud "
    "for a podcast about maps, myths, lighthouses and the sea, with a warm and unhurried delivery " * 2,
]
PREVIEW = "Once upon a time, in a village by the sea, there lived a lighthouse keeper who never slept."


class Page(HTMLParser):
    """The elements (tag, attrs) and the text of a page, in order."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.texts: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.texts.append(data)

    def all(self, tag: str) -> list[dict]:
        return [attrs for t, attrs in self.elements if t == tag]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A lab folder filled as the notebooks fill theirs: a two-model compare, a one-model sweep."""
    lab = Lab(
        tmp_path_factory.mktemp("lab"),
        backend="offline",
        progress=False,
        model_profiles={"*": {"design_latency": 0}},
    )
    compared = lab.compare(
        PROMPTS, target_models=[PLUS, FLASH], repeats=2, preview_text=PREVIEW, experiment="models " + HOSTILE
    )
    lab.compare(
        PROMPTS[:1], target_models=[FLASH], repeats=1, preview_text="Welcome back to the show.", experiment="sweep"
    )
    first = compared.takes[0]
    lab.log.rate(first.take_id, 4)
    lab.log.note(first.take_id, "note " + HOSTILE)
    lab.log.tag(first.take_id, "tag<b>x</b>")
    return lab


@pytest.fixture(scope="module")
def report(lab, tmp_path_factory):
    return reports.report(lab, tmp_path_factory.mktemp("out") / "report.html")


def sections(page: str) -> list[str]:
    return re.split(r'<section id="experiment-\d+"', page)[1:]


def test_experiments_come_in_order_each_with_evidence_and_plots_before_its_takes(lab, report):
    page = report.read_text()
    models, sweep = sections(page)
    assert "models &lt;script&gt;" in models.split("</h2>")[0] and "<h2>sweep</h2>" in sweep
    # the two-model experiment opens with its Evidence and plots, then its prompts
    evidence, plots, first_table = (
        models.index("<b>Evidence</b>"),
        models.index("data:image/png;base64,"),
        models.index('<table class="takes">'),
    )
    assert evidence < plots < first_table
    assert "v3.5-flash vs v3.5-plus: pitch" in models
    assert "<b>Evidence</b>" not in sweep  # one model: nothing to compare
    # prompt by prompt, in the order given, numbered as the plots number them
    headings = re.findall(r'<details class="prompt"><summary>(\d+)\. ', models)
    assert headings == ["0", "1", "2"]
    assert re.findall(r'<span class="count">· (\d+/\d+) takes ok</span>', models) == ["4/4"] * 3
    for block in models.split('<details class="prompt">')[1:]:
        rows = re.findall(r'<tr id="take-[^"]+"><td data-label="model">([^<]+)</td><td data-label="repeat">(\d)', block)
        assert rows == [("v3.5-plus", "0"), ("v3.5-plus", "1"), ("v3.5-flash", "0"), ("v3.5-flash", "1")]
    assert page.count('<tr id="take-') == len(lab.log) == 13


def test_every_preview_is_embedded_as_opus_at_a_tenth_of_its_wav_and_the_wavs_stay(lab, report):
    page = Page(report.read_text())
    sources = [a["src"] for a in page.all("audio")]
    takes = [t for t in lab.log.takes() if t.audio_path]
    assert len(sources) == len(takes) == 13
    assert all(s.startswith("data:audio/ogg;base64,") for s in sources)
    opus = [base64.b64decode(s.split(",", 1)[1]) for s in sources]
    wav = sum(len(t.audio.data) for t in takes)
    assert sum(map(len, opus)) <= wav / 10
    assert all(t.audio.format == "wav" for t in takes)  # the log keeps the originals
    decoded = Audio(opus[0], "opus", 24000)
    assert decoded.duration == pytest.approx(takes[0].audio.duration, abs=0.05)
    # the whole page too: at most a tenth of the raw previews per take
    assert report.stat().st_size / len(takes) <= wav / len(takes) / 10 * 1.6  # base64 + page + evidence/plots


def test_the_report_is_readable_by_others_as_the_umask_says(lab, tmp_path):
    old = os.umask(0o022)
    try:
        assert (lab.log.export_html(tmp_path / "a.html").stat().st_mode & 0o777) == 0o644
        os.umask(0o027)
        assert (reports.report(lab, tmp_path / "b.html", experiment="sweep").stat().st_mode & 0o777) == 0o640
    finally:
        os.umask(old)


def test_hostile_text_stays_text_and_nothing_leaves_the_file(report):
    page = report.read_text()
    parsed = Page(page)
    assert not parsed.all("script")
    assert all(img["src"].startswith("data:image/png;base64,") for img in parsed.all("img"))  # the plots only
    assert not [a for _, attrs in parsed.elements for a in attrs if a.lower().startswith("on")]
    text = "".join(parsed.texts)
    assert "A bright, fast, cheerful young woman <script>window.__pwned = 1</script>" in text
    assert "note <script>" in text and "tag<b>x</b>" in text and "models <script>" in text
    assert "http://" not in page and "https://" not in page


def test_the_log_report_is_the_same_page_without_evidence_and_one_experiment_can_be_asked(lab, tmp_path):
    page = lab.log.export_html(tmp_path / "log.html").read_text()
    assert len(sections(page)) == 2 and "<b>Evidence</b>" not in page and "data:image/png" not in page
    assert page.count('src="data:audio/ogg;base64,') == 13
    one = reports.report(lab, tmp_path / "one.html", experiment="sweep").read_text()
    assert len(sections(one)) == 1 and one.count('<tr id="take-') == 1


def test_the_cli_html_export_is_the_report_with_evidence(lab, tmp_path):
    out = tmp_path / "cli.html"
    env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "cosyvoice_lab.cli", "log", "export", "--folder", str(lab.log.folder), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert "<b>Evidence</b>" in page and page.count("<audio") == 13


def test_ratings_from_listening_rounds_reach_the_evidence(lab, tmp_path):
    for take in lab.log.takes(experiment="models " + HOSTILE, status="ok"):
        lab.log.ratings.add(take.take_id, 5 if take.target_model == FLASH else 2, rater="ann")
    page = reports.report(lab, tmp_path / "rated.html").read_text()
    assert "preference rating" in page.split('<table class="takes">')[0]


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM}")
@pytest.mark.parametrize("width", [1280, 390])
def test_the_report_fits_the_window_plays_and_runs_nothing_in_headless_chromium(report, tmp_path, width):
    from playwright.sync_api import sync_playwright

    requests, dialogs = [], []
    with sync_playwright() as p:
        browser = launch(p, autoplay=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(report.as_uri())
            # issue 26, item 13: the answer first; the takes folded, prompt by prompt, until asked for
            folded = page.evaluate("""() => ({height: document.documentElement.scrollHeight,
                closed: [...document.querySelectorAll('details.prompt')].every(d => !d.open),
                answer: document.querySelector('section.experiment .scroll').getBoundingClientRect().top})""")
            page.evaluate("() => document.querySelectorAll('details.prompt').forEach(d => { d.open = true; })")
            unfolded = page.evaluate("() => document.documentElement.scrollHeight")
            widths = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            played = page.evaluate("""() => { const a = document.querySelector('audio');
                return new Promise((ok, no) => { a.onerror = () => no('cannot decode ' + a.src.slice(0, 30));
                    a.onloadedmetadata = () => a.play().then(() => ok([a.readyState, a.duration, a.paused]), no);
                    a.load(); }); }""")
            durations = page.evaluate("""() => Promise.all([...document.querySelectorAll('audio')].map(a =>
                a.readyState >= 1 ? a.duration : new Promise(ok => { a.onloadedmetadata = () => ok(a.duration);
                                                                       a.onerror = () => ok(-1); a.load(); })))""")
            players = page.evaluate("""() => [...document.querySelectorAll('audio')].map(a => {
                const r = a.getBoundingClientRect(); return r.width > 0 && r.right <= window.innerWidth + 0.5; })""")
            pwned = page.evaluate("() => window.__pwned === undefined ? null : window.__pwned")
            page.screenshot(path=str(tmp_path / f"report-{width}.png"), full_page=False)
        finally:
            browser.close()
    assert folded["closed"] and folded["answer"] < 900, "the evidence is on the first screen"
    assert folded["height"] < unfolded, f"folded {folded['height']} px, unfolded {unfolded} px"
    scroll_width, client_width = widths
    assert scroll_width <= client_width, f"the page is {scroll_width}px wide in a {client_width}px window"
    ready, duration, paused = played
    assert ready >= 1 and duration > 1 and not paused  # the first player plays its Opus preview
    assert len(durations) == 13 and min(durations) > 1
    if width <= 640:
        assert all(players), "on a phone every player lies inside the window"
    assert pwned is None and not dialogs
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    assert (tmp_path / f"report-{width}.png").stat().st_size > 0


def test_compressing_keeps_the_recording_and_refuses_what_opus_cannot_encode():
    import numpy as np

    t = np.arange(3 * 16000) / 16000
    speechlike = 0.3 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    wav = Audio.from_numpy(speechlike, 16000)
    small = wav.compressed(24)
    assert small.format == "opus" and small.sample_rate == 16000
    assert 18 <= len(small.data) * 8 / small.duration / 1000 <= 30  # about the bit rate asked for
    assert small.duration == pytest.approx(wav.duration, abs=0.03)
    assert small.compressed() is small  # already Opus
    odd = Audio.from_numpy(speechlike, 22050)
    assert odd.compressed() is odd  # a rate Opus does not take: shared as it is
    with pytest.raises(ValueError, match="kbps"):
        wav.compressed(2)
