"""Speaking with a designed voice: the duplex WebSocket protocol of contract §6.1.

One task per call, on its own connection (or, with ``keep_alive``, on the last one that
finished cleanly: ``connection.py``)::

    run-task ─▶ task-started ─▶ continue-task × n, finish-task
    ◀─ per sentence: sentence-begin, (sentence-synthesis + one binary frame) × k, sentence-end
    ◀─ task-finished (request_uuid, usage.characters)   or   task-failed (error_code, message)

``Synthesizer.speak`` returns a :class:`SpeechResult` (one ``Audio`` assembled from the
frames in order); ``Synthesizer.stream`` yields the frames as they arrive::

    synth = Synthesizer(client=client)          # same key and host as the DashScopeClient
    result = synth.speak(voice_id, "Hello. How are you?", rate=1.1)
    result.audio, result.characters, result.cost_cny

Retries go through the one loop of ``retry.py`` and happen only where nothing can have been
billed: before ``task-started`` (refused or dropped connection, 429 or 5xx at the upgrade, a
throttled or failed ``run-task``; no text has been sent yet), or on a transient ``task-failed``
(``InternalError`` …) that arrived before any audio. A task that produced audio is never
repeated silently: its failure is raised. The messages and events of one task live in
``duplex.py``.

The API key lives in a ``Secret`` and is revealed only into the ``Authorization`` header.
Do not switch on ``websocket.enableTrace(True)`` with a real key: websocket-client then dumps
request headers to its logger.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Generator, Sequence

import websocket

from cosyvoice_lab import catalog
from cosyvoice_lab.audio import Audio
from cosyvoice_lab.credentials import Secret, resolve_api_key
from cosyvoice_lab.errors import (
    ConnectionFailed,
    Problem,
    RateLimited,
    ServerError,
    SynthesisError,
    TransportError,
    ValidationError,
)
from cosyvoice_lab.service import duplex
from cosyvoice_lab.service.connection import Connector
from cosyvoice_lab.service.duplex import TaskState
from cosyvoice_lab.service.http import DashScopeClient
from cosyvoice_lab.service.retry import DEFAULT_RETRY, Retrier, RetryPolicy, retry_after_of
from cosyvoice_lab.service.speech import (
    Frames,
    SpeechOptions,
    SpeechResult,
    SpeechStream,
    fix_wav_sizes,
    model_problems,
    split_text,
    text_problems,
    unknown_model_problem,
)
from cosyvoice_lab.service.timeouts import DEFAULT_TIMEOUTS
from cosyvoice_lab.service.wire import without_login, ws_url_for

log = logging.getLogger("cosyvoice_lab.service.ws")

# task-failed codes that mean "the service hiccupped", worth one more try when no audio came
TRANSIENT_CODES = (
    "InternalError",
    "ServiceUnavailable",
    "ModelUnavailable",
    "GatewayTimeout",
    "Throttling",
    "Throttling.RateQuota",
    "Throttling.BurstRate",
)


def nothing_billed(exc: Exception, task: TaskState) -> bool:
    """True when repeating the task cannot bill twice: no audio came, and either nothing was
    sent yet (refused or dropped before ``task-started``) or the service hiccupped."""
    if task.frames:
        return False
    if isinstance(exc, SynthesisError):
        return exc.code in TRANSIENT_CODES
    if isinstance(exc, (RateLimited, ServerError)):
        return True
    return isinstance(exc, TransportError) and not task.started


def throttled_wait(exc: BaseException) -> float | None:
    """The server's Retry-After; a throttled task-failed carries none, and the limits are per
    second, so waiting one second is the least that can help."""
    if isinstance(exc, SynthesisError) and exc.code.startswith("Throttling"):
        return DEFAULT_RETRY.throttled_wait
    return retry_after_of(exc)


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
        throttle: called before every task (retries included), e.g. ``RateLimiter.acquire``.
        keep_alive: run the next task on the connection the last one finished on (the docs
            recommend it; connecting costs 200-1000 ms); ``close()`` closes it.
        ready_timeout / ready_interval: bounds of the wait for a DEPLOYING voice.

    Raises:
        CredentialsError: no API key found, or one with a control character or whitespace inside.
    """

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        region: str | None = None,
        ws_url: str | None = None,
        client: DashScopeClient | None = None,
        options: SpeechOptions | None = None,
        connect_timeout: float = DEFAULT_TIMEOUTS.connect,
        timeout: float = DEFAULT_TIMEOUTS.receive,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
        chunk_chars: int = catalog.SYNTH_CONTINUE_MAX_CHARS,
        throttle: Callable[[], None] | None = None,
        ready_timeout: float = DEFAULT_TIMEOUTS.voice_ready,
        ready_interval: float = DEFAULT_TIMEOUTS.voice_ready_interval,
        keep_alive: bool = False,
    ) -> None:
        if not 1 <= chunk_chars <= catalog.SYNTH_CONTINUE_MAX_CHARS:
            raise ValueError(f"chunk_chars must be 1..{catalog.SYNTH_CONTINUE_MAX_CHARS}, got {chunk_chars}")
        region = region or (client.region if client else catalog.DEFAULT_REGION)
        if region not in catalog.REGIONS:
            raise ValueError(f"region must be one of {tuple(catalog.REGIONS)}, got {region!r}")
        self._key = resolve_api_key(api_key if api_key is not None else (client.api_key if client else None))
        self.region = region
        self.ws_url = without_login(ws_url, "ws_url") if ws_url else None
        self.ws_url = self.ws_url or (ws_url_for(client.base_url) if client else catalog.REGIONS[region].ws_url)
        self.client = client
        self.options = (options or SpeechOptions()).validate()
        self.connect_timeout, self.timeout = connect_timeout, timeout
        self.retry = retry
        self._retrier = Retrier(retry, sleep=sleep, seed=seed, logger=log)
        self.chunk_chars, self.throttle = chunk_chars, throttle
        self.ready_timeout, self.ready_interval = ready_timeout, ready_interval
        self._ready: set[str] = set()  # voices seen OK: no need to ask again
        workspace = (lambda: client.workspace) if client is not None else (lambda: None)
        self.connector = Connector(
            self.ws_url, self._key, workspace=workspace, connect_timeout=connect_timeout, keep_alive=keep_alive
        )

    def __repr__(self) -> str:
        return f"Synthesizer(ws_url={self.ws_url!r}, region={self.region!r}, api_key={self._key!r})"

    @property
    def api_key(self) -> Secret:
        return self._key

    def close(self) -> None:
        """Close the connection kept for the next task (``keep_alive``), if any."""
        self.connector.close()

    # --- public verbs -----------------------------------------------------------------------
    def speak(
        self,
        voice_id: str,
        text: str,
        *,
        model: str | None = None,
        options: SpeechOptions | None = None,
        format: str | None = None,
        sample_rate: int | None = None,
        volume: int | None = None,
        rate: float | None = None,
        pitch: float | None = None,
        instruction: str | None = None,
        language_hints: Sequence[str] | None = None,
        seed: int | None = None,
        wait_ready: bool = True,
    ) -> SpeechResult:
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
        stream = self.stream(
            voice_id,
            text,
            model=model,
            options=options,
            format=format,
            sample_rate=sample_rate,
            volume=volume,
            rate=rate,
            pitch=pitch,
            instruction=instruction,
            language_hints=language_hints,
            seed=seed,
            wait_ready=wait_ready,
        )
        for _ in stream:
            pass
        assert stream.result is not None  # a finished stream always holds its result
        return stream.result

    def stream(
        self,
        voice_id: str,
        text: str,
        *,
        model: str | None = None,
        options: SpeechOptions | None = None,
        wait_ready: bool = True,
        **option_values: object,
    ) -> SpeechStream:
        """Like :meth:`speak`, but iterate the result for the audio frames (bytes) as they
        arrive; ``.result`` holds the ``SpeechResult`` once the iteration ends. Validation and
        the readiness wait happen here, before the first frame is requested."""
        opts = (options or self.options).replace(**option_values)
        model = self.check(voice_id, text, model=model, options=opts)
        if wait_ready:
            self.wait_ready(voice_id)
        return SpeechStream(self._run(voice_id, text, model, opts))

    def check(self, voice_id: str, text: str, *, model: str | None = None, options: SpeechOptions | None = None) -> str:
        """Every local rule at once; returns the model to use.

        Raises:
            ValidationError: listing each problem (text, model, options).
        """
        found = text_problems(text) + (options := options or self.options).problems()
        bound = catalog.model_of_voice(voice_id) if isinstance(voice_id, str) else None
        if not isinstance(voice_id, str) or not voice_id.strip():
            found.append(Problem("voice_id", "non_empty", "must be a voice id"))
        elif catalog.family_of_voice(voice_id) is catalog.FAMILIES[catalog.QWEN_FAMILY]:
            found.append(
                Problem(
                    "voice_id",
                    "cosyvoice_voice",
                    f"{voice_id} is a Qwen3-TTS-VD voice: it speaks through Qwen's own synthesis APIs, "
                    "which this lab does not implement (only CosyVoice voices speak here)",
                )
            )
        elif model is None and bound is None:
            found.append(Problem("model", "required", f"{voice_id!r} is not a designed voice id; pass model=..."))
        model = model or bound
        if model is not None and model not in catalog.MODELS:
            found.append(unknown_model_problem(model))
        elif bound and model != bound:
            found.append(
                Problem(
                    "model",
                    "voice_model",
                    f"voice {voice_id} is bound to model {bound}; synthesis must use {bound}, not {model}",
                )
            )
        found += model_problems(options, model, voice_id)  # warns of a doubtful language
        if found or model is None:  # no model means a problem was found
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
    def _run(self, voice_id: str, text: str, model: str, opts: SpeechOptions) -> Frames:
        chunks = split_text(text, self.chunk_chars)
        t0 = time.perf_counter()
        tasks: list[TaskState] = []  # one per attempt; whether to retry is judged on the latest
        for attempt in self._retrier.attempts(
            "synthesis",
            retryable=lambda exc: nothing_billed(exc, tasks[-1]),
            retry_after=throttled_wait,
            note="nothing was billed",
        ):
            tasks.append(TaskState())
            with attempt:
                yield from self._attempt(tasks[-1], voice_id, model, opts, chunks)
                return self._result(tasks[-1], t0, voice_id, text, model, opts, attempt.number)
        raise AssertionError("unreachable: the last attempt raises")

    def _result(
        self, task: TaskState, t0: float, voice_id: str, text: str, model: str, opts: SpeechOptions, attempts: int
    ) -> SpeechResult:
        data = b"".join(task.frames)
        if opts.format == "wav":
            data = fix_wav_sizes(data)
        characters = task.characters
        if characters is None:
            characters = catalog.billed_characters(text)
            log.warning("task %s reported no usage.characters; counting %d locally", task.task_id, characters)
        return SpeechResult(
            audio=Audio(data, opts.format, _container_rate(data, opts)),
            text=text,
            voice_id=voice_id,
            model=model,
            options=opts,
            characters=characters,
            cost_cny=catalog.synthesis_cost_cny(model, characters),
            request_id=task.request_id,
            task_id=task.task_id,
            sentences=list(task.sentences),
            first_chunk_latency_s=None if task.first_frame_at is None else task.first_frame_at - t0,
            latency_s=time.perf_counter() - t0,
            attempts=attempts,
            frames=len(task.frames),
        )

    # --- one task on one connection -------------------------------------------------------------
    def _attempt(
        self, task: TaskState, voice_id: str, model: str, opts: SpeechOptions, chunks: list[str]
    ) -> Generator[bytes, None, None]:
        if self.throttle is not None:
            self.throttle()  # a task is what the limit counts, on a new connection or a kept one
        kept = self.connector.take()
        if kept is not None:
            try:
                yield from self._task_on(kept, task, voice_id, model, opts, chunks)
                return
            except ConnectionFailed:
                if task.started:  # it was alive: the failure is the task's
                    raise
                log.debug("the kept connection had gone away; connecting again")
        yield from self._task_on(self.connector.open(), task, voice_id, model, opts, chunks)

    def _task_on(
        self, ws: websocket.WebSocket, task: TaskState, voice_id: str, model: str, opts: SpeechOptions, chunks: list
    ) -> Generator[bytes, None, None]:
        sender, finished = None, False
        try:
            ws.settimeout(self.timeout)
            run = {"task_group": "audio", "task": "tts", "function": "SpeechSynthesizer", "model": model}
            payload = {**run, "parameters": opts.to_parameters(voice_id), "input": {}}
            duplex.send(ws, task, duplex.message("run-task", task.task_id, payload))
            while True:
                data = duplex.receive(ws, task, timeout=self.timeout, key=self._key)
                if isinstance(data, bytes):
                    if task.first_frame_at is None:
                        task.first_frame_at = time.perf_counter()
                    task.frames.append(data)
                    yield data
                elif duplex.digest(task, data, key=self._key):
                    finished = True
                    return
                elif task.started and sender is None:
                    sender = duplex.Sender(ws, task, chunks)
        finally:
            self.connector.release(ws, sender, finished=finished)
