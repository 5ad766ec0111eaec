"""Where a Lab's requests go: the real DashScope service, a server at another base URL (a
separately started simulator, or a proxy), or the offline simulator started in this process.

The client code is the same for all of them; only the base URL and the key differ.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cosyvoice_lab import catalog
from cosyvoice_lab.credentials import find_api_key
from cosyvoice_lab.service import DashScopeClient, RetryPolicy

BACKENDS = ("auto", "dashscope", "offline")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def connect(
    backend: str,
    *,
    api_key=None,
    base_url: str | None = None,
    region: str,
    retry: RetryPolicy,
    timeout: float,
    throttle: Callable[[], None],
    simulator_folder: Path,
) -> tuple[DashScopeClient, Any]:
    """The client for ``backend``, and the in-process simulator it talks to (None if another).

    ``"auto"`` is the real service when a key is found (``api_key``, ``DASHSCOPE_API_KEY``, the
    credentials file), else the offline simulator, started on 127.0.0.1 with its voices kept in
    ``simulator_folder``. ``base_url`` (default ``DASHSCOPE_HTTP_BASE_URL``, as the dashscope SDK
    reads it) points at another server: a loopback one counts as offline.

    Raises:
        ValueError: an unknown backend. CredentialsError: ``"dashscope"`` without a key.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto', 'dashscope' or 'offline', got {backend!r}")
    common: dict[str, Any] = {"region": region, "retry": retry, "create_timeout": timeout, "throttle": throttle}
    if backend != "offline":  # the dashscope SDK's own variable for another endpoint (contract §7.1)
        base_url = base_url or os.environ.get("DASHSCOPE_HTTP_BASE_URL") or None
    key = find_api_key(api_key) if backend != "offline" or base_url else None
    if base_url:  # a separately started simulator (or a proxy to the real service)
        offline = backend == "offline" or urlparse(base_url).hostname in LOOPBACK_HOSTS
        # the simulator's documented key only for a simulator; anything else needs a real one
        return DashScopeClient(
            api_key=key or (catalog.OFFLINE_API_KEY if offline else None),
            base_url=base_url,
            backend="offline" if offline else "dashscope",
            **common,
        ), None
    if backend == "dashscope" or (backend == "auto" and key is not None):
        return DashScopeClient(api_key=key, backend="dashscope", **common), None  # raises without a key
    from cosyvoice_lab.offline import shared

    simulator = shared(simulator_folder)
    client = DashScopeClient(api_key=simulator.api_key, base_url=simulator.base_url, backend="offline", **common)
    return client, simulator
