"""The ``cosyvoice-lab log`` command: show, export, import and copy (registered by ``cli/main.py``).

``log copy SRC DST`` copies a whole log between a folder and a team's database: SRC and DST are
each a log folder or a ``postgresql://`` URL (a folder is created when missing; a database must
exist, and gets the log's tables on first use). The copy merges by global ids, so copying twice
adds nothing (``cosyvoice_lab.log.copy`` says what moves and what is refused).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cosyvoice_lab.cli.exits import EXIT_INPUT, EXIT_OK

TAKE_COLUMNS = ["take_id", "status", "target_model", "voice_id", "voice_prompt", "error_code", "rating", "chosen"]


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    """Add the ``log`` command and its actions to the top-level subparsers ``sub``."""
    lg = sub.add_parser("log", help="the experiment log: show, export, import, copy")
    ls = lg.add_subparsers(dest="log_command", required=True, metavar="ACTION")
    show = ls.add_parser("show", parents=[common], help="recent takes")
    show.add_argument("--experiment")
    show.add_argument("--limit", type=int, default=20)
    ex = ls.add_parser("export", parents=[common], help="export: .csv, .parquet, .html or .zip (bundle)")
    ex.add_argument("path", type=Path, nargs="?", help="default: report.html in the lab folder")
    ex.add_argument("--experiment")
    ex.add_argument("--force", action="store_true", help="replace the file if it exists")
    pv = ls.add_parser(
        "preview",
        parents=[common],
        help="a take's preview: print its file, save a copy (--save), or play it (--play)",
        description="Find a take by its id (or a unique prefix, as tables show it) or by its voice id, and "
        "print where its preview is. --save PATH writes a copy; --play plays it with the first player found "
        f"({', '.join(p[0] for p in PLAYERS)}).",
    )
    pv.add_argument("id", help="a take id (or prefix) or a voice id")
    pv.add_argument("--save", type=Path, metavar="PATH", help="write the preview here (a folder: <sha256>.<ext>)")
    pv.add_argument("--force", action="store_true", help="replace PATH if it exists")
    pv.add_argument("--play", action="store_true", help="play it through the first audio player found")
    im = ls.add_parser("import", parents=[common], help="merge a teammate's bundle (.zip) into this log")
    im.add_argument("path", type=Path)
    _add_copy(ls)  # log copy SRC DST (folder <-> postgresql:// URL)


def _add_copy(actions) -> argparse.ArgumentParser:
    """Add the ``copy`` action to the ``log`` command's subparsers ``actions``."""
    p = actions.add_parser(
        "copy",
        help="copy a whole log (takes, audio, history, ratings) between a folder and a postgresql:// URL",
        description="Copy every take of SRC, with its audio, annotation history, utterances, ratings and "
        "cell claims, into DST. Each is a log folder or a postgresql://user@host/db URL. Merges: takes "
        "DST already holds are kept, so copying twice adds nothing.",
    )
    p.add_argument("src", metavar="SRC", help="the log to copy: a folder or a postgresql:// URL")
    p.add_argument(
        "dst",
        metavar="DST",
        help="where to copy it: a folder (created when missing) or a postgresql:// URL (an existing database)",
    )
    p.add_argument("--json", action="store_true", help="print the counts as JSON for scripts")
    return p


def print_table(df, as_json: bool, columns=None):
    if columns is not None:
        df = df[[c for c in columns if c in df.columns]]
    if as_json:
        print(df.to_json(orient="records", date_format="iso", force_ascii=False))
    elif df.empty:
        print("(none)")
    else:
        import pandas as pd

        with pd.option_context("display.max_colwidth", 48, "display.width", 200):
            print(df.to_string(index=False))


def run(args: argparse.Namespace) -> int:
    """Run a ``log`` action."""
    if args.log_command == "copy":
        return _copy(args)
    from cosyvoice_lab.log.experiment_log import ExperimentLog
    from cosyvoice_lab.views.report import write_report

    log = ExperimentLog(args.log, folder=args.folder)
    if args.log_command == "show":
        df = log.to_dataframe(experiment=args.experiment)
        print_table(df.sort_values("started_at").tail(args.limit), args.json, [*TAKE_COLUMNS, "experiment"])
        return EXIT_OK
    if args.log_command == "preview":
        return _preview(log, args)
    if args.log_command == "import":
        counts = log.bundles.merge(args.path)
        print(json.dumps(counts) if args.json else f"imported: {counts}")
        return EXIT_OK
    if args.path is None:
        args.path = log.folder / "report.html"  # inside the (git-ignored) lab folder: ours to replace
    elif args.path.exists() and not args.force:
        print(f"error: {args.path} exists; add --force to replace it", file=sys.stderr)
        return EXIT_INPUT
    suffix = args.path.suffix.lower()
    exporters = {
        ".csv": log.export_csv,
        ".parquet": log.export_parquet,
        ".html": lambda path, **kw: write_report(log, path, **kw),  # with evidence and plots
        ".zip": log.bundles.export,
    }
    if suffix not in exporters:
        print(f"cannot export to {args.path}: use .csv, .parquet, .html or .zip", file=sys.stderr)
        return EXIT_INPUT
    exporters[suffix](args.path, experiment=args.experiment)
    print(json.dumps({"exported": str(args.path)}) if args.json else f"wrote {args.path}")
    return EXIT_OK


def _copy(args: argparse.Namespace) -> int:
    """Copy ``args.src`` into ``args.dst``; prints what was added (never a URL: it may hold a password)."""
    from cosyvoice_lab.log.copy import copy_log

    counts = copy_log(args.src, args.dst, progress=False if args.json else None)
    if args.json:
        print(json.dumps(counts))
    else:
        added = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items())
        print(f"copied into the destination: {added}", file=sys.stdout)
    return EXIT_OK


# Command-line players, tried in order: (program, its arguments before the file).
PLAYERS = (
    ("ffplay", ("-nodisp", "-autoexit", "-loglevel", "error")),
    ("paplay", ()),
    ("aplay", ("-q",)),
    ("afplay", ()),
)


def _find_take(log, ident: str):
    """The take named by a take id (or a unique prefix) or by a voice id; None when none is."""
    from cosyvoice_lab.errors import TakeNotFound

    try:
        return log.get(ident)
    except TakeNotFound:
        by_voice = log.takes(voice_id=ident)
        return by_voice[-1] if by_voice else None


def _preview(log, args: argparse.Namespace) -> int:
    """``log preview ID``: print the preview's file; ``--save`` a copy; ``--play`` it."""
    import shutil
    import subprocess

    take = _find_take(log, args.id)
    if take is None or not take.audio_path:
        what = "no take or voice" if take is None else f"take {take.take_id[:8]} has no preview"
        print(f"error: {what} {args.id!r} in {log.location}" if take is None else f"error: {what}", file=sys.stderr)
        return EXIT_INPUT
    where = Path(take.audio_path)
    on_disk = where.is_file()  # a folder log's file; a database log keeps its audio inside (--save it)
    if on_disk:
        print(where)
    if args.save is not None:
        target = args.save / f"{take.audio_sha256}.{take.audio_format}" if args.save.is_dir() else args.save
        if target.exists() and not args.force:
            print(f"error: {target} exists; add --force to replace it", file=sys.stderr)
            return EXIT_INPUT
        print(f"saved {take.audio.save(target)}")
    if args.play:
        found = next(((program, extra) for name, extra in PLAYERS if (program := shutil.which(name))), None)
        if found is None:
            names = ", ".join(name for name, _ in PLAYERS)
            print(f"error: no audio player found ({names}); use --save and open the file", file=sys.stderr)
            return EXIT_INPUT
        player, extra = found
        if on_disk:
            return subprocess.run([player, *extra, str(where)], check=False).returncode
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            return subprocess.run([player, *extra, str(take.audio.save(Path(tmp)))], check=False).returncode
    return EXIT_OK
