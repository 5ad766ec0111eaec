"""The listening panel in Debian's headless chromium, driven by Playwright: two raters at once in
separate browser contexts, one of them on a phone-width screen who closes the tab halfway and
comes back. Never downloads a browser (no ``playwright install``); skipped without
``/usr/bin/chromium``. Screenshots land in ``test-artifacts/``."""

from pathlib import Path

import pytest
from browser import CHROMIUM, MISSING, launch
from labs import compared_lab

from cosyvoice_lab.panel import start

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PROMPTS = ["A calm middle-aged man with a warm, deep voice.", "A bright young woman who speaks quickly and cheerfully."]
PLUS, FLASH = "cosyvoice-v3.5-plus", "cosyvoice-v3.5-flash"
EXPERIMENT = "panel-browser"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(MISSING)
    return compared_lab(tmp_path_factory.mktemp("lab"), PROMPTS, preview_text="Hello there.", experiment=EXPERIMENT)


def _join(page, url: str, name: str):
    from playwright.sync_api import expect

    page.goto(url)
    page.fill("#rater", name)
    page.click("#start")
    expect(page.locator("li.item")).to_have_count(8)
    expect(page.locator("#join")).to_be_hidden()


def _rate(page, index: int, stars: int):
    from playwright.sync_api import expect

    item = page.locator("li.item").nth(index)
    item.locator(f"button[data-rating='{stars}']").click()
    expect(item).to_have_class("item rated")
    expect(item.locator(".saved")).to_have_text("saved")


def _plan(lab, panel, page, plus: int, flash: int) -> list[int]:
    """The stars this rater gives each item on the page, by the model the organiser knows is behind it."""
    ids = page.locator("li.item").evaluate_all("items => items.map(li => li.dataset.item)")
    takes = {item.item_id: item.take_id for s in panel.round.sessions() for item in s.items}
    return [plus if lab.log.get(takes[i]).target_model == PLUS else flash for i in ids]


def _plays(page, index: int) -> float:
    """The duration the browser reads from the item's preview (its audio fetched and decoded)."""
    audio = page.locator("li.item audio").nth(index)
    return audio.evaluate(
        "a => new Promise(done => { a.onloadedmetadata = () => done(a.duration); a.onerror = () => done(-1);"
        " a.preload = 'auto'; a.load(); })"
    )


def test_two_raters_at_once_finish_and_one_resumes_after_closing_the_tab(lab):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with start(lab.log, EXPERIMENT, port=0) as panel, sync_playwright() as p:
        browser = launch(p, autoplay=True)
        try:
            desk = browser.new_context(viewport={"width": 1280, "height": 900})
            phone = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
            ana, bo = desk.new_page(), phone.new_page()
            _join(ana, panel.url, "ana")
            _join(bo, panel.url, "bo")
            assert _plays(ana, 0) > 0 and _plays(bo, 7) > 0
            # the phone: one column, nothing wider than the screen
            assert bo.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            bo.screenshot(path=str(ARTIFACTS / "panel-phone.png"), full_page=True)
            # ana prefers plus by 4 points, bo by 2: flash - plus = -3 once both are in the evidence
            ana_stars, bo_stars = _plan(lab, panel, ana, 5, 1), _plan(lab, panel, bo, 4, 2)
            for i in range(4):  # both rate, interleaved
                _rate(ana, i, ana_stars[i])
                _rate(bo, i, bo_stars[i])
            expect(bo.locator("#progress")).to_have_text("4 of 8 rated")
            bo.close()  # the tab is closed halfway: nothing rated is lost
            assert panel.progress().set_index("rater")["rated"].to_dict() == {"ana": 4, "bo": 4}
            bo = phone.new_page()
            _join(bo, panel.url, "bo")
            expect(bo.locator("li.item.rated")).to_have_count(4)
            expect(bo.locator("#progress")).to_have_text("4 of 8 rated")
            for i in range(4, 8):
                _rate(ana, i, ana_stars[i])
                _rate(bo, i, bo_stars[i])
            for page in (ana, bo):
                expect(page.locator("#done")).to_be_visible()
            ana.screenshot(path=str(ARTIFACTS / "panel-desktop.png"), full_page=True)
        finally:
            browser.close()
        assert panel.progress()[["rater", "rated", "total"]].to_dict("records") == [
            {"rater": "ana", "rated": 8, "total": 8},
            {"rater": "bo", "rated": 8, "total": 8},
        ]
        ev = panel.evidence(variability=False)
    frame = lab.log.ratings.to_dataframe(EXPERIMENT, kind="preference")
    assert frame.groupby("rater").size().to_dict() == {"ana": 8, "bo": 8}
    rows = ev.table[ev.table["measure"] == "blind preference rating"]
    assert len(rows) == 1 and rows.iloc[0]["n"] == 8  # one score per take, from both raters
    assert rows.iloc[0]["estimate"] == pytest.approx(-3)  # ana's alone: -4; bo's alone: -2


def test_a_double_click_saves_one_rating_and_the_page_shows_what_the_log_keeps(lab):
    """Issue 23, item 9: two near-simultaneous ratings of one item (a double click on two stars)
    left the page showing one and the log holding the other. The buttons wait for the answer."""
    from playwright.sync_api import expect, sync_playwright

    with start(lab.log, EXPERIMENT, port=0) as panel, sync_playwright() as p:
        browser = launch(p, autoplay=True)
        try:
            page = browser.new_context(viewport={"width": 390, "height": 800}).new_page()
            _join(page, panel.url, "cy")
            item = page.locator("li.item").nth(0)
            click = "li.querySelector('[data-rating=\"{}\"]').click();"
            item.evaluate("li => { " + click.format(2) + " " + click.format(4) + " }")
            expect(item.locator(".saved")).to_have_text("saved")
            shown = item.locator("button[aria-pressed=true]").get_attribute("data-rating")
            expect(item.locator("button").first).to_be_enabled()
        finally:
            browser.close()
    [(sent,)] = lab.log.db.query("SELECT count(*) FROM ratings WHERE rater = 'cy'")
    assert sent == 1, "the second click of a double click sends nothing"
    kept = lab.log.ratings.to_dataframe(EXPERIMENT, kind="preference")
    assert str(int(kept[kept["rater"] == "cy"]["rating"].iloc[-1])) == shown


def _play_to_end(li) -> None:
    """Play every player of an item to its end (fast: the page only waits for ``ended``)."""
    li.locator("audio").evaluate_all(
        "players => Promise.all(players.map(a => new Promise(done => {"
        " a.addEventListener('ended', () => done(true), {once: true}); a.playbackRate = 8; a.play(); })))"
    )


def test_an_invited_rater_answers_a_pair_round_only_after_playing_each_pair_then_sees_the_thank_you_page(lab):
    """Issue 24 at desktop width and at 390 px: the personal link opens the round without a name
    form; the answer buttons wait until both voices were played to the end; the thank-you page
    counts the answers and names no model."""
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with start(lab.log, EXPERIMENT, kind="pair", port=0, open_enrolment=False, must_play=True, thank_you=True) as panel:
        links = {"ana": panel.invite("ana"), "bo": panel.invite("bo")}
        with sync_playwright() as p:
            browser = launch(p, autoplay=True)
            try:
                desk = browser.new_context(viewport={"width": 1280, "height": 900})
                phone = browser.new_context(viewport={"width": 390, "height": 800}, is_mobile=True, has_touch=True)
                for name, context in (("ana", desk), ("bo", phone)):
                    page = context.new_page()
                    page.goto(links[name])
                    expect(page.locator("li.item")).to_have_count(8)
                    expect(page.locator("#join")).to_be_hidden()
                    expect(page.locator("#enrolment")).to_contain_text("invited raters only")
                    first = page.locator("li.item").nth(0)
                    expect(first.locator("audio")).to_have_count(2)
                    expect(first.locator("button[data-choice='first']")).to_be_disabled()
                    expect(first.locator(".wait")).to_have_text("Play both voices to the end to answer.")
                    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
                    for i in range(8):
                        li = page.locator("li.item").nth(i)
                        _play_to_end(li)
                        choice = ("first", "second", "none")[i % 3]
                        li.locator(f"button[data-choice='{choice}']").click()
                        expect(li).to_have_class("item rated")
                        expect(li.locator("button[aria-pressed=true]")).to_have_attribute("data-choice", choice)
                    expect(page.locator("#progress")).to_have_text("8 of 8 answered")
                    expect(page.locator("#thanks")).to_be_visible()
                    expect(page.locator("#thanks-count")).to_contain_text("You answered 8 items")
                    text = page.locator("body").inner_text().lower()
                    assert "plus" not in text and "flash" not in text and "v3.5" not in text
                    page.screenshot(path=str(ARTIFACTS / f"panel-pair-{name}.png"), full_page=True)
            finally:
                browser.close()
        choices = panel.choices()
    assert choices.groupby("rater").size().to_dict() == {"ana": 8, "bo": 8}
    assert int(choices["preferred"].isna().sum()) == 2 * 2  # "none" at items 3 and 6 of each rater
