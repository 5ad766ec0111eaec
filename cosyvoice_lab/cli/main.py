"""The ``cosyvoice-lab`` command: design, compare, voices, log, panel, tune, offline.

Exit codes scripts can trust (``exits.py``):
  0 success · 1 some takes this run sent failed · 2 bad input (nothing sent) · 3 no or rejected API key ·
  4 the service or network failed · 130 interrupted
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from cosyvoice_lab import catalog, folders
from cosyvoice_lab.cli import log as cli_log
from cosyvoice_lab.cli import panel as panel_cli
from cosyvoice_lab.cli import tune as cli_tune
from cosyvoice_lab.cli.exits import EXIT_AUTH, EXIT_FAILED, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_SERVICE
from cosyvoice_lab.cli.opening import open_lab
from cosyvoice_lab.credentials import OFFLINE_API_KEY, OFFLINE_HINT_CLI, OFFLINE_HINT_CODE
from cosyvoice_lab.errors import AuthenticationError, CosyVoiceLabError, CredentialsError
from cosyvoice_lab.lab.planning import DEFAULT_REPEATS
from cosyvoice_lab.service.ratelimit import DEFAULT_LIMITS
from cosyvoice_lab.version import __version__

EPILOG = f"""examples:
  cosyvoice-lab design "a calm, deep male narrator in his fifties, slow and warm"
  cosyvoice-lab compare prompts.txt --repeats 3            # one prompt per line (or YAML/JSON list)
  cosyvoice-lab voices list                               # what the account holds (quota {catalog.VOICE_QUOTA})
  cosyvoice-lab voices cleanup --yes                      # delete voices not chosen in the log
  cosyvoice-lab log export                                # report.html in the lab folder, opens from disk
  cosyvoice-lab tune "A man" --target pitch=-3st          # search for the description (lab.tune)
  cosyvoice-lab offline --port 8765                       # run the simulator for other tools

Without an API key (DASHSCOPE_API_KEY or ~/.alibabacloud/credentials) every command uses the
offline simulator, and says so.
"""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--folder",
        type=Path,
        help=f"the lab folder (log + audio); default ${folders.LAB_HOME_ENV}, else {folders.CHECKOUT_LAB_FOLDER}/ "
        "in a checkout of the repository, else ~/.local/share/cosyvoice-lab (the notebooks' folder too)",
    )
    common.add_argument("--log", help=f"a team's log, postgresql://user:pw@host/db; default ${folders.LOG_ENV}")
    common.add_argument(
        "--backend",
        choices=("auto", "dashscope", "offline"),
        default="auto",
        help="auto: the real service when a key is found, else the offline simulator",
    )
    common.add_argument(
        "--base-url", help="HTTP base of another server speaking the protocol, e.g. http://127.0.0.1:8765/api/v1"
    )
    common.add_argument(
        "--workspace",
        help="Model Studio workspace id: use its host https://{id}.cn-beijing.maas.aliyuncs.com (real service only)",
    )
    common.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")
    common.add_argument("-v", "--verbose", action="store_true", help="log each request and retry")

    p = argparse.ArgumentParser(
        prog="cosyvoice-lab",
        description="Design CosyVoice voices from descriptions, "
        "compare them across models, and keep a record of every attempt.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"cosyvoice-lab {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("design", parents=[common], help="design voice(s) from one description")
    d.add_argument(
        "prompt", help=f"the voice description (Chinese or English, up to {catalog.VOICE_PROMPT_MAX} characters)"
    )
    _design_options(d)
    d.add_argument("-n", type=int, default=1, help="candidates to design (default 1)")

    c = sub.add_parser("compare", parents=[common], help="prompts × models × repeats, resumable")
    c.add_argument(
        "prompts_file", type=Path, help="one prompt per line, or a YAML/JSON list of strings or PromptSpec dicts"
    )
    _design_options(c, target_model=False)
    c.add_argument(
        "--target-models",
        "--target-model",
        nargs="+",
        action="extend",  # --target-model a --target-model b: both (a second flag never silently replaces the first)
        dest="target_models",
        help=f"target models to compare (default: {' '.join(catalog.COMPARE_MODELS)})",
    )
    c.add_argument(
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        help=f"designs per prompt and model (default {DEFAULT_REPEATS})",
    )
    c.add_argument("--new-repeats", action="store_true", help="draw new repeats instead of resuming")
    c.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help=f"most requests in flight at once (default: sized to the rate, up to {DEFAULT_LIMITS.max_concurrency})",
    )
    c.add_argument(
        "--requests-per-second",
        type=float,
        default=DEFAULT_LIMITS.requests_per_second,
        help=f"request rate (default {DEFAULT_LIMITS.requests_per_second:g}; service limit {catalog.ENROLLMENT_RPS:g})",
    )

    v = sub.add_parser("voices", help="the account's voices: list, delete, cleanup")
    vs = v.add_subparsers(dest="voices_command", required=True, metavar="ACTION")
    vs.add_parser("list", parents=[common], help="list voices, joined with the log")
    vd = vs.add_parser("delete", parents=[common], help="delete voices by id")
    vd.add_argument("voice_ids", nargs="+")
    vc = vs.add_parser("cleanup", parents=[common], help="delete voices not chosen (dry run unless --yes)")
    vc.add_argument("--yes", action="store_true", help="really delete (default: show the plan)")
    vc.add_argument("--experiment", help="only voices from this experiment")
    vc.add_argument("--include-unknown", action="store_true", help="also delete voices the log does not know")

    cli_log.add_parser(sub, common)  # log show / export / import / copy

    panel_cli.add_parser(sub, common)  # panel --experiment NAME: a listening round as a web page
    cli_tune.add_parser(sub, common)  # tune START --target pitch=-3st: lab.tune from a terminal
    o = sub.add_parser("offline", help="run the offline simulator on 127.0.0.1 until Ctrl-C")
    o.add_argument("--port", type=int, default=8765)
    o.add_argument("--api-key", help=f"the one key it accepts (default: DASHSCOPE_API_KEY, else {OFFLINE_API_KEY})")
    o.add_argument("--state", type=Path, help="folder where voices persist across restarts")
    o.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    o.add_argument(
        "--design-latency",
        type=float,
        default=0.0,
        help="seconds added to each create_voice only (the real service designs for seconds)",
    )
    o.add_argument("--error-rate", type=float, default=0.0, help="fraction answered 429/500/503")
    o.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="MODEL:FIELD=N[,FIELD=N]",
        help="plant a difference in one model (or '*' for all), repeatable; fields: design_latency, "
        "pitch_shift, pace, adherence, variation, noise; e.g. cosyvoice-v3.5-flash:pitch_shift=3",
    )
    o.add_argument("-v", "--verbose", action="store_true")
    return p


def _design_options(p, target_model: bool = True):
    p.add_argument("--preview-text", help="what the preview reads (default: a sentence in the prompt's language)")
    if target_model:
        p.add_argument(
            "--target-model", default=catalog.DEFAULT_MODEL, choices=catalog.design_models(catalog.DEFAULT_REGION)
        )
    p.add_argument(
        "--prefix",
        default=catalog.DEFAULT_PREFIX,
        help=f"1-{catalog.PREFIX_MAX} lowercase letters/digits, part of the voice id",
    )
    p.add_argument("--experiment", help="group takes under this name")
    p.add_argument(
        "--no-predicted-quality",
        dest="predicted_quality",
        action="store_false",
        help="measure each preview without the predicted-quality model (DNSMOS: the costliest measure, "
        "about 0.2 s of CPU per preview); its columns stay empty until Lab.remeasure(force=True)",
    )


def _takes_df(lab, takes):
    df = lab.log.to_dataframe()
    return df[df["take_id"].isin([t.take_id for t in takes])]


def cmd_design(args) -> int:
    lab = open_lab(args, target_model=args.target_model)
    print(repr(lab), file=sys.stderr)
    takes = lab.design(
        args.prompt,
        preview_text=args.preview_text,
        target_model=args.target_model,
        prefix=args.prefix,
        n=args.n,
        experiment=args.experiment,
    )
    takes = takes if isinstance(takes, list) else [takes]
    cli_log.print_table(_takes_df(lab, takes), args.json, cli_log.TAKE_COLUMNS)
    if not args.json:  # where to hear them (a database log keeps its audio inside: log preview --save)
        for take in takes:
            if take.ok and take.audio_path:
                print(f"preview {take.take_id[:8]}: {take.audio_path}", file=sys.stderr)
        if any(t.ok for t in takes):
            print("hear one: cosyvoice-lab log preview TAKE_ID --play (or --save PATH)", file=sys.stderr)
    return _exit_code(takes)


# error codes of takes that failed because of the key, or of the service or the network (contract §9)
AUTH_CODES = ("InvalidApiKey", "Arrearage")  # and every code with AccessDenied in it
SERVICE_CODES = (
    *("InternalError", "ServiceUnavailable", "GatewayTimeout", "Throttling", "Throttling.RateQuota"),
    *("ConnectionFailed", "RequestTimeout", "TransportError", "OutcomeUnknown"),
)


def _exit_code(takes) -> int:
    """The exit code of a run from the takes it sent: 0 all ok; 3 none ok, each failing on the
    key; 4 none ok, each failing on the service or the network; else 1 (some takes failed)."""
    codes = [t.error_code or "" for t in takes if not t.ok]
    if not codes:
        return EXIT_OK
    if len(codes) == len(takes):
        if all(c in AUTH_CODES or "AccessDenied" in c for c in codes):
            return EXIT_AUTH
        if all(c in SERVICE_CODES for c in codes):
            return EXIT_SERVICE
    return EXIT_FAILED


def cmd_compare(args) -> int:
    args.target_models = list(dict.fromkeys(args.target_models or catalog.COMPARE_MODELS))
    from cosyvoice_lab.lab.planning import read_prompts
    from cosyvoice_lab.take import check_experiment

    try:
        prompts = read_prompts(args.prompts_file)
    except (OSError, UnicodeDecodeError) as exc:  # a missing or unreadable file: one line, not a traceback
        reason = "no such file" if isinstance(exc, FileNotFoundError) else getattr(exc, "strerror", None) or exc
        print(f"error: cannot read prompts file {str(args.prompts_file)!r}: {reason}", file=sys.stderr)
        return EXIT_INPUT
    if not prompts:  # checked before a lab is opened: bad input is one line, nothing else
        print(f"error: prompts file {str(args.prompts_file)!r} holds no prompt (one per line)", file=sys.stderr)
        return EXIT_INPUT
    if args.repeats < 1:
        print(f"error: --repeats must be at least 1, got {args.repeats}", file=sys.stderr)
        return EXIT_INPUT
    check_experiment(args.experiment)
    lab = open_lab(
        args,
        concurrency=args.concurrency,
        requests_per_second=args.requests_per_second,
        target_model=args.target_models[0],
    )
    print(repr(lab), file=sys.stderr)
    print(f"comparing {', '.join(args.target_models)}", file=sys.stderr)
    try:
        comp = lab.compare(
            prompts,
            target_models=args.target_models,
            repeats=args.repeats,
            preview_text=args.preview_text,
            experiment=args.experiment,
            new_repeats=args.new_repeats,
            prefix=args.prefix,
        )
        measured = not comp.interrupted and _measures_written(lab)
    finally:  # stopped (Ctrl-C, an error): queued measures are dropped, not waited for at exit
        unmeasured = lab.measuring.cancel()
        if unmeasured:
            print(
                f"{unmeasured} take(s) recorded ok but not measured; the next compare of this experiment "
                "(or Lab.remeasure) measures them",
                file=sys.stderr,
            )
    takes = comp.takes
    run = lab.last_run
    n_sent = sum(r is not None for r in run.results) if run else 0
    reused = run.reused if run else 0
    if args.json:
        print(
            json.dumps(
                {
                    "experiment": comp.experiment,
                    "takes": len(takes),
                    "ok": sum(t.ok for t in takes),
                    "sent": n_sent,
                    "reused": reused,
                    "interrupted": comp.interrupted,
                }
            )
        )
    else:
        print(f"experiment {comp.experiment}: {sum(t.ok for t in takes)}/{len(takes)} takes ok")
        if reused:  # an earlier run of the same experiment: say so, never merge runs silently
            named = "the name given" if args.experiment else "the same prompts and models, so the same automatic name"
            print(
                f"{reused} take(s) reused from an earlier run of this experiment ({named}), {n_sent} sent now; "
                "--experiment NAME keeps a run apart, --new-repeats adds repeats after the existing ones",
                file=sys.stderr,
            )
        print(comp.pivot().to_string())
    if comp.interrupted or not measured:
        return EXIT_INTERRUPTED
    if run and run.raised:  # e.g. a full disk: the voice may exist, its row was left unsettled
        print(
            f"{run.raised} take(s) whose outcome the log could not record; the next compare of this "
            "experiment adopts the voices they may have made",
            file=sys.stderr,
        )
    # this run's takes only (a resumed compare answers for what it sent); None: a cell held elsewhere
    sent = [lab.log.get(t.take_id) for t in (lab.last_run.results if lab.last_run else []) if t is not None]
    code = _exit_code(sent)
    return EXIT_FAILED if code == EXIT_OK and run and run.raised else code


def _measures_written(lab) -> bool:
    """Wait until the measuring stage has written every measure; False if Ctrl-C stopped it."""
    try:
        lab.measuring.wait()
    except KeyboardInterrupt:
        return False
    return True


def cmd_voices(args) -> int:
    lab = open_lab(args)
    if args.voices_command == "list":
        df = lab.voices()
        if not args.json:
            print(f"{len(df)} voice(s) of {catalog.VOICE_QUOTA} allowed — {lab!r}", file=sys.stderr)
        cli_log.print_table(
            df, args.json, ["voice_id", "status", "gmt_create", "take_id", "experiment", "rating", "chosen", "known"]
        )
        return EXIT_OK
    if args.voices_command == "delete":
        deleted = []
        try:
            for vid in args.voice_ids:
                lab.client.delete_voice(vid)
                deleted.append(vid)
        finally:  # the log learns of every voice that is gone, even if a later delete fails
            lab.log.table.mark_deleted(deleted)
        print(json.dumps({"deleted": args.voice_ids}) if args.json else f"deleted {len(args.voice_ids)} voice(s)")
        return EXIT_OK
    plan = lab.cleanup(dry_run=not args.yes, experiment=args.experiment, include_unknown=args.include_unknown)
    cli_log.print_table(plan, args.json, ["voice_id", "action", "reason", "done"])
    deleting = plan["action"] == "delete"
    if not args.json and not args.yes:
        print(f"dry run: {int(deleting.sum())} voice(s) would be deleted; add --yes to delete", file=sys.stderr)
    elif not args.json:
        done = int(plan.loc[deleting, "done"].fillna(False).astype(bool).sum())
        failed = f", {int(deleting.sum()) - done} could not be deleted (see the table)" if done < deleting.sum() else ""
        print(f"deleted {done} voice(s), kept {int((~deleting).sum())}{failed}", file=sys.stderr)
    return EXIT_OK if args.yes is False or plan.loc[plan["action"] == "delete", "done"].all() else EXIT_FAILED


def cmd_offline(args) -> int:
    import threading

    from cosyvoice_lab.offline import serve
    from cosyvoice_lab.offline.profiles import merge_options

    try:
        model_profiles = merge_options(args.profile)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    with serve(port=args.port, api_key=args.api_key, state_dir=args.state, model_profiles=model_profiles) as sim:
        sim.faults.latency = args.latency
        sim.faults.action_latency = {"create_voice": args.design_latency} if args.design_latency else {}
        sim.faults.error_rate = args.error_rate
        print(f"offline simulator: HTTP {sim.base_url}  WebSocket {sim.ws_url}", flush=True)
        print(f"it accepts {_accepted_key(args, sim.api_key)}", flush=True)
        print("point a client at it with base_url=...; Ctrl-C stops", flush=True)
        threading.Event().wait()
    return EXIT_OK


def _accepted_key(args, key: str) -> str:
    """Which key the simulator accepts, in words: its own stand-in key is printed (it is no
    secret); a key the user gave is only named, never shown."""
    if key == OFFLINE_API_KEY:
        return f"the API key {key} (set DASHSCOPE_API_KEY to it, or pass it as api_key=)"
    return "the key given with --api-key" if args.api_key else "the key in DASHSCOPE_API_KEY"


COMMANDS = {
    "design": cmd_design,
    "compare": cmd_compare,
    "voices": cmd_voices,
    "log": cli_log.run,
    "offline": cmd_offline,
    "panel": panel_cli.run,
    "tune": cli_tune.run,
}


def one_blas_thread_unless_told() -> None:
    """Before numpy loads in a command's process: its BLAS on one thread, unless the environment
    says otherwise (``OPENBLAS_NUM_THREADS``). The command spreads its measuring over the cores
    itself, and BLAS's threads only spin on the small products of each clip: ``measure()`` of a
    5 s preview took 52 ms of CPU on one BLAS thread and 96-136 ms on two, in the same wall time
    (297 and 410 ms with predicted quality), on a 2-core machine. A process that loaded numpy
    already (``main()`` called from Python) keeps its own setting."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main(argv: list[str] | None = None) -> int:
    one_blas_thread_unless_told()
    args = _parser().parse_args(argv)
    if "folder" in args:  # one default for the CLI and the notebooks
        args.log = folders.log_location(args.folder, args.log)  # --log, --folder, $COSYVOICE_LAB_LOG
        args.folder = args.folder or folders.default_lab_folder()
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ValueError as exc:  # ValidationError and every other refusal of the user's input: one line, exit 2
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except (CredentialsError, AuthenticationError) as exc:
        print(f"error: {str(exc).replace(OFFLINE_HINT_CODE, OFFLINE_HINT_CLI)}", file=sys.stderr)
        return EXIT_AUTH
    except CosyVoiceLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SERVICE
