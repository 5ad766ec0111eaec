"""Size of the shareable HTML report per take, against the previews the old report embedded.

Run:  .venv/bin/python benchmarks/report_size.py [--folder DIR] [--screenshots DIR]

Fills a lab folder the way notebooks 02 and 03 fill theirs, on the offline simulator (the
plus-vs-flash compare: 3 prompts × 2 models × 2 repeats; the pitch sweep: 4 prompts × 1 model ×
2 repeats; a flaky compare with half the requests failing), unless ``--folder`` names a lab folder
that already holds takes. Then writes ``Lab.report`` and prints, per take with a preview:
  * old: the bytes the old report embedded for it, the original WAV as a base64 data URI (the
    old page was these plus a table row of about 1 KB: this is a lower bound of its size)
  * new: the whole new report (evidence, plots, rows and players) divided by the same takes
  * the ratio new / old (the aim: at most 0.1)
With ``--screenshots DIR`` it also opens the report in Debian's headless chromium at 1280 and
390 px, prints the page's scroll and client widths, and saves the two screenshots there.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from cosyvoice_lab import Lab, PromptSpec
from cosyvoice_lab.views.report import report as write_lab_report

PREVIEW = "Once upon a time, in a village by the sea, there lived a lighthouse keeper who never slept."
SWEEP_PREVIEW = "Welcome back to the show. Today we talk about maps, myths and the sea."
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic"]


def fill(lab: Lab) -> None:
    """The compares of notebooks 02 and 03 (their prompts, models, repeats and preview texts)."""
    prompts = [
        PromptSpec.preset("audiobook_narrator"),
        "A bright, high-pitched, cheerful voice for a cartoon character, fast and playful",
        "A friendly young man with a clear voice, relaxed and conversational, for a podcast",
    ]
    lab.compare(prompts, target_models=["cosyvoice-v3.5-plus", "cosyvoice-v3.5-flash"], repeats=2, preview_text=PREVIEW)
    host = PromptSpec.preset("podcast_host")
    sweep = [*host.variants("pitch", [None, "low", "high"]), host.replace(timbre="bright")]
    lab.compare(
        sweep, target_models=["cosyvoice-v3.5-plus"], repeats=2, experiment="pitch-sweep", preview_text=SWEEP_PREVIEW
    )
    lab.simulator.faults.seed, lab.simulator.faults.error_rate = 11, 0.5
    try:
        flaky = ["A deep, slow male voice for a lighthouse keeper", "A high, bright voice for a cheerful robot"]
        lab.compare(flaky, repeats=3, experiment="flaky")
    finally:
        lab.simulator.faults.error_rate = 0


def screenshots(report: Path, folder: Path) -> None:
    from playwright.sync_api import sync_playwright

    folder.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for width in (1280, 390):
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.goto(report.as_uri())
                sizes = page.evaluate(
                    "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
                )
                shot = folder / f"report-{width}.png"
                page.screenshot(path=str(shot))
                print(f"{width:5} px: scrollWidth {sizes[0]}, clientWidth {sizes[1]}; screenshot {shot}")
                page.close()
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, help="a lab folder to report on (default: a new one, filled)")
    parser.add_argument("--screenshots", type=Path, help="save headless chromium screenshots here")
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="report-size-"))
    lab = Lab(folder, backend="offline", progress=False, model_profiles={"*": {"design_latency": 0}})
    if not len(lab.log):
        started = time.perf_counter()
        fill(lab)
        print(f"filled {folder}: {len(lab.log)} takes in {time.perf_counter() - started:.0f} s")
    takes = [t for t in lab.log.takes() if t.audio_path]
    old = sum(len(t.audio.data_uri()) for t in takes)
    started = time.perf_counter()
    report = write_lab_report(lab, folder / "report.html")
    seconds = time.perf_counter() - started
    new = report.stat().st_size
    print(
        f"{len(lab.log)} takes, {len(takes)} with a preview; report written in {seconds:.1f} s, mode "
        f"{report.stat().st_mode & 0o777:o}"
    )
    print(f"old: {old / len(takes):10,.0f} bytes per take (the previews alone, as WAV data URIs)")
    print(f"new: {new / len(takes):10,.0f} bytes per take (the whole report: {new:,} bytes)")
    print(f"ratio new/old: {new / old:.3f}")
    if args.screenshots:
        screenshots(report, args.screenshots)


if __name__ == "__main__":
    main()
