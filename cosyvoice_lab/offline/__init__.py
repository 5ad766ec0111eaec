"""The offline simulator: a local stand-in for DashScope's CosyVoice voice design and synthesis.

It speaks the wire protocol of ``dashscope-contract.md`` on 127.0.0.1 (the customization
POST route and the synthesis WebSocket on one port), stores designed voices (in one SQLite
store that several simulators on one folder share), speaks their previews with espeak-ng,
streams synthesis sentence by sentence with the documented latency, enforces quotas and rate
limits, and can inject faults.

Offline, the target models are identical except for design latency (flash answers faster: the
simulator's assumption, see :mod:`cosyvoice_lab.offline.profiles`) unless a difference is
planted with ``model_profiles``.

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
from collections.abc import Iterator, Mapping
from pathlib import Path

from cosyvoice_lab import catalog
from cosyvoice_lab.credentials import OFFLINE_API_KEY
from cosyvoice_lab.offline.faults import Fault, Faults
from cosyvoice_lab.offline.profiles import ModelProfile
from cosyvoice_lab.offline.server import LOGGER_NAME, Simulator
from cosyvoice_lab.offline.state import IN_PROCESS

__all__ = ["LOGGER_NAME", "Fault", "Faults", "ModelProfile", "Simulator", "serve", "shared"]


@contextlib.contextmanager
def serve(
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
    model_profiles: Mapping[str, ModelProfile | Mapping] | None = None,
    seed: int | None = None,
    **options,
) -> Iterator[Simulator]:
    """Run a simulator for the duration of a ``with`` block and yield it.

    Parameters:
        port: TCP port on 127.0.0.1; 0 picks a free one (see ``sim.base_url``).
        api_key: the one key accepted; default ``DASHSCOPE_API_KEY``, else
            ``credentials.OFFLINE_API_KEY``.
        state_dir: where voices persist across restarts; None keeps them in memory.
        faults: a :class:`Faults` or a dict of its fields (latency, error_rate, drop_rate,
            hang_rate, hang_seconds, seed; ``refuse_imitation`` answers designs that ask to
            imitate a named person with ``DataInspectionFailed``).
        intl: behave like the Singapore region (no CosyVoice design).
        deploying_seconds: how long new voices stay ``DEPLOYING`` before ``OK``.
        enrollment_rps, synthesis_rps: per-key limits; 0 or None switches them off.
        log: logger for the per-request lines (default ``cosyvoice_lab.offline``).
        model_profiles: how the models differ (see :mod:`cosyvoice_lab.offline.profiles`):
            model name (or ``"*"`` for all) -> :class:`ModelProfile` or a dict of changes,
            e.g. ``{"cosyvoice-v3.5-flash": {"pitch_shift": 3}}``; default: the models differ
            only in design latency.
        seed: makes voice ids (and so each voice's random draw) and latencies reproducible.
        options: ``quota``; ``synth_gap_seconds``, ``synth_idle_seconds`` (WebSocket
            timeouts); ``first_audio_seconds`` and ``realtime_factor`` (synthesis timing, a
            number or a (low, high) range; ``0`` answers at once, for quick tests);
            ``max_body_bytes`` and ``read_timeout_seconds`` (HTTP limits).
    """
    sim = Simulator(
        port=port,
        api_key=api_key,
        state_dir=state_dir,
        faults=faults,
        intl=intl,
        deploying_seconds=deploying_seconds,
        enrollment_rps=enrollment_rps,
        synthesis_rps=synthesis_rps,
        log=log,
        model_profiles=model_profiles,
        seed=seed,
        **options,
    )
    with sim:
        yield sim


_shared: dict[str, Simulator] = {}
_shared_lock = threading.Lock()


def shared(state_dir=None, model_profiles: Mapping[str, ModelProfile | Mapping] | None = None) -> Simulator:
    """The process's simulator for ``state_dir``, started on first use and reused afterwards
    (a notebook kernel keeps one for its whole life).

    It accepts only ``credentials.OFFLINE_API_KEY`` (never a real key found in the environment),
    and with a ``state_dir`` its voices outlive the process, as a real account's do: the Lab
    keeps them in its folder, so the log and the offline voices stay in step across restarts.
    Other processes may serve the same ``state_dir`` at once; they share its voices. Synthesis
    streams at the fast end of the documented pace (``state.IN_PROCESS``).

    ``model_profiles`` (as for :func:`serve`), when given, replaces the profiles of the
    simulator, also of one already running.
    """
    key = str(Path(state_dir).resolve()) if state_dir else ""
    with _shared_lock:
        sim = _shared.get(key)
        if sim is None or sim.port is None:
            sim = _shared[key] = Simulator(
                api_key=OFFLINE_API_KEY,
                state_dir=state_dir,
                model_profiles=model_profiles,
                first_audio_seconds=IN_PROCESS.first_audio_seconds,
                realtime_factor=IN_PROCESS.realtime_factor,
            ).start()
            atexit.register(sim.stop)
        elif model_profiles is not None:
            sim.model_profiles = model_profiles
        return sim
