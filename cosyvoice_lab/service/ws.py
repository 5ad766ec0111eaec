"""Speaking with a designed voice: the duplex WebSocket protocol of contract §6.1.

One task per call, on its own connection::

    run-task ─▶ task-started ─▶ continue-task × n, finish-task
    ◀─ per sentence: sentence-begin, (sentence-synthesis + one binary frame) × k, sentence-end
    ◀─ task-finished (request_uuid, usage.characters)   or   task-failed (error_code, message)

``Synthesizer.speak`` returns a :class:`SpeechResult` (one ``Audio`` assembled from the
frames in order); ``Synthesizer.stream`` yields the frames as they arrive::

    synth = Synthesizer(client=client)          # same key and host as the DashScopeClient
    result = synth.speak(voice_id, "Hello. How are you?", rate=1.1)
    result.audio, result.characters, result.cost_cny

Retries are bounded and happen only where nothing can have been billed: before
``task-started`` (refused or dropped connection, 429 or 5xx at the upgrade, a throttled or
failed ``run-task``; no text has been sent yet), or on a transient ``task-failed``
(``InternalError`` …) that arrived before any audio. A task that produced audio is never
repeated silently: its failure is raised.

The API key lives in a ``Secret`` and is revealed only into the ``Authorization`` header.
Do not switch on ``websocket.enableTrace(True)`` with a real key: websocket-client then dumps
request headers to its logger.
"""
from __future__ import annotations

import io
import json
import logging
import random
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Sequence

import websocket

from cosyvoice_lab import __version__, catalog
from cosyvoice_lab.audio import Audio
from cosyvoice_lab.service.http import DashScopeClient, RetryPolicy, parse_retry_after
from cosyvoice_lab.credentials import Secret, resolve_api_key
from cosyvoice_lab.errors import (APIError, ConnectionFailed, Problem, RateLimited, RequestTimeout, ServerError,
                     SynthesisError, TransportError, ValidationError, api_error)
from cosyvoice_lab.service.speech import SpeechOptions, SpeechResult, fix_wav_sizes, split_text, text_problems, unknown_model_problem

log = logging.getLogger("cosyvoice_lab.service.ws")

THROTTLED_WAIT_S = 1.0  # after a throttled task-failed (no Retry-After there); limits are per second
# task-failed codes that mean "the service hiccupped", worth one more try when no audio came
TRANSIENT_CODES = ("InternalError", "ServiceUnavailable", "ModelUnavailable", "GatewayTimeout",
                   "Throttling", "Throttling.RateQuota", "Throttling.BurstRate")


class SpeechStream:
    """Iterate for the audio frames (bytes) as they arrive; ``result`` is set at the end.

    ``close()`` (or leaving a ``with`` block) abandons the task and closes the connection.
    """

    def __init__(self, gen):
        self._gen = gen
        self.result: SpeechResult | None = None

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._gen)
        except StopIteration as stop:
            self.result = stop.value
            raise StopIteration from None

    def close(self):
        self._gen.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- the synthesizer -------------------------------------------------------------------------------


def _container_rate(data: bytes, opts: SpeechOptions) -> int:
    """The rate the audio is really at: Opus knows only 8/12/16/24/48 kHz, so a 22050 request
    comes back at 24000; containers say so in their header (raw PCM cannot)."""
    if opts.format == "pcm" or not data:
        return opts.sample_rate
    import soundfile as sf

    try:
        return int(sf.info(io.BytesIO(data)).samplerate)
    except Exception:  # undecodable here: keep what was asked for; Audio will say more on use
        return opts.sample_rate


def ws_url_for(http_base: str) -> str:
    """The WebSocket URL that goes with an HTTP base (``https://h/api/v1`` → ``wss://h/api-ws/v1/inference``)."""
    scheme, _, rest = http_base.partition("://")
    host = rest.split("/", 1)[0]
    return f"{'wss' if scheme == 'https' else 'ws'}://{host}{catalog.WS_PATH}"


@dataclass
class _Task:
    """What one attempt has seen so far."""

    task_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: bool = False
    frames: list = field(default_factory=list)
    sentences: list = field(default_factory=list)
    characters: int | None = None
    request_id: str | None = None
    first_frame_at: float | None = None


class Synthesizer:
    """Speech synthesis with designed voices over the DashScope WebSocket.

    Args:
        api_key: key or ``Secret``; else ``client.api_key``; else ``DASHSCOPE_API_KEY`` or the
            credentials file.
        region: picks the WebSocket endpoint when neither ``ws_url`` nor ``client`` is given.
        ws_url: the WebSocket URL (e.g. the simulator's ``sim.ws_url``).
        client: a ``DashScopeClient`` of the same account, used to wait for a voice to be OK;
            its base URL gives the WebSocket URL when ``ws_url`` is not given.
        options: default ``SpeechOptions`` for every call.
        connect_timeout: seconds for the TCP + WebSocket handshake.
        timeout: longest silence (s) tolerated between two messages of a task.
        retry: ``RetryPolicy`` for failures before anything was billed; ``sleep`` injectable.
        chunk_chars: billed characters per continue-task (≤ catalog.SYNTH_CONTINUE_MAX_CHARS).
        throttle: called before every connection (retries included), e.g. ``RateLimiter.acquire``.
        ready_timeout / ready_interval: bounds of the wait for a DEPLOYING voice.

    Raises:
        CredentialsError: no API key found.
    """

    def __init__(self, *, api_key: str | Secret | None = None, region: str | None = None,
                 ws_url: str | None = None, client: DashScopeClient | None = None,
                 options: SpeechOptions | None = None, connect_timeout: float = catalog.CONNECT_TIMEOUT_S,
                 timeout: float = catalog.SYNTH_RECV_TIMEOUT_S, retry: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] = time.sleep, seed: int | None = None,
                 chunk_chars: int = catalog.SYNTH_CONTINUE_MAX_CHARS, throttle: Callable[[], None] | None = None,
                 ready_timeout: float = catalog.VOICE_READY_TIMEOUT_S,
                 ready_interval: float = catalog.VOICE_READY_INTERVAL_S):
        if not 1 <= chunk_chars <= catalog.SYNTH_CONTINUE_MAX_CHARS:
            raise ValueError(f"chunk_chars must be 1..{catalog.SYNTH_CONTINUE_MAX_CHARS}, got {chunk_chars}")
        region = region or (client.region if client else catalog.DEFAULT_REGION)
        if region not in catalog.REGIONS:
            raise ValueError(f"region must be one of {tuple(catalog.REGIONS)}, got {region!r}")
        self._key = resolve_api_key(api_key if api_key is not None else (client.api_key if client else None))
        self.region = region
        self.ws_url = ws_url or (ws_url_for(client.base_url) if client else catalog.REGIONS[region].ws_url)
        self.client = client
        self.options = (options or SpeechOptions()).validate()
        self.connect_timeout, self.timeout = connect_timeout, timeout
        self.retry, self._sleep, self._rng = retry, sleep, random.Random(seed)
        self.chunk_chars, self.throttle = chunk_chars, throttle
        self.ready_timeout, self.ready_interval = ready_timeout, ready_interval
        self._ready: set[str] = set()  # voices seen OK: no need to ask again

    def __repr__(self):
        return f"Synthesizer(ws_url={self.ws_url!r}, region={self.region!r}, api_key={self._key!r})"

    @property
    def api_key(self) -> Secret:
        return self._key

    # --- public verbs -----------------------------------------------------------------------
    def speak(self, voice_id: str, text: str, *, model: str | None = None, options: SpeechOptions | None = None,
              format: str | None = None, sample_rate: int | None = None, volume: int | None = None,
              rate: float | None = None, pitch: float | None = None, instruction: str | None = None,
              language_hints: Sequence[str] | None = None, seed: int | None = None,
              wait_ready: bool = True) -> SpeechResult:
        """Speak ``text`` with ``voice_id``; one recording of every sentence in order.

        ``model`` defaults to the model the voice id names; keyword options override
        ``options`` (else the synthesizer's defaults).

        Raises:
            ValidationError: empty or too long text, bad options, unknown model, or a model the
                voice is not bound to (all before anything is sent).
            VoiceNotReady / VoiceNotFound: the voice is not usable (when waiting for it).
            SynthesisError: the service failed the task (``.code``, ``.message``, ``.task_id``).
            AuthenticationError / RateLimited: the upgrade was refused (bad key; throttled after retries).
            ConnectionFailed / RequestTimeout: the connection failed or went silent.
        """
        stream = self.stream(voice_id, text, model=model, options=options, format=format,
                             sample_rate=sample_rate, volume=volume, rate=rate, pitch=pitch,
                             instruction=instruction, language_hints=language_hints, seed=seed,
                             wait_ready=wait_ready)
        for _ in stream:
            pass
        return stream.result

    def stream(self, voice_id: str, text: str, *, model: str | None = None, options: SpeechOptions | None = None,
               wait_ready: bool = True, **option_values) -> SpeechStream:
        """Like :meth:`speak`, but iterate the result for the audio frames (bytes) as they
        arrive; ``.result`` holds the ``SpeechResult`` once the iteration ends. Validation and
        the readiness wait happen here, before the first frame is requested."""
        opts = (options or self.options).replace(**option_values)
        model = self.check(voice_id, text, model=model, options=opts)
        if wait_ready:
            self.wait_ready(voice_id)
        return SpeechStream(self._run(voice_id, text, model, opts))

    def check(self, voice_id: str, text: str, *, model: str | None = None,
              options: SpeechOptions | None = None) -> str:
        """Every local rule at once; returns the model to use.

        Raises:
            ValidationError: listing each problem (text, model, options).
        """
        found = text_problems(text) + (options or self.options).problems()
        bound = catalog.model_of_voice(voice_id) if isinstance(voice_id, str) else None
        if not isinstance(voice_id, str) or not voice_id.strip():
            found.append(Problem("voice_id", "non_empty", "must be a voice id"))
        elif model is None and bound is None:
            found.append(Problem("model", "required", f"{voice_id!r} is not a designed voice id; pass model=..."))
        model = model or bound
        if model is not None and model not in catalog.MODELS:
            found.append(unknown_model_problem(model))
        elif bound and model != bound:
            found.append(Problem("model", "voice_model",
                                 f"voice {voice_id} is bound to model {bound}; synthesis must use {bound}, not {model}"))
        if found:
            raise ValidationError(found, context="cannot synthesize")
        return model

    def wait_ready(self, voice_id: str) -> None:
        """Wait (bounded) until a designed voice is OK, when a client is at hand.

        Raises:
            VoiceNotReady: UNDEPLOYED, or still DEPLOYING after ``ready_timeout``.
            VoiceNotFound: the account has no such voice.
        """
        if self.client is None or voice_id in self._ready or catalog.model_of_voice(voice_id) is None:
            return
        self.client.wait_until_ready(voice_id, timeout=self.ready_timeout, interval=self.ready_interval)
        self._ready.add(voice_id)

    # --- retries ------------------------------------------------------------------------------
    def _run(self, voice_id: str, text: str, model: str, opts: SpeechOptions):
        chunks = split_text(text, self.chunk_chars)
        t0 = time.perf_counter()
        for attempt in range(self.retry.max_attempts):
            task = _Task()
            try:
                yield from self._attempt(task, voice_id, model, opts, chunks)
                return self._result(task, t0, voice_id, text, model, opts, attempt + 1)
            except (TransportError, APIError, SynthesisError) as exc:
                if task.frames or attempt + 1 >= self.retry.max_attempts or not _retryable(exc, task):
                    raise
                wait = self.retry.delay(attempt, _retry_after(exc), self._rng)
                log.warning("synthesis: %s; nothing was billed, retrying in %.2f s (attempt %d of %d)",
                            exc, wait, attempt + 2, self.retry.max_attempts)
                self._sleep(wait)
        raise AssertionError("unreachable")

    def _result(self, task: _Task, t0: float, voice_id, text, model, opts, attempts) -> SpeechResult:
        data = b"".join(task.frames)
        if opts.format == "wav":
            data = fix_wav_sizes(data)
        characters = task.characters
        if characters is None:
            characters = catalog.billed_characters(text)
            log.warning("task %s reported no usage.characters; counting %d locally", task.task_id, characters)
        return SpeechResult(
            audio=Audio(data, opts.format, _container_rate(data, opts)), text=text, voice_id=voice_id, model=model,
            options=opts, characters=characters, cost_cny=catalog.synthesis_cost_cny(model, characters),
            request_id=task.request_id, task_id=task.task_id, sentences=list(task.sentences),
            first_chunk_latency_s=None if task.first_frame_at is None else task.first_frame_at - t0,
            latency_s=time.perf_counter() - t0, attempts=attempts, frames=len(task.frames))

    # --- one task on one connection -------------------------------------------------------------
    def _connect(self) -> websocket.WebSocket:
        if self.throttle is not None:
            self.throttle()
        headers = [f"Authorization: Bearer {self._key.reveal()}",
                   f"User-Agent: cosyvoice-lab/{__version__} websocket-client/{websocket.__version__}"]
        if self.client is not None and self.client.workspace:
            headers.append(f"X-DashScope-WorkSpace: {self.client.workspace}")
        host = self.ws_url.split("://", 1)[-1].split("/", 1)[0]
        try:
            return websocket.create_connection(self.ws_url, header=headers, timeout=self.connect_timeout,
                                               enable_multithread=True)
        except websocket.WebSocketBadStatusException as exc:
            raise _upgrade_error(exc) from None
        except (websocket.WebSocketTimeoutException, TimeoutError) as exc:
            raise RequestTimeout(f"no WebSocket handshake with {host} within {self.connect_timeout:g} s "
                                 f"({type(exc).__name__})", never_sent=True) from None
        except (OSError, websocket.WebSocketException) as exc:
            raise ConnectionFailed(f"WebSocket connection to {host} failed: {type(exc).__name__}: {exc}",
                                   never_sent=True) from None

    def _attempt(self, task: _Task, voice_id: str, model: str, opts: SpeechOptions, chunks: list[str]):
        ws = self._connect()
        sender = None
        try:
            ws.settimeout(self.timeout)
            _send(ws, task, _message("run-task", task.task_id, {
                "task_group": "audio", "task": "tts", "function": "SpeechSynthesizer", "model": model,
                "parameters": opts.to_parameters(voice_id), "input": {}}))
            while True:
                kind, data = self._receive(ws, task)
                if kind == "event":
                    if self._on_event(task, data):
                        return
                    if task.started and sender is None:
                        sender = _Sender(ws, task, chunks)
                elif kind == "audio":
                    if task.first_frame_at is None:
                        task.first_frame_at = time.perf_counter()
                    task.frames.append(data)
                    yield data
        finally:
            _close(ws, sender)

    def _receive(self, ws, task: _Task) -> tuple[str, object]:
        try:
            opcode, data = ws.recv_data()
        except websocket.WebSocketTimeoutException:
            raise RequestTimeout(f"task {task.task_id}: no message for {self.timeout:g} s"
                                 + _phase(task), never_sent=not task.started) from None
        except (OSError, websocket.WebSocketException) as exc:
            raise ConnectionFailed(f"task {task.task_id}: connection lost ({type(exc).__name__})" + _phase(task),
                                   never_sent=not task.started) from None
        if opcode == websocket.ABNF.OPCODE_BINARY:
            return "audio", data
        if opcode == websocket.ABNF.OPCODE_TEXT:
            try:
                return "event", json.loads(data)
            except ValueError:
                raise SynthesisError("ProtocolError", f"undecodable event {data[:100]!r}", task.task_id) from None
        code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
        reason = data[2:].decode("utf-8", "replace") if len(data) > 2 else ""
        raise ConnectionFailed(f"task {task.task_id}: server closed the connection (code {code}{': ' + reason if reason else ''})"
                               + _phase(task), never_sent=not task.started)

    @staticmethod
    def _on_event(task: _Task, message: dict) -> bool:
        """Digest one event; True when the task finished. Raises on task-failed."""
        header, payload = message.get("header") or {}, message.get("payload") or {}
        event = header.get("event")
        usage = payload.get("usage") or {}
        if isinstance(usage.get("characters"), int):
            task.characters = usage["characters"]
        if event == "task-started":
            task.started = True
        elif event == "result-generated":
            output = payload.get("output") or {}
            if output.get("type") == "sentence-begin" and output.get("original_text") is not None:
                task.sentences.append(output["original_text"])
        elif event == "task-finished":
            task.request_id = (header.get("attributes") or {}).get("request_uuid")
            return True
        elif event == "task-failed":
            raise SynthesisError(header.get("error_code") or "Unknown", header.get("error_message") or "",
                                 header.get("task_id") or task.task_id)
        else:
            log.debug("task %s: ignoring event %r", task.task_id, event)
        return False


class _Sender(threading.Thread):
    """Sends the text and finish-task while the caller reads, so a long text's audio can flow
    back meanwhile (a single thread writing everything first could dead-lock on full buffers)."""

    def __init__(self, ws, task: _Task, chunks: list[str]):
        super().__init__(name=f"synthesis-send-{task.task_id[:8]}", daemon=True)
        self.ws, self.task, self.chunks = ws, task, chunks
        self.start()

    def run(self):
        try:
            for chunk in self.chunks:
                _send(self.ws, self.task, _message("continue-task", self.task.task_id, {"input": {"text": chunk}}))
            _send(self.ws, self.task, _message("finish-task", self.task.task_id, {"input": {}}))
        except (OSError, websocket.WebSocketException, ConnectionFailed) as exc:
            # the reader sees the same broken connection (or the task-failed that caused it)
            log.debug("task %s: sending stopped: %s", self.task.task_id, type(exc).__name__)


def _close(ws, sender: "_Sender | None") -> None:
    """Close politely; if the sender is still blocked writing, cut the socket first."""
    if sender is not None and sender.is_alive():
        ws.abort()
        sender.join(timeout=5)
    try:
        ws.close(timeout=1)
    except (OSError, websocket.WebSocketException):
        pass
    finally:
        ws.shutdown()


def _message(action: str, task_id: str, payload: dict) -> str:
    return json.dumps({"header": {"action": action, "task_id": task_id, "streaming": "duplex"},
                       "payload": payload}, ensure_ascii=False)


def _send(ws, task: _Task, text: str) -> None:
    try:
        ws.send(text)
    except (OSError, websocket.WebSocketException) as exc:
        raise ConnectionFailed(f"task {task.task_id}: send failed ({type(exc).__name__})" + _phase(task),
                               never_sent=not task.started) from None


def _phase(task: _Task) -> str:
    if not task.started:
        return " before task-started (nothing billed)"
    if not task.frames:
        return " after task-started, before any audio"
    return f" after {len(task.frames)} audio frame(s): the task may have been billed; not retried"


def _retryable(exc: Exception, task: _Task) -> bool:
    """True when repeating cannot double-bill: nothing was sent, or a transient task-failed."""
    if isinstance(exc, SynthesisError):
        return exc.code in TRANSIENT_CODES
    if isinstance(exc, (RateLimited, ServerError)):
        return True
    return isinstance(exc, TransportError) and not task.started


def _retry_after(exc: Exception) -> float | None:
    """The server's Retry-After; a throttled task-failed carries none, and the limits are per
    second, so waiting one second is the least that can help."""
    if isinstance(exc, SynthesisError) and exc.code.startswith("Throttling"):
        return THROTTLED_WAIT_S
    return getattr(exc, "retry_after", None)


def _upgrade_error(exc: websocket.WebSocketBadStatusException) -> APIError:
    """A refused upgrade as an ``APIError`` (401/403 → AuthenticationError, 429 → RateLimited)."""
    status = exc.status_code or 0
    headers = {k.lower(): v for k, v in (exc.resp_headers or {}).items()}
    try:
        body = json.loads(exc.resp_body or b"")
        body = body if isinstance(body, dict) else {}
    except ValueError:
        body = {}
    default = {401: "WebSocket upgrade refused: the API key is invalid (or of another region)",
               403: "WebSocket upgrade refused: this key has no access",
               429: "WebSocket upgrade refused: requests rate limit exceeded"}.get(
        status, f"WebSocket upgrade refused with HTTP {status} {exc.status_message or ''}".strip())
    return api_error(status, body.get("code"), body.get("message") or default,
                     body.get("request_id") or headers.get("x-request-id"),
                     retry_after=parse_retry_after(headers.get("retry-after")))
