"""The synthesis WebSocket ``/api-ws/v1/inference`` (contract §6.1, §5.4).

One :class:`Session` per connection runs at most one task at a time: ``run-task`` →
``task-started``; ``continue-task`` adds text, and every sentence it completes is spoken at
once, while more text streams in (:mod:`cosyvoice_lab.offline.stream`): per sentence
``sentence-begin``, N × (``sentence-synthesis`` + one binary frame), ``sentence-end``
(cumulative ``usage.characters``), paced as documented (first audio 200-800 ms after the
text, real-time factor 0.1-0.5; both are options). ``finish-task`` speaks the rest, then
``task-finished``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from cosyvoice_lab import catalog, jsontext
from cosyvoice_lab.offline import engine
from cosyvoice_lab.offline.answers import (
    MSG_INTERNAL,
    MSG_INVALID_KEY,
    MSG_PARAMETER,
    MSG_RATE,
    ApiError,
    drop_connection,
    error_response,
    fault_error,
)
from cosyvoice_lab.offline.state import STATE, new_request_id
from cosyvoice_lab.offline.stream import Dropped, Pace, Producer, SentenceBuffer, event
from cosyvoice_lab.offline.voicing import instructed

MSG_NULL_TASK = "InvalidParameter: task can not be null"
MSG_NO_MODEL = "Missing required parameter 'payload.model'! Please follow the protocol!"
MSG_ENGINE_418 = "[tts:]Engine return error code: 418"
MSG_BAD_VOICE = "Request voice is invalid!"
MSG_EMPTY_TEXT = "Please ensure input text is valid."
MSG_SSML_LIMIT = "Text request limit violated, expected 1."
# what a failed run-task counts as in request_log, by error code
_STATUS = {"Throttling.RateQuota": 429, "InternalError": 500}


class TaskFailed(Exception):
    """Ends the current task with a ``task-failed`` event and closes the connection."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _invalid(name: str) -> TaskFailed:
    return TaskFailed("InvalidParameter", MSG_PARAMETER.format(name))


def _number(params: dict, name: str, default, lo, hi):
    value = params.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise _invalid(name)
    return value


def check_parameters(params: dict) -> dict:
    """Range-checked synthesis parameters: format, sample_rate, volume, rate, pitch, seed, language.

    The SDK's ``"format": "Default"`` with ``"sample_rate": 0`` means mp3 at 22050 Hz.
    """
    fmt = params.get("format") or catalog.SYNTH_DEFAULT_FORMAT
    if fmt == "Default":
        fmt = catalog.SYNTH_DEFAULT_FORMAT
    if fmt not in catalog.SYNTH_FORMATS:
        raise _invalid("format")
    rate = params.get("sample_rate") or catalog.SYNTH_DEFAULT_SAMPLE_RATE
    if isinstance(rate, bool) or rate not in catalog.SYNTH_SAMPLE_RATES:
        raise _invalid("sample_rate")
    instruction = params.get("instruction")
    if instruction is not None and not (
        isinstance(instruction, str) and catalog.billed_characters(instruction) <= catalog.SYNTH_INSTRUCTION_MAX
    ):  # CJK counts 2
        raise _invalid("instruction")
    _number(params, "seed", 0, *catalog.SYNTH_SEED_RANGE)  # checked; espeak has no use for it
    hints = params.get("language_hints")
    return {
        "format": fmt,
        "sample_rate": int(rate),
        "volume": _number(params, "volume", catalog.SYNTH_DEFAULT_VOLUME, *catalog.SYNTH_VOLUME_RANGE),
        "rate": float(_number(params, "rate", catalog.SYNTH_DEFAULT_RATE, *catalog.SYNTH_RATE_RANGE)),
        "pitch": float(_number(params, "pitch", catalog.SYNTH_DEFAULT_PITCH, *catalog.SYNTH_PITCH_RANGE)),
        "language": hints[0] if isinstance(hints, list) and hints and isinstance(hints[0], str) else None,
        "instruction": instruction,
        "ssml": params.get("enable_ssml") is True,
    }


@dataclass
class Task:
    """One synthesis task on a connection: its text so far and the producer speaking it."""

    task_id: str
    params: dict
    producer: Producer
    buffer: SentenceBuffer
    messages: int = 0  # texts received (SSML allows one)
    chars: int = 0  # billed characters received (the limits count these)
    runner: asyncio.Task | None = None  # the producer's run(), started after task-started
    started: float = field(default_factory=time.monotonic)


# --- the connection ------------------------------------------------------------------------


async def handle(request: web.Request) -> web.StreamResponse:
    """The handshake (auth and injected faults answered as plain HTTP), then the session."""
    state = request.app[STATE]
    started, rid = state.clock.monotonic(), new_request_id()
    await state.sleep(state.faults.latency)
    refusal = None
    if not state.authorized(request):
        refusal = error_response(ApiError(401, "InvalidApiKey", MSG_INVALID_KEY), rid)
    elif (fault := state.faults.draw()) is not None:
        if fault.kind == "error":
            refusal = error_response(fault_error(fault.status), rid)
        elif fault.kind == "drop":
            state.record(started, "ws-connect", 0, rid, "GET")
            return drop_connection(request)
        else:
            await state.sleep(state.faults.hang_seconds)
    if refusal is not None:
        state.record(started, "ws-connect", refusal.status, rid, "GET")
        return refusal
    ws = web.WebSocketResponse(autoping=True, max_msg_size=16 * 1024 * 1024)
    try:
        await ws.prepare(request)
    except ConnectionError:  # the client gave up waiting (e.g. during an injected hang)
        state.record(started, "ws-connect", 0, rid, "GET")
        return ws
    state.record(started, "ws-connect", 101, rid, "GET")
    state.sockets.add(ws)
    try:
        await Session(state, ws, request).run()
    except (ConnectionError, RuntimeError):
        pass  # the client went away mid-send: abort silently
    finally:
        state.sockets.discard(ws)
    return ws


class Session:
    """One WebSocket connection: a loop over client messages, at most one task at a time."""

    def __init__(self, state, ws: web.WebSocketResponse, request: web.Request):
        self.state, self.ws, self.request = state, ws, request
        self.task: Task | None = None
        self.last = time.monotonic()  # last client message: gap and idle timeouts count from here
        self._send_lock = asyncio.Lock()  # the producer and the message loop both send

    # --- the producer's sink (stream.Sink) ---------------------------------------------------
    async def text(self, message: str) -> None:
        """Send one event."""
        async with self._send_lock:
            await self.ws.send_str(message)

    async def audio(self, message: str, data: bytes) -> None:
        """Send a ``sentence-synthesis`` event and its binary frame, with nothing between them."""
        async with self._send_lock:
            await self.ws.send_str(message)
            await self.ws.send_bytes(data)

    async def sleep_until(self, when: float) -> None:
        """Sleep until monotonic time ``when`` (at once when the server stops)."""
        await self.state.sleep(when - time.monotonic())

    # --- the message loop ----------------------------------------------------------------------
    async def run(self) -> None:
        """Serve messages until the client leaves, a task fails or the connection idles out."""
        try:
            await self._serve()
        finally:
            await self._abort()  # a task in flight is aborted without task-finished

    async def _serve(self) -> None:
        while not self.ws.closed:
            limit = self.state.synth_gap_seconds if self.task else self.state.synth_idle_seconds
            try:
                msg = await self.ws.receive(timeout=max(1e-3, self._quiet_since() + limit - time.monotonic()))
            except asyncio.TimeoutError:
                if self._quiet_since() + limit > time.monotonic():
                    continue  # the audio took longer than the wait: the gap counts from its end
                await self._timeout(limit)
                return
            self.last = time.monotonic()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            if msg.type != WSMsgType.TEXT:
                continue  # the protocol has no client binary frames; ignore them
            try:
                await self._on_text(msg.data)
            except TaskFailed as failure:
                await self._fail(failure)
            except (ConnectionError, RuntimeError):
                raise  # the client went away mid-send (handled by the caller)
            except Exception:  # a simulator bug still ends the task the way the service would
                self.state.log.exception("synthesis task failed")
                await self._fail(TaskFailed("InternalError", MSG_INTERNAL))

    def _quiet_since(self) -> float:
        """Since when the connection waits for the client: its last message, or the end of the
        audio it is still being sent (a client may listen before it writes on)."""
        return max(self.last, self.task.producer.busy_until) if self.task else self.last

    async def _abort(self) -> None:
        """Stop the current task's producer, if any (never the caller itself)."""
        task, self.task = self.task, None
        runner = task.runner if task else None
        if runner is not None and runner is not asyncio.current_task() and not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner

    async def _timeout(self, limit: float) -> None:
        if self.task:
            await self._fail(TaskFailed("CLIENT_ERROR", f"request timeout after {limit:g} seconds."))
        else:
            await self.ws.close(code=1000, message=b"idle timeout")

    async def _fail(self, failure: TaskFailed, task_id: str | None = None) -> None:
        task_id = task_id if task_id is not None else (self.task.task_id if self.task else "")
        await self._abort()
        await self.text(event(task_id, "task-failed", error_code=failure.code, error_message=failure.message))
        await self.ws.close()

    async def _on_text(self, data: str) -> None:
        try:
            msg = jsontext.loads(data)
            header, payload = msg["header"], msg.get("payload")
            action = header["action"]
        except (ValueError, KeyError, TypeError):
            await self.ws.close(code=1007, message=b"malformed message")  # per the protocol
            return
        if action == "run-task":
            await self._run_task(header, payload)
        elif self.task is None or header.get("task_id") != self.task.task_id:
            raise TaskFailed("InvalidParameter", f"task {header.get('task_id')!r} is not running")
        elif action == "continue-task":
            self._continue(self.task, payload)
        elif action == "finish-task":
            await self._finish(self.task, payload)
        else:
            raise TaskFailed("InvalidParameter", f"unsupported action {action!r}")

    # --- run-task ----------------------------------------------------------------------------
    async def _run_task(self, header: dict, payload) -> None:
        state, rid, started = self.state, new_request_id(), self.state.clock.monotonic()
        await self._abort()  # a new run-task aborts the current task
        task_id = str(header.get("task_id") or "")
        try:
            task = await self._admit(task_id, payload)
        except TaskFailed as failure:
            state.record(started, "run-task", _STATUS.get(failure.code, 400), rid, "WS")
            await self._fail(failure, task_id)
            return
        state.record(started, "run-task", 200, rid, "WS")
        self.task = task
        await self.text(event(task_id, "task-started"))
        task.runner = asyncio.create_task(self._produce(task))
        self.last = time.monotonic()

    async def _admit(self, task_id: str, payload) -> Task:
        state = self.state
        if not isinstance(payload, dict) or not isinstance(payload.get("input"), dict):
            raise TaskFailed("InvalidParameter", MSG_NULL_TASK)
        if not payload.get("model"):
            raise TaskFailed("InvalidParameter", MSG_NO_MODEL)
        if state.limiter.admit((state.api_key, "synthesis"), state.synthesis_rps):
            raise TaskFailed("Throttling.RateQuota", MSG_RATE)
        fault = state.faults.draw()
        if fault and fault.kind == "error":
            raise TaskFailed("InternalError", MSG_INTERNAL)
        params = payload.get("parameters")
        params = check_parameters(params if isinstance(params, dict) else {})
        if params["instruction"] is not None and payload["model"] not in catalog.INSTRUCTION_MODELS:
            raise _invalid("instruction")  # cosyvoice-v3-plus takes none (contract §11)
        settings = self._voice(payload["model"], (payload.get("parameters") or {}).get("voice"))
        await state.sleep(state.faults.latency)
        if fault and fault.kind == "hang":
            await state.sleep(state.faults.hang_seconds)
        settings = settings.adjusted(rate=params["rate"], pitch=params["pitch"], volume=params["volume"])
        settings = instructed(settings, params["instruction"])  # its words shape the delivery
        pace = Pace.draw(state.first_audio_seconds, state.realtime_factor, state.timing)
        producer = Producer(task_id, settings, params, pace, self, drop_midway=bool(fault and fault.kind == "drop"))
        task = Task(task_id, params, producer, SentenceBuffer(ssml=params["ssml"]))
        text = payload["input"].get("text")
        if isinstance(text, str) and text:
            self._add_text(task, text)
        return task

    def _voice(self, model: str, voice_id) -> engine.VoiceSettings:
        if not isinstance(voice_id, str) or not voice_id:
            raise TaskFailed("InvalidParameter", MSG_BAD_VOICE)
        voice = self.state.registry.get(voice_id)
        if voice is None or voice["status"] != "OK" or voice["target_model"] != model:
            raise TaskFailed("InvalidParameter", MSG_ENGINE_418)
        return engine.VoiceSettings.from_dict(voice["settings"])

    async def _produce(self, task: Task) -> None:
        """Run the task's producer; then task-finished, or task-failed for a simulator bug."""
        try:
            await task.producer.run()
        except Dropped:  # injected fault: gone without task-finished
            drop_connection(self.request)
            return
        except (ConnectionError, RuntimeError):
            return  # the client went away mid-send
        except Exception:
            self.state.log.exception("synthesis task failed")
            await self._fail(TaskFailed("InternalError", MSG_INTERNAL), task.task_id)
            return
        await self._finished(task)

    # --- continue-task and finish-task -------------------------------------------------------
    def _continue(self, task: Task, payload) -> None:
        inp = payload.get("input") if isinstance(payload, dict) else None
        if not isinstance(inp, dict):
            return
        if isinstance(inp.get("text"), str):
            self._add_text(task, inp["text"])
        elif inp.get("flush") is True:  # SDK streaming_flush(): speak what has come so far
            task.producer.push(task.buffer.flush())

    @staticmethod
    def _add_text(task: Task, text: str) -> None:
        count = engine.billable(text)
        if count > catalog.SYNTH_CONTINUE_MAX_CHARS:
            raise TaskFailed(
                "InvalidParameter",
                f"Text too long: {count} characters in one request, the limit is {catalog.SYNTH_CONTINUE_MAX_CHARS}.",
            )
        if task.chars + count > catalog.SYNTH_TASK_MAX_CHARS:
            raise TaskFailed(
                "InvalidParameter",
                f"Text too long: {task.chars + count} characters in one "
                f"task, the limit is {catalog.SYNTH_TASK_MAX_CHARS}.",
            )
        if task.params["ssml"] and task.messages:
            raise TaskFailed("InvalidParameter", MSG_SSML_LIMIT)
        task.messages += 1
        task.chars += count
        sentences = task.buffer.add(text)
        if task.params["ssml"]:  # the one SSML text is complete as it comes
            sentences += task.buffer.flush()
        task.producer.push(sentences)

    async def _finish(self, task: Task, payload) -> None:
        started = self.state.clock.monotonic()
        inp = payload.get("input") if isinstance(payload, dict) else None
        if isinstance(inp, dict) and inp.get("directive") == "cancel":
            await self._abort()  # SDK streaming_cancel(): no more audio, just task-finished
            await self._finished(task)
            return
        task.producer.push(task.buffer.flush())
        if not task.producer.pushed:
            raise TaskFailed("InvalidParameter", MSG_EMPTY_TEXT)
        task.producer.end()
        if task.runner is not None:
            await asyncio.shield(task.runner)  # the task's events first, then the next message
        self.state.record(started, "finish-task", 200, new_request_id(), "WS")

    async def _finished(self, task: Task) -> None:
        if self.task is task:
            self.task = None
        # the raw text received is billed, whitespace included (contract §11); a cancelled task only what was spoken
        billed = task.chars if task.producer.ended else task.producer.characters
        payload = {"output": {"sentence": {"words": []}}, "usage": {"characters": billed}}
        await self.text(event(task.task_id, "task-finished", payload, attributes={"request_uuid": str(uuid.uuid4())}))
        self.last = time.monotonic()
