"""A server's event loop run in a background daemon thread, so that a notebook stays usable.

The simulator (offline/) and the listening panel (panel/) each serve an aiohttp app this way;
neither may import the other, so the thread and loop lifecycle they share lives here, in the
core (it imports no room and no web framework).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

STOP_TIMEOUT_S = 10.0  # a background server stopping: its shutdown, then its thread


class LoopThread:
    """One event loop in one daemon thread: :meth:`start` runs ``serve`` on it and returns once
    ``serve`` has finished (the port is bound) or raised; :meth:`stop` runs a shutdown coroutine
    there, stops the loop and joins the thread.

    Args:
        name: the thread's name.
        drain_executor: after the loop stops, wait for the loop's default executor's threads.
    """

    def __init__(self, name: str, *, drain_executor: bool = False) -> None:
        self.name = name
        self.drain_executor = drain_executor
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None

    def start(self, serve: Callable[[], Awaitable[Any]]) -> None:
        """Run ``serve()`` on a new loop in a new thread and keep the loop running; re-raises
        here what ``serve`` raised (and leaves nothing running). A no-op when already running."""
        if self.thread is not None:
            return
        ready, failure = threading.Event(), list[BaseException]()
        self.thread = threading.Thread(target=self._run, args=(serve, ready, failure), name=self.name, daemon=True)
        self.thread.start()
        ready.wait()
        if failure:
            self.thread.join()
            self.thread = None
            raise failure[0]

    def _run(self, serve: Callable[[], Awaitable[Any]], ready: threading.Event, failure: list) -> None:
        loop = self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # reported to start() instead of dying in the thread
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        if self.drain_executor:
            loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    def stop(self, shutdown: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run ``shutdown()`` on the loop (waiting up to :data:`STOP_TIMEOUT_S`), then stop the loop
        and join the thread, even when ``shutdown`` failed. Call only while running."""
        loop, thread = self.loop, self.thread
        assert loop is not None and thread is not None, "stop() of a loop thread that is not running"
        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=STOP_TIMEOUT_S)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=STOP_TIMEOUT_S)
            self.thread = None
