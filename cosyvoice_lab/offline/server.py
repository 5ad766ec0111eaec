"""The simulator's server: one aiohttp app on 127.0.0.1 serving the customization POST route
and the synthesis WebSocket, run by :class:`Simulator` in a background thread with its own
event loop.

Every HTTP answer carries a ``request_id`` (body) and an ``x-request-id`` header; every request
gets one log line on the ``cosyvoice_lab.offline`` logger (method, action, status, latency,
request id) and never the API key.
"""

from __future__ import annotations

import asyncio
import logging
import os

from aiohttp import web

from cosyvoice_lab import catalog
from cosyvoice_lab.credentials import OFFLINE_API_KEY
from cosyvoice_lab.offline import customization, engine, profiles, ws
from cosyvoice_lab.offline.faults import Faults
from cosyvoice_lab.offline.registry import Registry
from cosyvoice_lab.offline.state import LOGGER_NAME, SIMULATOR, STATE, Clock, State, new_request_id
from cosyvoice_lab.serving import LoopThread

HOST = "127.0.0.1"  # never 0.0.0.0: the simulator's key is documented, not secret
HTTP_PREFIX = "/api/v1"


async def _not_found(request: web.Request) -> web.Response:
    rid = new_request_id()
    state = request.app[STATE]
    state.record(state.clock.monotonic(), request.path, 404, rid, request.method)
    return web.json_response(
        {"code": "NotFound", "message": "Not found!", "request_id": rid}, status=404, headers={"x-request-id": rid}
    )


def make_app(state: State) -> web.Application:
    """The aiohttp application serving ``state``."""
    app = web.Application(client_max_size=state.max_body_bytes)
    app[STATE] = state
    app.router.add_post(HTTP_PREFIX + catalog.CUSTOMIZATION_PATH, customization.handle)
    app.router.add_get(catalog.WS_PATH, ws.handle)
    app.router.add_get(catalog.WS_PATH + "/", ws.handle)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app


def _span(value) -> tuple[float, float]:
    """A (low, high) range from a pair or one number."""
    low, high = (value, value) if isinstance(value, (int, float)) else value
    if not 0 <= low <= high:
        raise ValueError(f"expected 0 <= low <= high, got {value!r}")
    return float(low), float(high)


def resolve_api_key(api_key: str | None) -> str:
    """The one key the simulator accepts: the argument, else ``DASHSCOPE_API_KEY``, else
    :data:`credentials.OFFLINE_API_KEY`."""
    return api_key or os.environ.get("DASHSCOPE_API_KEY") or OFFLINE_API_KEY


class _HybridStart:
    """``Simulator.start(**options)`` builds and starts one; ``sim.start()`` starts ``sim``."""

    def __get__(self, obj, cls):
        if obj is None:
            return lambda **options: cls(**options).start()
        return obj._start


class Simulator:
    """A running (or startable) offline DashScope stand-in on 127.0.0.1.

    Options are those of :func:`cosyvoice_lab.offline.serve`. While it runs they can be
    changed on ``sim.state`` (``sim.state.synthesis_rps = 1``, ``sim.state.registry.quota = 5``)
    and ``sim.model_profiles``. Use it as a context manager, or ``start()``/``stop()``. No repr
    shows the key.
    """

    start = _HybridStart()

    def __init__(
        self,
        *,
        port: int = 0,
        api_key: str | None = None,
        state_dir=None,
        faults: Faults | dict | None = None,
        intl: bool = False,
        deploying_seconds: float = 0.0,
        enrollment_rps: float | None = catalog.ENROLLMENT_RPS,
        synthesis_rps: float | None = catalog.SYNTHESIS_RPS,
        log: logging.Logger | None = None,
        quota: int = catalog.VOICE_QUOTA,
        synth_gap_seconds: float = catalog.SYNTH_GAP_SECONDS,
        synth_idle_seconds: float = catalog.SYNTH_IDLE_SECONDS,
        model_profiles=None,
        seed: int | None = None,
        first_audio_seconds: tuple[float, float] = SIMULATOR.first_audio_seconds,
        realtime_factor: tuple[float, float] = SIMULATOR.realtime_factor,
        max_body_bytes: int = SIMULATOR.max_body_bytes,
        read_timeout_seconds: float = SIMULATOR.read_timeout_seconds,
    ):
        self._requested_port = port
        clock = Clock()
        self.state = State(
            api_key=resolve_api_key(api_key),
            registry=Registry(state_dir, quota=quota, clock=clock.time),
            clock=clock,
            faults=Faults.coerce(faults),
            intl=intl,
            deploying_seconds=deploying_seconds,
            enrollment_rps=enrollment_rps,
            synthesis_rps=synthesis_rps,
            synth_gap_seconds=synth_gap_seconds,
            synth_idle_seconds=synth_idle_seconds,
            first_audio_seconds=_span(first_audio_seconds),
            realtime_factor=_span(realtime_factor),
            max_body_bytes=max_body_bytes,
            read_timeout_seconds=read_timeout_seconds,
            profiles=profiles.resolve(model_profiles),
            log=log or logging.getLogger(LOGGER_NAME),
        )
        self.state.seed(seed)
        self.port: int | None = None
        self._serving = LoopThread("cosyvoice-offline")
        self._runner: web.AppRunner | None = None

    @property
    def clock(self) -> Clock:
        """The simulator's clock: ``sim.clock.advance(seconds)`` moves its time forward (rate
        windows refill, deploying voices turn OK) where a test would otherwise sleep."""
        return self.state.clock

    def __repr__(self):
        where = f"http://{HOST}:{self.port}" if self.port else "stopped"
        return f"<offline DashScope simulator {where}>"

    # --- lifecycle -------------------------------------------------------------------------
    def _start(self) -> Simulator:
        """Start serving in a background thread; returns self once the port is bound."""
        self._serving.start(self._serve)
        return self

    async def _serve(self) -> None:
        self.state.stopping = asyncio.Event()
        # Our own log line per request replaces aiohttp's access log.
        # keepalive_timeout also closes a connection whose request headers never complete;
        # lingering_time is how long the rest of a refused body is read and dropped
        self._runner = web.AppRunner(
            make_app(self.state),
            access_log=None,
            shutdown_timeout=1.0,
            keepalive_timeout=self.state.read_timeout_seconds,
            lingering_time=min(2.0, self.state.read_timeout_seconds),
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, self._requested_port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        """Stop serving (open connections are closed, hanging requests released)."""
        runner, stopping = self._runner, self.state.stopping
        if not self._serving.running or runner is None or stopping is None:
            return

        async def shutdown():
            stopping.set()
            # aiohttp would wait for open WebSockets until its shutdown timeout: close them
            for sock in list(self.state.sockets):
                await sock.close(code=1001, message=b"server shutdown")
            await runner.cleanup()

        try:
            self._serving.stop(shutdown)
        finally:
            self.port = None

    def __enter__(self) -> Simulator:
        return self._start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what clients and tests need -----------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The HTTP base, e.g. ``http://127.0.0.1:PORT/api/v1``."""
        return f"http://{HOST}:{self.port}{HTTP_PREFIX}"

    @property
    def ws_url(self) -> str:
        """The synthesis WebSocket URL, e.g. ``ws://127.0.0.1:PORT/api-ws/v1/inference``."""
        return f"ws://{HOST}:{self.port}{catalog.WS_PATH}"

    @property
    def api_key(self) -> str:
        """The one key this simulator accepts."""
        return self.state.api_key

    @property
    def faults(self) -> Faults:
        """The live fault settings; mutate them (``sim.faults.error_rate = 0.3``) or assign."""
        return self.state.faults

    @faults.setter
    def faults(self, value: Faults | dict | None) -> None:
        self.state.faults = Faults.coerce(value)

    @property
    def request_log(self) -> list:
        """``(monotonic time, action, HTTP status)`` per request (status 0 = dropped)."""
        return list(self.state.request_log)

    @property
    def model_profiles(self) -> dict[str, profiles.ModelProfile]:
        """Every model's :class:`~cosyvoice_lab.offline.profiles.ModelProfile`; assign a
        ``model_profiles`` mapping (as for ``serve``) to change them while it runs."""
        return dict(self.state.profiles)

    @model_profiles.setter
    def model_profiles(self, value) -> None:
        self.state.profiles = profiles.resolve(value)

    def set_status(self, voice_id: str, status: str) -> None:
        """Force a voice's status, e.g. ``UNDEPLOYED``; raises KeyError for an unknown voice."""
        self.state.registry.set_status(voice_id, status)

    def voices(self) -> list[dict]:
        """The stored voices (newest first), including their engine settings."""
        return self.state.registry.voices()

    def plant(self, voice_id: str, *, voice_prompt: str = "", preview_text: str = "", language: str = "zh") -> dict:
        """Store a voice made elsewhere under ``voice_id``, as an account holds voices made with
        another tool or design family (capitals in the prefix, Qwen-Audio-TTS models; contract
        §11). It lists and queries like any other; a CosyVoice one also speaks."""
        m = catalog.VOICE_ID_RE.match(voice_id)
        model, prefix = (m.group("model"), m.group("prefix")) if m else ("", None)
        settings = engine.settings_for(voice_prompt, language, voice_id, self.state.profile(model))
        voice = {"voice_id": voice_id, "target_model": model, "prefix": prefix, "voice_prompt": voice_prompt}
        voice |= {"preview_text": preview_text, "language": language, "settings": settings.to_dict()}
        return self.state.registry.add(voice)

    def reset(self) -> None:
        """Forget all voices (also those of other simulators sharing the state dir), counted
        requests and the request log; switch faults off."""
        self.state.registry.clear()
        self.state.limiter.reset()
        self.state.request_log.clear()
        self.state.faults = Faults()
