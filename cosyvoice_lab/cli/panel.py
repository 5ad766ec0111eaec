"""``cosyvoice-lab panel --experiment NAME``: serve a blind listening panel until Ctrl-C.

Prints the link raters open; on Ctrl-C prints each rater's progress. Registered by ``cli/main.py``.
"""

from __future__ import annotations

import argparse
import json
import sys

from cosyvoice_lab import catalog
from cosyvoice_lab.cli.exits import EXIT_INPUT, EXIT_OK
from cosyvoice_lab.panel.settings import PANEL


def add_parser(sub, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``panel`` command to the CLI's subparsers ``sub`` (``common``: the shared options)."""
    p = sub.add_parser(
        "panel",
        parents=[common],
        help="serve a blind listening round as a web page; ratings go into the log",
        description="Serve a web page where raters (no notebook needed) each get their own blind, shuffled "
        "round of the experiment's takes and rate them 1-5; every rating is saved in the log as it is given.",
    )
    p.add_argument("--experiment", required=True, help="the experiment whose ok takes are rated")
    p.add_argument(
        "--kind",
        choices=catalog.RATING_KINDS,
        default="preference",
        help="preference: how much do you like it (nothing of model or prompt shown); "
        "adherence: how well does it match its description (shown)",
    )
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
    from cosyvoice_lab.panel.server import Panel

    log = ExperimentLog(args.log, folder=args.folder)  # --log, --folder: resolved by cli.main
    try:
        panel = Panel(log, args.experiment, kind=args.kind, host=args.host, port=args.port).start()
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if args.json:
        print(json.dumps({"url": panel.url, "experiment": args.experiment, "kind": args.kind}), flush=True)
    else:
        print(f"listening panel ({args.kind} round of {args.experiment}): open {panel.url}", flush=True)
        print("ratings are saved as they are given; Ctrl-C stops", flush=True)
    try:
        panel.wait()
    except KeyboardInterrupt:
        pass
    finally:
        progress = panel.progress()
        panel.stop()
    if args.json:
        print(progress.to_json(orient="records"))
    else:
        print(progress.to_string(index=False) if len(progress) else "no rater joined")
    return EXIT_OK
