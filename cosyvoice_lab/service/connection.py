"""Opening the synthesis WebSocket, and keeping one open for the next task.

After ``task-finished`` a connection may carry another task (contract §6.1), and the docs
recommend reusing it: connecting costs 200-1000 ms. The service closes a connection after
``catalog.SYNTH_IDLE_SECONDS`` idle; one idle for ``Timeouts.reuse_idle`` is not reused.
A connection that failed a task, or whose task was abandoned, is closed, never kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import websocket

from cosyvoice_lab.credentials import Secret, redact
from cosyvoice_lab.errors import ConnectionFailed, RequestTimeout
from cosyvoice_lab.service import duplex
from cosyvoice_lab.service.timeouts import DEFAULT_TIMEOUTS
from cosyvoice_lab.service.wire import USER_AGENT


class Connector:
    """Opens authenticated WebSocket connections to ``ws_url``; with ``keep_alive``, keeps the
    last cleanly finished one for the next task.

    Args:
        key: the API key (revealed only into the ``Authorization`` header).
        workspace: sent as ``X-DashScope-WorkSpace`` when given (a callable: read at connect time).
        connect_timeout: seconds for the TCP + WebSocket handshake.
    """

    def __init__(
        self,
        ws_url: str,
        key: Secret,
        *,
        workspace: Callable[[], str | None] = lambda: None,
        connect_timeout: float = DEFAULT_TIMEOUTS.connect,
        keep_alive: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.ws_url, self._key, self._workspace = ws_url, key, workspace
        self.connect_timeout, self.keep_alive, self._clock = connect_timeout, keep_alive, clock
        self._lock = threading.Lock()
        self._idle: tuple[websocket.WebSocket, float] | None = None
        self.opened = 0  # connections opened (a reused one is not counted again)
        self.reused = 0  # tasks that ran on a kept connection

    def take(self) -> websocket.WebSocket | None:
        """The kept connection if there is a fresh enough one (it is no longer kept), else None."""
        with self._lock:
            idle, self._idle = self._idle, None
        if idle is None:
            return None
        ws, since = idle
        if not ws.connected or self._clock() - since > DEFAULT_TIMEOUTS.reuse_idle:
            duplex.close(ws, None)
            return None
        self.reused += 1
        return ws

    def release(self, ws: websocket.WebSocket, sender: duplex.Sender | None, *, finished: bool) -> None:
        """A task is over on ``ws``: keep it when the task finished cleanly and nothing else is
        kept, otherwise close it."""
        if sender is not None:
            sender.join(timeout=1.0)  # it sent finish-task before the server said task-finished
        if finished and self.keep_alive and ws.connected and (sender is None or not sender.is_alive()):
            with self._lock:
                if self._idle is None:
                    self._idle = (ws, self._clock())
                    return
        duplex.close(ws, sender)

    def close(self) -> None:
        """Close the kept connection, if any."""
        with self._lock:
            idle, self._idle = self._idle, None
        if idle is not None:
            duplex.close(idle[0], None)

    def open(self) -> websocket.WebSocket:
        """A new connection.

        Raises:
            APIError: the upgrade was refused (401/403 AuthenticationError, 429 RateLimited, ...).
            RequestTimeout / ConnectionFailed: no handshake (never sent).
        """
        headers = [
            f"Authorization: Bearer {self._key.reveal()}",
            f"User-Agent: {USER_AGENT} websocket-client/{websocket.__version__}",
        ]
        workspace = self._workspace()
        if workspace:
            headers.append(f"X-DashScope-WorkSpace: {workspace}")
        host = self.ws_url.split("://", 1)[-1].split("/", 1)[0]
        try:
            ws = websocket.create_connection(
                self.ws_url, header=headers, timeout=self.connect_timeout, enable_multithread=True
            )
        except websocket.WebSocketBadStatusException as exc:
            raise duplex.upgrade_error(exc, self._key) from None
        except (websocket.WebSocketTimeoutException, TimeoutError) as exc:
            raise RequestTimeout(
                f"no WebSocket handshake with {host} within {self.connect_timeout:g} s ({type(exc).__name__})",
                never_sent=True,
            ) from None
        except (OSError, websocket.WebSocketException) as exc:
            raise ConnectionFailed(
                f"WebSocket connection to {host} failed: {type(exc).__name__}: {redact(str(exc), self._key)}",
                never_sent=True,
            ) from None
        self.opened += 1
        return ws
