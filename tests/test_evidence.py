"""Comparison.evidence() end to end against the simulator: a planted pitch difference is found,
identical models name no winner. Small on purpose: 3 prompts × 2 models × 4 repeats."""

import math

import numpy as np
import pandas as pd

from cosyvoice_lab import Lab
from cosyvoice_lab.offline import serve
from cosyvoice_lab.views.evidence import COLUMNS, evidence

PROMPTS = [
    "A calm middle-aged man with a warm, deep voice.",
    "A bright young woman who speaks quickly and cheerfully.",
    "An elderly man telling a story, slow and gentle.",
]
PREVIEW = "Hello, how are you today?"
PLUS, FLASH = "cosyvoice-v3.5-plus", "cosyvoice-v3.5-flash"


def compare(tmp_path, monkeypatch, profiles, repeats=4, variability=False, seed=1):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with serve(model_profiles={"*": {"design_latency": 0}, **profiles}, enrollment_rps=None, seed=seed) as sim:
        # one request at a time: the seeded simulator then gives every cell the same voice on every run
        lab = Lab(tmp_path / "lab", backend="offline", base_url=sim.base_url, progress=False, concurrency=1)
        comparison = lab.compare(PROMPTS, models=(PLUS, FLASH), repeats=repeats, preview_text=PREVIEW)
        return comparison.evidence(variability=variability)


def pitch_row(ev):
    rows = ev.table[ev.table["measure"] == "pitch"]
    assert len(rows) == 1
    return rows.iloc[0]


def test_a_planted_pitch_shift_on_flash_is_found(tmp_path, monkeypatch):
    ev = compare(tmp_path, monkeypatch, {FLASH: {"pitch_shift": 3, "design_latency": 0}})
    assert list(ev.table.columns) == list(COLUMNS)
    row = pitch_row(ev)
    assert row["ci_low"] > 0 and row["p_adjusted"] < 0.05
    assert row["ci_low"] < 3 < row["ci_high"] or abs(row["estimate"] - 3) < 1  # about the planted 3 st
    assert row["verdict"].startswith("v3.5-flash higher pitch: +")
    assert row["n"] == 24 and pd.isna(row["repeats_needed"])
    page = ev._repr_html_()
    assert "v3.5-flash higher pitch" in page and "<b>" in page
    assert "v3.5-flash higher pitch" in str(ev)


def test_identical_models_name_no_winner_on_pitch(tmp_path, monkeypatch):
    ev = compare(tmp_path, monkeypatch, {}, repeats=3, variability=True, seed=2)
    row = pitch_row(ev)
    # the interval is the unadjusted 95 % one; the verdict follows the Holm-adjusted p
    assert row["p_adjusted"] >= 0.05
    assert row["verdict"].startswith("no evidence either way")
    assert "plus" not in row["verdict"] and "flash" not in row["verdict"]
    measures = set(ev.table["measure"])
    assert {"pitch", "speaking rate", "loudness", "design latency", "variation between repeats"} <= measures
    assert "duration s" not in measures
    assert all(v.startswith(("no evidence", "not enough data")) for v in ev.table["verdict"] if "latency" not in v)
    # what to do next: an open question gets a number of repeats, a sentence says so
    assert pd.isna(row["repeats_needed"]) or row["repeats_needed"] >= 2
    assert all("repeats per prompt and model" in line for line in ev.next_steps())
    smaller = evidence(frame(0.05), [PLUS, FLASH], experiment="e2", effect={"pitch": 0.1}).next_steps()
    assert any("pitch: " in line and "repeats=" in line and "'e2'" in line for line in smaller), smaller
    assert all("new_repeats=True" in line for line in ev.next_steps() if "would find" in line)


def frame(shift=0.0, *, ratings=None):
    """A synthetic take table: 3 prompts × 2 models × 4 repeats, pitch in Hz."""
    rows = []
    rng = np.random.default_rng(0)
    for p in range(3):
        for m, model in enumerate((PLUS, FLASH)):
            for r in range(4):
                f0 = 110 * 2 ** ((p * 4 + m * shift + rng.normal(0, 0.3)) / 12)
                rows.append(
                    {
                        "take_id": f"t{p}{m}{r}",
                        "prompt_index": p,
                        "target_model": model,
                        "status": "ok",
                        "m_median_f0_hz": f0,
                        "m_predicted_mos": 3.5 + 0.1 * (r % 2),
                        "latency_s": 0.3,
                        "rating": None,
                    }
                )
    return pd.DataFrame(rows)


def test_every_measurement_column_and_listening_round_becomes_a_question():
    df = frame(2.0)
    ratings = pd.DataFrame(
        [
            {"take_id": t, "rating": 5 if t[2] == "1" else 2, "kind": kind, "rater": "ana"}
            for t in df["take_id"]
            for kind in ("preference", "adherence")
        ]
    )
    ev = evidence(df, [PLUS, FLASH], ratings=ratings, effect={"predicted quality": 0.2}, experiment="e1")
    by = ev.table.set_index("measure")
    assert by.loc["pitch", "ci_low"] < 2.0 < by.loc["pitch", "ci_high"]
    assert by.loc["pitch", "verdict"].startswith("v3.5-flash higher pitch: +")
    assert "predicted quality" in by.index and by.loc["predicted quality", "verdict"].startswith("no evidence")
    # the size asked about (0.2), not the one observed (0): repeats per cell to settle it
    assert 2 <= by.loc["predicted quality", "repeats_needed"] <= 10
    assert any(
        line.startswith("v3.5-flash vs v3.5-plus: predicted quality: the 4 repeats")
        and "0.2 MOS" in line
        and "unlikely" in line
        for line in ev.next_steps()
    )
    assert by.loc["blind preference rating", "verdict"].startswith("v3.5-flash rated higher")
    assert by.loc["adherence rating", "n"] == 24
    assert "rating" not in by.index  # nobody rated in the log itself
    assert math.isnan(by.loc["design latency", "p_value"]) or by.loc["design latency", "p_value"] == 1.0
    # Holm: adjusted p never below the raw one
    assert (ev.table["p_adjusted"].fillna(1) >= ev.table["p_value"].fillna(1) - 1e-12).all()


def test_an_empty_comparison_has_an_empty_table():
    ev = evidence(frame().iloc[0:0], [PLUS, FLASH])
    assert ev.table.empty and "no takes to compare" in ev._repr_html_()
