"""The offline simulator: a local stand-in for DashScope's CosyVoice voice design and synthesis.

It speaks the wire protocol of ``dashscope-contract.md`` on 127.0.0.1 (the customization
POST route and the synthesis WebSocket on one port), stores designed voices, speaks their
previews with espeak-ng, enforces quotas and rate limits, and can inject faults.

Use it as a context manager in tests::

    with serve(faults={"error_rate": 0.2, "seed": 1}) as sim:
        requests.post(sim.base_url + "/services/audio/tts/customization",
                      headers={"Authorization": f"Bearer {sim.api_key}"}, json=...)

or keep one alive for a process with :func:`shared` (what ``Lab`` does offline).
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import threading
from pathlib import Path
from typing import Iterator

from cosyvoice_lab import catalog
from cosyvoice_lab.offline.faults import Fault, Faults
from cosyvoice_lab.offline.server import LOGGER_NAME, Simulator

__all__ = ["Fault", "Faults", "LOGGER_NAME", "Simulator", "serve", "shared"]


@contextlib.contextmanager
def serve(*, port: int = 0, api_key: str | None = None, state_dir=None, faults: Faults | dict | None = None,
          intl: bool = False, deploying_seconds: float = 0.0,
          enrollment_rps: float | None = catalog.ENROLLMENT_RPS,
          synthesis_rps: float | None = catalog.SYNTHESIS_RPS, log: logging.Logger | None = None,
          **options) -> Iterator[Simulator]:
    """Run a simulator for the duration of a ``with`` block and yield it.

    Parameters:
        port: TCP port on 127.0.0.1; 0 picks a free one (see ``sim.base_url``).
        api_key: the one key accepted; default ``DASHSCOPE_API_KEY``, else
            ``catalog.OFFLINE_API_KEY``.
        state_dir: where voices persist across restarts; None keeps them in memory.
        faults: a :class:`Faults` or a dict of its fields (latency, error_rate, drop_rate,
            hang_rate, hang_seconds, seed).
        intl: behave like the Singapore region (no CosyVoice design).
        deploying_seconds: how long new voices stay ``DEPLOYING`` before ``OK``.
        enrollment_rps, synthesis_rps: per-key limits; 0 or None switches them off.
        log: logger for the per-request lines (default ``cosyvoice_lab.offline``).
        options: ``quota``, ``synth_gap_seconds``, ``synth_idle_seconds`` (for tests).
    """
    sim = Simulator(port=port, api_key=api_key, state_dir=state_dir, faults=faults, intl=intl,
                    deploying_seconds=deploying_seconds, enrollment_rps=enrollment_rps,
                    synthesis_rps=synthesis_rps, log=log, **options)
    with sim:
        yield sim


_shared: dict[str, Simulator] = {}
_shared_lock = threading.Lock()


def shared(state_dir=None) -> Simulator:
    """The process's simulator for ``state_dir``, started on first use and reused afterwards
    (a notebook kernel keeps one for its whole life).

    It accepts only ``catalog.OFFLINE_API_KEY`` (never a real key found in the environment),
    and with a ``state_dir`` its voices outlive the process, as a real account's do: the Lab
    keeps them in its folder, so the log and the offline voices stay in step across restarts.
    """
    key = str(Path(state_dir).resolve()) if state_dir else ""
    with _shared_lock:
        sim = _shared.get(key)
        if sim is None or sim.port is None:
            sim = _shared[key] = Simulator(api_key=catalog.OFFLINE_API_KEY, state_dir=state_dir).start()
            atexit.register(sim.stop)
        return sim
