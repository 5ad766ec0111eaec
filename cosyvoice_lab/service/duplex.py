"""One synthesis task on one WebSocket connection (contract §6.1): the messages, the events,
the thread that sends the text, and how a refused upgrade or a closed socket is reported.

``ws.py`` drives these pieces (connect, retry, assemble the result); nothing here retries.
Every text the server sent that becomes an exception message is redacted of the key first.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
import uuid
from dataclasses import dataclass, field

import websocket

from cosyvoice_lab.credentials import Secret, redact
from cosyvoice_lab.errors import APIError, ConnectionFailed, RequestTimeout, SynthesisError
from cosyvoice_lab.service.http import answer_error
from cosyvoice_lab.service.retry import parse_retry_after

log = logging.getLogger("cosyvoice_lab.service.ws")


@dataclass
class TaskState:
    """What one attempt has seen so far."""

    task_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: bool = False
    frames: list[bytes] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    characters: int | None = None
    request_id: str | None = None
    first_frame_at: float | None = None

    def phase(self) -> str:
        """Where the task stood when it failed, and what that means for billing."""
        if not self.started:
            return " before task-started (nothing billed)"
        if not self.frames:
            return " after task-started, before any audio"
        return f" after {len(self.frames)} audio frame(s): the task may have been billed; not retried"


def message(action: str, task_id: str, payload: dict) -> str:
    """A client→server JSON frame (run-task, continue-task, finish-task)."""
    return json.dumps(
        {"header": {"action": action, "task_id": task_id, "streaming": "duplex"}, "payload": payload},
        ensure_ascii=False,
    )


def send(ws: websocket.WebSocket, task: TaskState, text: str) -> None:
    """Send one frame; a broken connection becomes ``ConnectionFailed``."""
    try:
        ws.send(text)
    except (OSError, websocket.WebSocketException) as exc:
        raise ConnectionFailed(
            f"task {task.task_id}: send failed ({type(exc).__name__})" + task.phase(), never_sent=not task.started
        ) from None


def receive(ws: websocket.WebSocket, task: TaskState, *, timeout: float, key: Secret) -> dict | bytes:
    """The next message: an event (dict) or an audio frame (bytes).

    Raises:
        RequestTimeout: nothing for ``timeout`` seconds.
        ConnectionFailed: the connection broke or the server closed it.
        SynthesisError: an undecodable event (``ProtocolError``).
    """
    try:
        opcode, data = ws.recv_data()
    except websocket.WebSocketTimeoutException:
        raise RequestTimeout(
            f"task {task.task_id}: no message for {timeout:g} s" + task.phase(), never_sent=not task.started
        ) from None
    except (OSError, websocket.WebSocketException) as exc:
        raise ConnectionFailed(
            f"task {task.task_id}: connection lost ({type(exc).__name__})" + task.phase(), never_sent=not task.started
        ) from None
    if opcode == websocket.ABNF.OPCODE_BINARY:
        return bytes(data)
    if opcode == websocket.ABNF.OPCODE_TEXT:
        try:
            event = json.loads(data)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            raise SynthesisError("ProtocolError", f"undecodable event {redact(repr(data), key)[:100]}", task.task_id)
        return event
    code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
    reason = redact(data[2:].decode("utf-8", "replace"), key) if len(data) > 2 else ""
    raise ConnectionFailed(
        f"task {task.task_id}: server closed the connection (code {code}"
        f"{': ' + reason if reason else ''})" + task.phase(),
        never_sent=not task.started,
    )


def digest(task: TaskState, event: dict, *, key: Secret) -> bool:
    """Take in one event; True when the task finished.

    Raises:
        SynthesisError: on ``task-failed`` (code and message redacted of ``key``).
    """
    header, payload = event.get("header") or {}, event.get("payload") or {}
    name = header.get("event")
    usage = payload.get("usage") or {}
    if isinstance(usage.get("characters"), int):
        task.characters = usage["characters"]
    if name == "task-started":
        task.started = True
    elif name == "result-generated":
        output = payload.get("output") or {}
        if output.get("type") == "sentence-begin" and output.get("original_text") is not None:
            task.sentences.append(output["original_text"])
    elif name == "task-finished":
        task.request_id = (header.get("attributes") or {}).get("request_uuid")
        return True
    elif name == "task-failed":
        raise SynthesisError(
            redact(str(header.get("error_code") or "Unknown"), key),
            redact(str(header.get("error_message") or ""), key),
            redact(str(header.get("task_id") or task.task_id), key),
        )
    else:
        log.debug("task %s: ignoring event %r", task.task_id, name)
    return False


class Sender(threading.Thread):
    """Sends the text and finish-task while the caller reads, so a long text's audio can flow
    back meanwhile (a single thread writing everything first could dead-lock on full buffers)."""

    def __init__(self, ws: websocket.WebSocket, task: TaskState, chunks: list[str]):
        super().__init__(name=f"synthesis-send-{task.task_id[:8]}", daemon=True)
        self.ws, self.task, self.chunks = ws, task, chunks
        self.start()

    def run(self) -> None:
        try:
            for chunk in self.chunks:
                send(self.ws, self.task, message("continue-task", self.task.task_id, {"input": {"text": chunk}}))
            send(self.ws, self.task, message("finish-task", self.task.task_id, {"input": {}}))
        except (OSError, websocket.WebSocketException, ConnectionFailed) as exc:
            # the reader sees the same broken connection (or the task-failed that caused it)
            log.debug("task %s: sending stopped: %s", self.task.task_id, type(exc).__name__)


def close(ws: websocket.WebSocket, sender: Sender | None) -> None:
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


def upgrade_error(exc: websocket.WebSocketBadStatusException, key: Secret) -> APIError:
    """A refused upgrade as an ``APIError`` (401/403 → AuthenticationError, 429 → RateLimited)."""
    status = exc.status_code or 0
    headers = {k.lower(): v for k, v in (exc.resp_headers or {}).items()}
    try:
        body = json.loads(exc.resp_body or b"")
        body = body if isinstance(body, dict) else {}
    except ValueError:
        body = {}
    default = {
        401: "WebSocket upgrade refused: the API key is invalid (or of another region)",
        403: "WebSocket upgrade refused: this key has no access",
        429: "WebSocket upgrade refused: requests rate limit exceeded",
    }.get(status, f"WebSocket upgrade refused with HTTP {status} {getattr(exc, 'status_message', None) or ''}".strip())
    return answer_error(
        key,
        status,
        body.get("code"),
        body.get("message") or default,
        body.get("request_id") or headers.get("x-request-id"),
        retry_after=parse_retry_after(headers.get("retry-after")),
    )
