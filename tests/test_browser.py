"""The widgets in a real JupyterLab, in Debian's headless chromium driven by Playwright.

Starts ``jupyter lab`` from this venv on a free port with a small notebook (a Lab on the
offline simulator, a PromptBuilder, a ComparisonBoard), runs all cells from the Run menu,
clicks Design, waits for a result card holding an ``<audio>`` element, and saves screenshots
to ``test-artifacts/`` (copied to ``docs/`` for the README).

Never downloads a browser (no ``playwright install``): ``.ci/run`` installs Debian's chromium;
without ``/usr/bin/chromium`` the test is skipped and says so.
"""

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from browser import CHROMIUM, MISSING, launch

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
DOCS = REPO / "docs"
NOTEBOOK = "widgets.ipynb"
FIRST_NOTEBOOK = "01_design_a_voice.ipynb"
CELLS = [
    """from cosyvoice_lab import Lab
from cosyvoice_lab.widgets import ComparisonBoard, PromptBuilder

lab = Lab("lab", backend="offline", progress=False)
lab""",
    """builder = PromptBuilder(lab, preset="audiobook_narrator")
builder.model.value = "both"   # one candidate per model: two columns, side by side
builder.candidates.value = 1
builder""",
    """comparison = lab.compare(["A calm, deep, slow elderly male narrator",
                          "A bright, fast, cheerful young woman"],
                         repeats=1, preview_text="Hello there, this is a short preview of the voice.",
                         experiment="browser-test")
for take, stars in zip(comparison.takes, (5, 3, 4, 2)):
    lab.log.rate(take.take_id, stars)
lab.log.choose(comparison.takes[0].take_id)
ComparisonBoard(comparison)""",
    """lab.audition(comparison.takes[:3], "Good evening. Here is the story I promised you.")""",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


# Issue 26, items 4 and 5, as a user meets them: a PromptBuilder in English, a design, then a clean-up
# that deletes the voice; the test types the long free text in the browser afterwards.
NARROW_CELLS = [
    """from cosyvoice_lab import Lab
from cosyvoice_lab.widgets import PromptBuilder
lab = Lab("lab-{name}", backend="offline", progress=False)
builder = PromptBuilder(lab, preset="customer_service", language="en")
builder.model.value, builder.candidates.value = "cosyvoice-v3.5-flash", 1
builder""",
    """builder.design_button.click()
assert builder.wait(120) and builder.cards, builder.status.value""",
    """lab.cleanup(dry_run=False)  # deletes every voice not kept: the card's too""",
]


def _write_notebook(folder: Path, name: str = NOTEBOOK, cells: list[str] = CELLS) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, folder / name)


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory):
    """A JupyterLab server on a free port serving a tmp folder; killed (with its kernels) at the end."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{MISSING}; this test never downloads a browser")
    root = tmp_path_factory.mktemp("jupyter")
    (root / "home").mkdir()
    _write_notebook(root)
    for width in (1400, 390):
        _write_notebook(root, f"narrow-{width}.ipynb", [c.replace("{name}", str(width)) for c in NARROW_CELLS])
    shutil.copy(REPO / "notebooks" / FIRST_NOTEBOOK, root / FIRST_NOTEBOOK)  # the newcomer's first stop
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DASHSCOPE_API_KEY", "ALIBABA_CLOUD_PROFILE")}
    env["HOME"] = str(root / "home")  # no ~/.alibabacloud/credentials, no user workspace state
    cmd = [
        str(Path(sys.executable).parent / "jupyter"),
        "lab",
        "--no-browser",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ServerApp.token=",
        "--ServerApp.password=",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.port_retries=0",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(root / "jupyter.log", "wb")  # noqa: SIM115 - the server writes to it until the fixture ends
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _get(f"{url}/api/status")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab did not start:\n{(root / 'jupyter.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        _stop(proc, url)
        log.close()


def _stop(proc: subprocess.Popen, url: str) -> None:
    try:  # shut the kernels down first, so none outlives the server
        for kernel in json.loads(_get(f"{url}/api/kernels")[1]):
            req = urllib.request.Request(f"{url}/api/kernels/{kernel['id']}", method="DELETE")
            urllib.request.urlopen(req, timeout=10).close()
    except OSError:
        pass
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _kernel_ready(page, timeout: float = 60.0) -> None:
    """Wait for an idle kernel, accepting the "Select Kernel" dialog (python3 preselected) if shown."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dialog = page.locator(".jp-Dialog")
        if dialog.count() and dialog.first.is_visible():
            dialog.locator("button.jp-mod-accept").first.click()
        elif page.get_by_text("| Idle").count():
            return
        page.wait_for_timeout(250)
    raise AssertionError("the notebook's kernel did not become idle")


@contextlib.contextmanager
def _notebook_run_all(jupyter_url: str, notebook: str, width: int = 1400):
    """Open ``notebook`` in JupyterLab in headless chromium, wait for its kernel, choose Run ▸ Run
    All Cells, and yield the notebook's panel (a locator); ``expect`` waits on what the cells produce."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": width, "height": 2000})
            page.goto(f"{jupyter_url}/lab/tree/{notebook}?reset")
            panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
            if width < 600:  # a phone: fold the file browser away, as a user would, so the notebook has the width
                page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").first.click()
            expect(panel.locator(".jp-Cell").first).to_be_visible(timeout=60_000)
            _kernel_ready(page)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator("li[data-command='runmenu:run-all']").click()
            yield panel
        finally:
            browser.close()


def _save(locator, name: str) -> Path:
    """Screenshot into test-artifacts/; with COSYVOICE_LAB_UPDATE_DOCS=1 also into docs/ (the
    README's pictures), so an ordinary test run leaves the working tree clean."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    locator.screenshot(path=str(path))
    if os.environ.get("COSYVOICE_LAB_UPDATE_DOCS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copy(path, DOCS / name)
    return path


def test_prompt_builder_designs_in_jupyterlab(jupyter_lab):
    from playwright.sync_api import expect

    with _notebook_run_all(jupyter_lab, NOTEBOOK) as panel:
        builder = panel.locator(".cosyvoice-prompt-builder")
        design = builder.locator("button", has_text="Design")
        expect(design).to_be_enabled(timeout=60_000)
        design.click()
        card_audio = builder.locator(".cosyvoice-take-card audio")
        expect(card_audio).to_have_count(2, timeout=60_000)  # 2 candidates arrived as cards
        expect(builder.locator(".widget-label", has_text="2/2 done: 2 ok")).to_be_visible(timeout=30_000)
        expect(design).to_be_enabled()
        plus, flash = (b.bounding_box() for b in builder.locator(".cosyvoice-model-column").all())
        assert abs(plus["y"] - flash["y"]) < 2 and flash["x"] >= plus["x"] + plus["width"] - 1  # side by side
        builder.scroll_into_view_if_needed()
        shot = _save(builder, "promptbuilder.png")
        _played_to_the_end_is_heard(builder.locator(".cosyvoice-take-card").first)

        board = panel.locator(".cosyvoice-comparison-board")
        expect(board.locator(".cosyvoice-take-card audio")).to_have_count(4, timeout=60_000)
        _players_show_their_length_unplayed(board.locator("audio"))
        board.scroll_into_view_if_needed()
        board_shot = _save(board, "comparison.png")

        audition = panel.locator(".cosyvoice-audition")
        expect(audition.locator("audio")).to_have_count(3, timeout=60_000)
        audition.scroll_into_view_if_needed()
        _save(audition, "audition.png")
        _each_player_inside_its_own_cell(audition)
        assert (
            not panel.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            .filter(has_text="Traceback")
            .count()
        )
        assert not panel.locator(".cosyvoice-errors", has_text="⚠").count()  # no widget callback failed
    assert shot.stat().st_size > 10_000 and board_shot.stat().st_size > 10_000


def _players_show_their_length_unplayed(players) -> None:
    """preload="metadata": every player knows its duration before anyone clicks (not 0:00 / 0:00)."""
    durations = players.evaluate_all(
        """els => Promise.all(els.map(a => a.readyState >= 1 ? a.duration : new Promise(done => {
               a.addEventListener('loadedmetadata', () => done(a.duration), {once: true});
               setTimeout(() => done(a.duration), 10000); })))"""
    )
    assert durations and all(d and d > 0.5 for d in durations), durations
    assert all(p.get_attribute("preload") == "metadata" for p in players.all())


def _played_to_the_end_is_heard(card) -> None:
    """Play a card's preview to its end (muted, from just before the end): the card says heard."""
    from playwright.sync_api import expect

    listened = card.locator("button", has_text="listened")
    expect(listened).to_have_text("▶ listened")
    card.locator("audio").evaluate(
        "a => { a.muted = true; a.currentTime = Math.max(0, a.duration - 0.3); return a.play(); }"
    )
    expect(listened).to_have_text("✓ listened", timeout=20_000)
    expect(card.locator(".widget-html", has_text="heard").first).to_be_visible()


def _each_player_inside_its_own_cell(audition) -> None:
    """Notebook 04's audition: no player spills over its neighbour."""
    boxes = [c.locator("audio").bounding_box() for c in audition.locator(".cosyvoice-audition-cell").all()]
    cells = [c.bounding_box() for c in audition.locator(".cosyvoice-audition-cell").all()]
    assert len(boxes) == 3
    for box, cell in zip(boxes, cells, strict=True):
        assert cell["x"] - 1 <= box["x"] and box["x"] + box["width"] <= cell["x"] + cell["width"] + 1
    for a, b in itertools.pairwise(boxes):
        assert a["x"] + a["width"] <= b["x"] or a["y"] + a["height"] <= b["y"]  # no overlap


@pytest.mark.parametrize("width", [1400, 390])
def test_builder_counts_in_the_chosen_language_and_its_card_shows_a_deleted_voice(jupyter_lab, width):
    """Issue 26, items 4 and 5, in chromium at desktop and phone width: 600 characters typed into
    the English builder's free text are counted and named as the English prompt; after a clean-up
    deleted the designed voice, its card says DELETED and cannot be kept, before anyone clicks."""
    from playwright.sync_api import expect

    with _notebook_run_all(jupyter_lab, f"narrow-{width}.ipynb", width) as panel:
        last_prompt = panel.locator(".jp-CodeCell .jp-InputPrompt").last
        expect(last_prompt).to_have_text("[3]:", timeout=180_000)
        assert not panel.locator(".jp-OutputArea-output", has_text="Traceback").count()
        builder = panel.locator(".cosyvoice-prompt-builder")
        card = builder.locator(".cosyvoice-take-card").first
        expect(card.locator(".widget-html", has_text="DELETED").first).to_be_visible(timeout=30_000)
        expect(card.locator("button").filter(has_text=re.compile(r"^\s*keep$"))).to_be_disabled()
        free_text = builder.locator(".widget-text", has_text="free text").locator("input")
        free_text.fill("x" * 600)
        free_text.press("Enter")
        counter = builder.locator(".widget-html", has_text=" · preview ").first
        # the counter showed the builder's own prompt (166/500) before the typed text reached it
        expect(counter).to_contain_text(re.compile(r"prompt (6\d\d|[7-9]\d\d|\d{4,})/500"), timeout=10_000)
        n = int(counter.inner_text().split("prompt ", 1)[1].split("/", 1)[0])
        assert n > 600, counter.inner_text()
        expect(builder.locator(".widget-html", has_text=f"the en prompt is {n} characters").first).to_be_visible()
        assert not builder.locator(".widget-html", has_text="the zh prompt").count()
        expect(builder.locator("button", has_text="Design")).to_be_disabled()
        box = builder.locator("textarea").first.input_value()
        assert "x" * 600 in box, "the prompt box shows the rendering past the limit"
        builder.scroll_into_view_if_needed()
        _save(builder, f"promptbuilder-{width}.png")
        overflow = builder.evaluate("b => b.scrollWidth - b.clientWidth")
        assert overflow <= 1, f"the builder runs {overflow} px off the side at {width} px"


def test_first_tutorial_runs_through_in_jupyterlab(jupyter_lab):
    """The newcomer's path: open notebook 01 in JupyterLab, Run All, and it runs through offline."""
    from playwright.sync_api import expect

    with _notebook_run_all(jupyter_lab, FIRST_NOTEBOOK) as panel:
        # the notebook's own count of code cells: JupyterLab renders only the cells near the view
        code_cells = sum(c.cell_type == "code" for c in nbformat.read(REPO / "notebooks" / FIRST_NOTEBOOK, 4).cells)
        last_prompt = panel.locator(".jp-CodeCell .jp-InputPrompt").last
        expect(last_prompt).to_have_text(f"[{code_cells}]:", timeout=120_000)
        assert not panel.locator(".jp-OutputArea-output", has_text="Traceback").count()
        assert panel.locator(".jp-OutputArea-output", has_text="OFFLINE simulator").count() >= 1
        assert panel.locator(".jp-OutputArea-output audio").count() >= 2
