"""Panel: a listening round served in a background thread, with what the organiser asks of it.

``Panel(log, experiment, kind=...)`` reads the experiment's playable takes, ``start()`` binds
the port (127.0.0.1 unless ``host`` says otherwise; any other address requires the join token)
and serves the page from its own thread and event loop, so that a notebook stays usable.
``progress()`` and ``evidence()`` read the ratings back from the log.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from cosyvoice_lab import catalog
from cosyvoice_lab.panel.rounds import Preview, Round, new_token
from cosyvoice_lab.panel.settings import PANEL, is_loopback
from cosyvoice_lab.serving import LoopThread

WILDCARDS = ("", "0.0.0.0", "::")


def previews(log: Any, experiment: str) -> list[Preview]:
    """The experiment's takes a rater can hear: ok, with a preview, oldest first."""
    return [
        Preview(t.take_id, t.prompt or "")
        for t in log.takes(experiment=experiment, status="ok")
        if t.audio_path and not t.preview_missing
    ]


class Panel:
    """A blind listening panel over one experiment of ``log``.

    Args:
        log: the ExperimentLog the ratings go into (and the previews come from).
        experiment: the experiment whose ok takes are rated.
        kind: "preference" (nothing of model or prompt shown) or "adherence" (each take's
            description shown: how well does the voice match it?).
        host, port: where to listen (``PanelSettings.host`` / ``.port``; port 0 picks a
            free one). A host other than a loopback address serves other machines: then a
            random join token is required, carried by :attr:`url`.
        require_token: force the token on (True) or off (False); default: off on loopback only.

    Raises:
        ValueError: an unknown kind, or an experiment without a playable take.
    """

    def __init__(
        self,
        log: Any,
        experiment: str,
        *,
        kind: str = "preference",
        host: str = PANEL.host,
        port: int = PANEL.port,
        require_token: bool | None = None,
    ) -> None:
        self.log, self.experiment, self.host = log, experiment, host
        self.round = Round(kind, lambda: previews(log, experiment))
        if not previews(log, experiment):
            raise ValueError(f"experiment {experiment!r} has no ok take with a preview to listen to")
        needed = not is_loopback(host) if require_token is None else require_token
        self.token: str | None = new_token() if needed else None
        self.port: int | None = None
        self._requested_port = port
        self._serving = LoopThread("cosyvoice-panel", drain_executor=True)  # drain: the threads that read the log
        self._runner: Any = None
        self._stopped = threading.Event()

    @property
    def kind(self) -> str:
        return self.round.kind

    @property
    def url(self) -> str:
        """The link raters open (with ``?token=`` when one is required)."""
        host = socket.gethostname() if self.host in WILDCARDS else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def __repr__(self) -> str:  # never the token: a repr lands in notebooks and logs
        if not self.port:
            where = "stopped"
        else:
            where = f"on {self.host}, port {self.port}, join token required (see .url)" if self.token else self.url
        return f"<Panel {self.kind} round of {self.experiment!r} {where}; {len(self.round.sessions())} rater(s)>"

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> Panel:
        """Serve in a background thread; returns self once the port is bound.

        Raises:
            OSError: the port cannot be bound.
        """
        if self._serving.running:
            return self
        self._serving.start(self._serve)
        self._stopped.clear()
        return self

    async def _serve(self) -> None:
        from aiohttp import web

        from cosyvoice_lab.panel.app import Context, make_app

        app = make_app(Context(self.log, self.experiment, self.round, self.token))
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host or None, self._requested_port).start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        """Stop serving (safe to call twice). Ratings already given are in the log."""
        runner = self._runner
        if not self._serving.running or runner is None:
            return
        try:
            self._serving.stop(runner.cleanup)
        finally:
            self.port = None
            self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` (or ``timeout`` seconds); True once stopped."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> Panel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what the organiser asks ------------------------------------------------------------------
    def ratings(self):
        """This panel's ratings as ``log.ratings`` gives them (take_id, rating, rater, kind,
        session_id, at): the latest of each rater for each take."""
        ids = [s.session_id for s in self.round.sessions()]
        frame = self.log.ratings(self.experiment, kind=self.kind)
        return frame[frame["session_id"].isin(ids)].reset_index(drop=True)

    def progress(self):
        """Per rater: ``rated`` of ``total`` takes (a DataFrame, in the order raters joined)."""
        import pandas as pd

        counts = self.ratings().groupby("session_id").size()
        rows = [(s.rater, int(counts.get(s.session_id, 0)), len(s.items)) for s in self.round.sessions()]
        return pd.DataFrame(rows, columns=["rater", "rated", "total"])

    def evidence(self, **options: Any):
        """The Evidence view of the experiment with every rater's ratings of this panel (one
        question per round kind); ``options`` go to ``Comparison.evidence``."""
        from cosyvoice_lab.views.comparison import Comparison

        takes = self.log.takes(experiment=self.experiment)
        prompts = list(dict.fromkeys(t.prompt for t in takes))
        models = catalog.model_order(t.model for t in takes)
        return Comparison(self.log, self.experiment, prompts, models).evidence(ratings=self.ratings(), **options)


def start(log: Any, experiment: str, **options: Any) -> Panel:
    """A started :class:`Panel` (``options``: kind, host, port, require_token)."""
    return Panel(log, experiment, **options).start()
