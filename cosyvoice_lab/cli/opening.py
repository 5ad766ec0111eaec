"""The Lab a command works in, from the options every command shares (folder, log, backend, ...)."""

from __future__ import annotations

import argparse


def open_lab(args: argparse.Namespace, **kw):
    """A Lab for ``args`` (``--folder``, ``--log``, ``--backend``, ``--base-url``, ``--workspace``;
    progress bars unless ``--json``; ``--no-predicted-quality`` where a command has it); ``kw`` go
    to ``Lab`` as they are (e.g. ``target_model``)."""
    from cosyvoice_lab.lab.lab import Lab

    if not getattr(args, "predicted_quality", True):
        from cosyvoice_lab.lab.stage import MeasuringOptions

        kw.setdefault("measuring", MeasuringOptions(predicted_quality=False))

    return Lab(
        args.folder,
        log=args.log,
        backend=args.backend,
        base_url=args.base_url,
        workspace=args.workspace,
        progress=not args.json,
        **kw,
    )
