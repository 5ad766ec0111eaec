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
from cosyvoice_lab.credentials import OFFLINE_API_KEY, find_api_key
from cosyvoice_lab.errors import Problem, ValidationError
from cosyvoice_lab.service import DashScopeClient, RetryPolicy

BACKENDS = ("auto", "dashscope", "offline")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def connect(
    backend: str,
    *,
    api_key=None,
    base_url: str | None = None,
    workspace: str | None = None,
    region: str,
    retry: RetryPolicy,
    timeout: float,
    throttle: Callable[[], None],
    simulator_folder: Path,
    model_profiles: Any = None,
) -> tuple[DashScopeClient, Any]:
    """The client for ``backend``, and the in-process simulator it talks to (None if another).

    ``"auto"`` is the real service when a key is found (``api_key``, ``DASHSCOPE_API_KEY``, the
    credentials file), else the offline simulator, started on 127.0.0.1 with its voices kept in
    ``simulator_folder``. ``base_url`` (default ``DASHSCOPE_HTTP_BASE_URL``, as the dashscope SDK
    reads it) points at another server: a loopback one counts as offline. ``workspace`` (a
    workspace id) points at that workspace's host of the real service (contract §11).

    Raises:
        ValueError: an unknown backend. CredentialsError: ``"dashscope"`` (or a workspace) without a key.
        ValidationError: a malformed workspace id, or a workspace with ``backend="offline"``,
            ``base_url`` or another region than Beijing.
        ValueError too: ``model_profiles`` (how the models of the simulator a Lab starts itself
        differ) with another backend than ``"offline"`` without ``base_url``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto', 'dashscope' or 'offline', got {backend!r}")
    if model_profiles is not None and (backend != "offline" or base_url):
        raise ValueError(
            "model_profiles is for the simulator a Lab starts itself: use backend='offline' without base_url "
            "(a separately started simulator takes them at its start: serve(model_profiles=...))"
        )
    if workspace is not None:
        base_url, backend = _workspace_base(workspace, backend, base_url, region), "dashscope"
    common: dict[str, Any] = {"region": region, "retry": retry, "create_timeout": timeout, "throttle": throttle}
    if backend != "offline":  # the dashscope SDK's own variable for another endpoint (contract §7.1)
        base_url = base_url or os.environ.get("DASHSCOPE_HTTP_BASE_URL") or None
    key = find_api_key(api_key) if backend != "offline" or base_url else None
    if base_url:  # a separately started simulator (or a proxy to the real service)
        offline = backend == "offline" or urlparse(base_url).hostname in LOOPBACK_HOSTS
        # the simulator's documented key only for a simulator; anything else needs a real one
        return DashScopeClient(
            api_key=key or (OFFLINE_API_KEY if offline else None),
            base_url=base_url,
            backend="offline" if offline else "dashscope",
            **common,
        ), None
    if backend == "dashscope" or (backend == "auto" and key is not None):
        return DashScopeClient(api_key=key, backend="dashscope", **common), None  # raises without a key
    from cosyvoice_lab.offline import shared

    simulator = shared(simulator_folder, model_profiles=model_profiles)
    client = DashScopeClient(api_key=simulator.api_key, base_url=simulator.base_url, backend="offline", **common)
    return client, simulator


def _workspace_base(workspace: str, backend: str, base_url: str | None, region: str) -> str:
    """The HTTP base of ``workspace``'s host (contract §11), or a ``ValidationError``."""
    if backend == "offline" or base_url or region != catalog.DEFAULT_REGION:
        message = "is a host of the real service in cn-beijing: not with backend='offline', base_url= or another region"
        raise ValidationError([Problem("workspace", "real_service", message)], context="invalid workspace")
    try:
        return catalog.workspace_endpoints(workspace)[0]
    except ValueError as exc:
        raise ValidationError([Problem("workspace", "pattern", str(exc))], context="invalid workspace") from None
