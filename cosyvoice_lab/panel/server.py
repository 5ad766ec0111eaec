"""Panel: a listening round served in a background thread, with what the organiser asks of it.

``Panel(log, experiment, kind=...)`` opens a round of the log (a new one, or with ``round_id`` /
``resume`` one stored earlier, every rater's order and answers kept), ``start()`` binds the port
(127.0.0.1 unless ``host`` says otherwise; any other address requires the join token) and serves
the page from its own thread and event loop, so that a notebook stays usable. ``invite(name)``
gives a rater their personal link; ``progress()`` and ``evidence()`` read the answers back from
the log.

The server guards itself (``PanelSettings``): a connection that has not sent a whole request
head within ``header_timeout_s`` is closed, and of more than ``max_unfinished`` such connections
the oldest is closed at once, so a flood of unfinished requests never keeps a rater out; a
request body has ``body_timeout_s`` (408); an idle kept-alive connection ``idle_timeout_s``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import OrderedDict
from typing import Any

from cosyvoice_lab import catalog
from cosyvoice_lab.log.rounds import KINDS, NEW_ROUND_PREFIX
from cosyvoice_lab.panel.rounds import Preview, Round, RoundOptions, new_token
from cosyvoice_lab.panel.settings import PANEL, PanelSettings, is_loopback
from cosyvoice_lab.serving import LoopThread

WILDCARDS = ("", "0.0.0.0", "::")


def previews(log: Any, experiment: str) -> list[Preview]:
    """The experiment's takes a rater can hear: ok, with a preview, oldest first."""
    return [
        Preview(t.take_id, t.prompt or "", t.prompt or "", t.target_model)
        for t in log.takes(experiment=experiment, status="ok")
        if t.audio_path and not t.preview_missing
    ]


class Unfinished:
    """Connections that have not yet sent a whole request head (``served`` holds those that did):
    each is closed ``header_timeout_s`` after it opened, and beyond ``max_unfinished`` the oldest
    at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, settings: PanelSettings, served: set) -> None:
        self.loop, self.settings, self.served = loop, settings, served
        self.waiting: OrderedDict[Any, asyncio.TimerHandle] = OrderedDict()
        self.closed_early = 0  # how many were closed for dawdling or crowding (for tests and curiosity)

    def opened(self, transport: Any) -> None:
        for old in [t for t in self.waiting if t in self.served]:
            self.waiting.pop(old).cancel()
        while len(self.waiting) >= self.settings.max_unfinished:
            self._close(next(iter(self.waiting)))
        self.waiting[transport] = self.loop.call_later(self.settings.header_timeout_s, self._expire, transport)

    def lost(self, transport: Any) -> None:
        handle = self.waiting.pop(transport, None)
        if handle is not None:
            handle.cancel()
        self.served.discard(transport)

    def _expire(self, transport: Any) -> None:
        if transport in self.waiting and transport not in self.served:
            self._close(transport)

    def _close(self, transport: Any) -> None:
        handle = self.waiting.pop(transport, None)
        if handle is not None:
            handle.cancel()
        self.closed_early += 1
        transport.abort()


class Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, with :class:`Unfinished` told when it opens and ends."""

    def __init__(self, inner: Any, watch: Unfinished) -> None:
        self.inner, self.watch = inner, watch
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.inner.connection_made(transport)
        self.watch.opened(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> Any:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.watch.lost(self.transport)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class Panel:
    """A blind listening panel over one experiment of ``log``.

    Args:
        log: the ExperimentLog the answers go into (and the previews come from).
        experiment: the experiment whose ok takes are played.
        kind: "preference" (1-5 stars; nothing of model or prompt shown), "adherence" (1-5 stars;
            each take's description shown) or "pair" (two takes of one prompt from different
            models, both orders counterbalanced: which do you prefer?).
        host, port: where to listen (``PanelSettings.host`` / ``.port``; port 0 picks a
            free one). A host other than a loopback address serves other machines: then a
            random join token is required, carried by :attr:`url` and every invite link.
        require_token: force the token on (True) or off (False); default: off on loopback only.
        open_enrolment: whether raters may join by typing a name (default: on loopback only; on
            another host only invited raters, by their personal link). True off loopback: ValueError.
        round_id: resume this round of the log (its kind, items, raters, orders and answers).
        resume: resume the latest round of this experiment and kind instead of starting one.
        repeat_share, subset_size, must_play, no_preference, thank_you: a new round's options
            (``RoundOptions``); a resumed round keeps its own.
        settings: the server's limits (``PanelSettings``: raters, timeouts).

    Raises:
        ValueError: an unknown kind, an experiment without a playable take, a round id not in the
            log (or of another experiment), open enrolment off loopback.
    """

    def __init__(
        self,
        log: Any,
        experiment: str,
        *,
        kind: str = "preference",
        host: str | None = None,
        port: int | None = None,
        require_token: bool | None = None,
        open_enrolment: bool | None = None,
        round_id: str | None = None,
        resume: bool = False,
        repeat_share: float = 0.0,
        subset_size: int | None = None,
        must_play: bool = False,
        no_preference: bool = True,
        thank_you: bool = False,
        settings: PanelSettings | None = None,
    ) -> None:
        self.settings = settings or PANEL
        host = self.settings.host if host is None else host
        port = self.settings.port if port is None else port
        self.log, self.experiment, self.host = log, experiment, host
        if open_enrolment and not is_loopback(host):
            raise ValueError("open enrolment (joining by name) is for loopback only: invite raters on another host")
        self.open_enrolment = is_loopback(host) if open_enrolment is None else open_enrolment
        options = RoundOptions(repeat_share, subset_size, must_play, no_preference, thank_you)
        self.round = self._open_round(kind, round_id, resume, options)
        needed = not is_loopback(host) if require_token is None else require_token
        self.token: str | None = new_token(self.settings.token_bytes) if needed else None
        self.port: int | None = None
        self._requested_port = port
        self._serving = LoopThread("cosyvoice-panel", drain_executor=True)  # drain: the threads that read the log
        self._runner: Any = None
        self._server: Any = None
        self.unfinished: Unfinished | None = None
        self._stopped = threading.Event()

    def _open_round(self, kind: str, round_id: str | None, resume: bool, options: RoundOptions) -> Round:
        playable = previews(self.log, self.experiment)
        by_id = {p.take_id: p for p in playable}
        if round_id is None and resume:
            found = self.log.rounds.find(experiment=self.experiment, kind=kind, state="open")
            # a panel resumes the panel's rounds, never a notebook's blind round of the same experiment
            found = [r for r in found if r.round_id.startswith(NEW_ROUND_PREFIX)]
            round_id = found[-1].round_id if found else None
        if round_id is not None:
            record = self.log.rounds.get(round_id)
            if record is None or record.experiment != self.experiment:
                raise ValueError(f"no round {round_id!r} of experiment {self.experiment!r} in this log")
            return Round(self.log.rounds, record, by_id, max_raters=self.settings.max_raters)
        if kind not in KINDS:
            raise ValueError(f"a listening round is one of {KINDS}, got {kind!r}")
        if not playable:
            raise ValueError(f"experiment {self.experiment!r} has no ok take with a preview to listen to")
        return Round.create(self.log.rounds, self.experiment, kind, playable, options,
                            max_raters=self.settings.max_raters)  # fmt: skip

    @property
    def kind(self) -> str:
        return self.round.kind

    @property
    def round_id(self) -> str:
        return self.round.round_id

    @property
    def url(self) -> str:
        """The link raters open (with ``?token=`` when one is required)."""
        return self._base() + (f"?token={self.token}" if self.token else "")

    def _base(self) -> str:
        host = socket.gethostname() if self.host in WILDCARDS else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    def invite(self, name: str) -> str:
        """Invite a rater: their session (items, order) is drawn now and kept in the log; returns
        their personal link (an unguessable token; the log keeps only its sha256), valid for this
        round across restarts. Send it to them only.

        Raises:
            ValueError: a bad name, or a name already in the round (their first link still works).
            RoundFull: the round already has ``settings.max_raters`` raters.
        """
        invite = self.round.invite(name)
        query = (f"token={self.token}&" if self.token else "") + f"invite={invite}"
        return f"{self._base()}?{query}"

    def __repr__(self) -> str:  # never the token: a repr lands in notebooks and logs
        if not self.port:
            where = "stopped"
        else:
            where = f"on {self.host}, port {self.port}, join token required (see .url)" if self.token else self.url
        return (f"<Panel {self.kind} round {self.round_id} of {self.experiment!r} {where}; "
                f"{len(self.round.sessions())} rater(s)>")  # fmt: skip

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

        ctx = Context(self.log, self.experiment, self.round, self.token,
                      open_enrolment=self.open_enrolment, settings=self.settings)  # fmt: skip
        app = make_app(ctx)
        runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=1.0, keepalive_timeout=self.settings.idle_timeout_s
        )
        await runner.setup()
        loop = asyncio.get_running_loop()
        self.unfinished = watch = Unfinished(loop, self.settings, ctx.served)
        server = runner.server
        assert server is not None
        self._server = await loop.create_server(
            lambda: Guarded(server(), watch), self.host or None, self._requested_port, backlog=1024, reuse_address=True
        )
        self._runner = runner
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        self._server.close()
        await self._runner.cleanup()

    def stop(self) -> None:
        """Stop serving (safe to call twice). Answers already given are in the log; the round
        stays open, so a new panel with ``resume=True`` (or its ``round_id``) carries on."""
        if not self._serving.running or self._runner is None:
            return
        try:
            self._serving.stop(self._shutdown)
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
        """This round's star ratings as ``log.ratings`` gives them (take_id, rating, rater, kind,
        session_id, at): the latest of each rater for each take's first showing."""
        ids = [s.session_id for s in self.round.sessions()]
        frame = self.log.ratings.to_dataframe(self.experiment, kind=self.kind if self.kind != "pair" else None)
        return frame[frame["session_id"].isin(ids)].reset_index(drop=True)

    def choices(self):
        """A pair round's choices, one row per rater and pair (first showing): ``rater``,
        ``session_id``, ``take_a``, ``take_b`` (the pair as the round stores it), ``preferred``
        (a take id, or None: no preference)."""
        from cosyvoice_lab.panel import quality

        return quality.choices(self.round, self._answers())

    def _answers(self) -> dict:
        return self.log.rounds.answers([s.session_id for s in self.round.sessions()])

    def progress(self):
        """Per rater (in the order they were invited or joined): ``rater``, ``invited``,
        ``rated`` of ``total`` items answered (hidden repeats included), ``repeats`` answered
        twice, ``consistency`` and the ``method`` that measured it (``panel.quality``)."""
        from cosyvoice_lab.panel import quality

        return quality.progress(self.round, self._answers())

    def evidence(self, *, min_consistency: float | None = None, **options: Any):
        """The Evidence view of the experiment with this round's answers: star rounds as ratings
        (one question per round kind) and as choices, pair rounds as choices (exact binomial;
        Bradley-Terry for more than two models). Raters whose consistency is below
        ``min_consistency`` are left out, and the evidence says who (``Evidence.raters``); ``options``
        go to ``Comparison.evidence``."""
        from cosyvoice_lab.panel import quality
        from cosyvoice_lab.views.comparison import Comparison

        raters = quality.progress(self.round, self._answers(), min_consistency=min_consistency)
        kept = set(raters.loc[raters["included"], "session_id"])
        takes = self.log.takes(experiment=self.experiment)
        prompts = list(dict.fromkeys(t.prompt for t in takes))
        models = catalog.model_order(t.target_model for t in takes)
        ratings = self.ratings()
        ratings = ratings[ratings["session_id"].isin(kept)] if self.kind != "pair" else None
        ev = Comparison(self.log, self.experiment, prompts, models).evidence(ratings=ratings, **options)
        if self.kind == "pair":
            choices = self.choices()
            model_of = {t.take_id: t.target_model for t in takes}
            ev.preferences = quality.pair_preferences(choices[choices["session_id"].isin(kept)], model_of, list(models))
        ev.raters = raters
        return ev


def start(log: Any, experiment: str, **options: Any) -> Panel:
    """A started :class:`Panel` (``options``: as :class:`Panel` takes them)."""
    return Panel(log, experiment, **options).start()
