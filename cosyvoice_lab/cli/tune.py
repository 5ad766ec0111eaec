"""``cosyvoice-lab tune START --target pitch=-3st --target speaking_rate=-15% --budget 48``: the
tuner from a terminal (``lab.tune``; resumable like the notebook call). Registered by ``cli/main.py``.

Prints the verdict, the best description and the candidates (``--json``: one JSON object).
"""

from __future__ import annotations

import argparse
import json
import sys

from cosyvoice_lab.cli import log as cli_log
from cosyvoice_lab.cli.exits import EXIT_FAILED, EXIT_OK
from cosyvoice_lab.cli.opening import open_lab
from cosyvoice_lab.errors import Problem, ValidationError


def add_parser(sub, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``tune`` command to the CLI's subparsers ``sub`` (``common``: the shared options)."""
    p = sub.add_parser(
        "tune",
        parents=[common],
        help="search for the description whose designs measure as asked (or sound like a recording)",
        description="Start from a description and move its words until its designs reach the target "
        "measures with evidence, the budget is spent, or no move is expected to come closer. Exit 0 when "
        "reached, 1 when not.",
    )
    p.add_argument("start", help="the description to start from")
    p.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="MEASURE=GOAL",
        help="e.g. pitch=-3st, speaking_rate=-15%%, median_f0_hz=110 (repeat for several); or a profile: deeper",
    )
    p.add_argument("--tolerance", action="append", default=[], metavar="MEASURE=BAND", help="e.g. pitch=1st")
    p.add_argument("--reference", help="reverse design: the path of a recording to come close to")
    p.add_argument("--budget", type=int, default=48, help="designs to spend at most (default 48)")
    p.add_argument("--repeats", type=int, default=3, help="designs per candidate before it can count (default 3)")
    p.add_argument(
        "--target-model", action="append", dest="target_models", help="the model(s) to design on (default: the lab's)"
    )
    p.add_argument("--preview-text", help="what the previews read")
    p.add_argument("--experiment", help="the experiment name (default: derived from the arguments)")
    p.add_argument("--keep", action="store_true", help="keep every candidate's voice (default: delete the unchosen)")
    return p


def pairs(items: list[str], option: str) -> dict[str, str]:
    """``["pitch=-3st", ...]`` -> ``{"pitch": "-3st"}``.

    Raises:
        ValidationError: an item without ``=`` (each named).
    """
    out, problems = {}, []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            problems.append(Problem(f"--{option}", "format", f"{item!r}: write MEASURE=VALUE, e.g. pitch=-3st"))
        else:
            out[key.strip()] = value.strip()
    if problems:
        raise ValidationError(problems, context="tune: nothing was sent")
    return out


def run(args: argparse.Namespace) -> int:
    """Tune; returns 0 when the target was reached, 1 when not."""
    profile = len(args.target) == 1 and "=" not in args.target[0]
    target = args.target[0] if profile else (pairs(args.target, "target") or None)
    lab = open_lab(args)
    print(repr(lab), file=sys.stderr)
    tuning = lab.tune(
        args.start,
        target=target,
        reference=args.reference,
        target_models=args.target_models,
        budget=args.budget,
        repeats=args.repeats,
        preview_text=args.preview_text,
        tolerance=pairs(args.tolerance, "tolerance") or None,
        keep=args.keep,
        experiment=args.experiment,
    )
    best = tuning.best.render() if hasattr(tuning.best, "render") else str(tuning.best)
    if args.json:
        table = json.loads(tuning.table.to_json(orient="records", force_ascii=False))
        print(
            json.dumps(
                {
                    "experiment": tuning.experiment,
                    "reached": tuning.reached,
                    "stopped": tuning.stopped,
                    "verdict": tuning.verdict,
                    "best": best,
                    "designs_used": tuning.designs_used,
                    "candidates": table,
                },
                ensure_ascii=False,
            )
        )
    else:
        print(f"{tuning.experiment}: {tuning.verdict}")
        print(f"best: {best}")
        cli_log.print_table(tuning.table.drop(columns=["voice_prompt"]), False)
    return EXIT_OK if tuning.reached else EXIT_FAILED  # 1: the target was not reached
