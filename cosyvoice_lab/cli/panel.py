"""``cosyvoice-lab panel --experiment NAME``: serve a blind listening panel until Ctrl-C.

Prints the link raters open (and each ``--invite``d rater's personal link); on Ctrl-C prints each
rater's progress. The latest open round of the experiment and kind is resumed (every rater's
order and answers kept; links sent earlier still work) unless ``--new-round``. Registered by
``cli/main.py``.
"""

from __future__ import annotations

import argparse
import json
import sys

from cosyvoice_lab.cli.exits import EXIT_INPUT, EXIT_OK
from cosyvoice_lab.log.rounds import KINDS
from cosyvoice_lab.panel.settings import PANEL


def add_parser(sub, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``panel`` command to the CLI's subparsers ``sub`` (``common``: the shared options)."""
    p = sub.add_parser(
        "panel",
        parents=[common],
        help="serve a blind listening round as a web page; ratings go into the log",
        description="Serve a web page where raters (no notebook needed) each get their own blind, shuffled "
        "round of the experiment's takes and answer them (1-5 stars, or which of two voices in a pair round); "
        "every answer is saved in the log as it is given.",
    )
    p.add_argument("--experiment", required=True, help="the experiment whose ok takes are rated")
    p.add_argument(
        "--kind",
        choices=KINDS,
        default="preference",
        help="preference: how much do you like it (nothing of model or prompt shown); "
        "adherence: how well does it match its description (shown); "
        "pair: which of two voices of one prompt (different models) do you prefer",
    )
    p.add_argument(
        "--invite",
        action="append",
        default=[],
        metavar="NAME",
        help="invite a rater (repeatable): prints their personal link; names are exact (Ana and ana are two)",
    )
    p.add_argument("--new-round", action="store_true", help="start a new round instead of resuming the latest open one")
    p.add_argument("--repeat-share", type=float, default=0.0, help="share of items shown twice, hidden (0-1)")
    p.add_argument("--subset-size", type=int, default=None, help="items per rater, balanced across raters")
    p.add_argument("--must-play", action="store_true", help="an item can be answered only once played to the end")
    p.add_argument("--port", type=int, default=PANEL.port, help=f"default {PANEL.port}; 0: a free one")
    p.add_argument(
        "--host",
        default=PANEL.host,
        help=f"address to listen on (default {PANEL.host}: this machine only); "
        "any other serves other machines and puts a join token in the link",
    )
    return p


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C; returns the exit code (2: no such experiment or the port is taken)."""
    from cosyvoice_lab.log.experiment_log import ExperimentLog
    from cosyvoice_lab.panel.rounds import RoundFull
    from cosyvoice_lab.panel.server import Panel

    log = ExperimentLog(args.log, folder=args.folder)  # --log, --folder: resolved by cli.main
    try:
        panel = Panel(
            log, args.experiment, kind=args.kind, host=args.host, port=args.port, resume=not args.new_round,
            repeat_share=args.repeat_share, subset_size=args.subset_size, must_play=args.must_play,
        ).start()  # fmt: skip
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    try:
        invites = {name: _invite(panel, name) for name in args.invite}
    except (ValueError, RoundFull) as exc:
        panel.stop()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if args.json:
        out = {"url": panel.url, "experiment": args.experiment, "kind": panel.kind, "round": panel.round_id,
               "invites": invites}  # fmt: skip
        print(json.dumps(out), flush=True)
    else:
        print(
            f"listening panel ({panel.kind} round {panel.round_id} of {args.experiment}): open {panel.url}", flush=True
        )
        for name, link in invites.items():
            print(f"invite {name}: {link or 'invited earlier: the link sent then still works'}", flush=True)
        if panel.open_enrolment:
            print("open enrolment: anyone on this machine can join by typing a name", flush=True)
        print("answers are saved as they are given; Ctrl-C stops", flush=True)
    try:
        panel.wait()
    except KeyboardInterrupt:
        pass
    finally:
        progress = panel.progress()
        panel.stop()
    if args.json:
        print(progress.drop(columns=["session_id"]).to_json(orient="records"))
    else:
        shown = progress[["rater", "rated", "total", "repeats", "consistency"]]
        print(shown.to_string(index=False) if len(progress) else "no rater joined")
    return EXIT_OK


def _invite(panel, name: str) -> str | None:
    """``name``'s personal link, or None when they were invited to this round before."""
    from cosyvoice_lab.log.rounds import rater_name

    if any(s.rater == rater_name(name) and s.invited for s in panel.round.sessions()):
        return None
    return panel.invite(name)
