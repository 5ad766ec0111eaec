"""Measurements of takes already in the log: bring old ones up to date, and find the takes
whose voice is closest to a reference recording.

``Lab.remeasure`` and ``Lab.closest`` delegate here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import numpy as np

from cosyvoice_lab.audio import Audio

log = logging.getLogger(__name__)


def _takes(experiment_log, takes) -> list:
    """Takes from ``takes``: None (every take of the log), Take objects, take ids, or a
    DataFrame with a ``take_id`` column (a log frame or a comparison's ``df``)."""
    if takes is None:
        return experiment_log.takes(status="ok")
    if hasattr(takes, "columns"):
        takes = list(takes["take_id"]) if "take_id" in takes.columns else list(takes.index)
    elif isinstance(takes, str) or not isinstance(takes, Iterable):
        takes = [takes]
    return [experiment_log.get(t) if isinstance(t, str) else t for t in takes]


def _version(metrics: dict | None) -> int:
    value = (metrics or {}).get("measures_version")
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value else 0


def remeasure(experiment_log, takes=None, *, force: bool = False, predicted_quality: bool = True):
    """Measure takes again with the current measures and store the results with each take.

    A take is measured when its stored ``measures_version`` is older than
    :data:`cosyvoice_lab.analysis.measures.VERSION` (or it has none), or always with
    ``force``. Takes without a preview are skipped. A take whose audio cannot be read or
    measured keeps its old figures and its row says why: it is never lost.

    Args:
        experiment_log: the log to read and update (``log.table.set_metrics``).
        takes: as for :func:`closest` (default: every ok take of the log).
        force: measure even takes already at the current version.
        predicted_quality: also run the DNSMOS model (the costliest measure).

    Returns:
        A pandas DataFrame, one row per take considered: ``take_id``, ``old_version``,
        ``new_version``, ``action`` ("measured", "up to date", "no preview", "failed") and
        ``problems`` (measures that gave NaN, or why the take failed).
    """
    import pandas as pd

    from cosyvoice_lab.analysis.measures import VERSION, measure

    rows = []
    for take in _takes(experiment_log, takes):
        old = _version(take.metrics)
        row: dict[str, Any] = {"take_id": take.take_id, "old_version": old, "new_version": old, "problems": None}
        if not take.audio_path:
            rows.append({**row, "action": "no preview"})
            continue
        if old >= VERSION and not force:
            rows.append({**row, "action": "up to date"})
            continue
        try:
            found = measure(
                take.audio, take.design.preview_text, take.design.language_hint, predicted_quality=predicted_quality
            )
        except Exception as exc:  # an unreadable file must not stop the others
            log.warning("could not remeasure take %s: %s", take.take_id, exc)
            rows.append({**row, "action": "failed", "problems": f"{type(exc).__name__}: {exc}"})
            continue
        experiment_log.table.set_metrics(take.take_id, found.to_dict())
        log.info("remeasured take %s (version %d -> %d)", take.take_id, old, VERSION)
        rows.append({**row, "new_version": VERSION, "action": "measured", "problems": found.problems})
    return pd.DataFrame(rows, columns=["take_id", "old_version", "new_version", "action", "problems"])


@lru_cache(maxsize=512)
def _embedding_of(sha256: str, audio: Audio) -> np.ndarray:
    from cosyvoice_lab.analysis.variability import voice_embedding

    return voice_embedding(audio)


def embedding(audio: Audio) -> np.ndarray:
    """The speaker embedding of a recording, cached by its content (sha256)."""
    return _embedding_of(audio.sha256, audio)


class EmbeddingsAhead:
    """Speaker embeddings computed while a round of designs is still arriving: each take's on a
    pool of the machine's cores as it comes in (``add``), so that the round's ``embeddings`` find
    them cached once the last design is in (``settle`` first). The caller holds
    ``one_blas_thread()`` while the pool works."""

    def __init__(self) -> None:
        self._pool: Any = None
        self._pending: list = []

    def add(self, take) -> None:
        """Start the embedding of an arrived take's preview (none for a take without one)."""
        if take is None or not getattr(take, "ok", False) or not getattr(take, "audio_path", None):
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            from cosyvoice_lab.lab.stage import cores

            self._pool = ThreadPoolExecutor(max_workers=cores(), thread_name_prefix="cosyvoice-lab-embed")
        self._pending.append(self._pool.submit(lambda: embedding(take.audio)))

    def settle(self) -> None:
        """Wait for the embeddings started so far (a failure is left for ``embeddings`` to meet)."""
        from concurrent.futures import wait

        pending, self._pending = self._pending, []
        wait(pending)

    def close(self) -> None:
        """Stop: the started embeddings finish, the queued ones are dropped."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending = []


def embeddings(audios: Iterable[Audio | None]) -> list[np.ndarray | None]:
    """The speaker embeddings of several recordings (None for None), cached by content; those not
    cached yet are computed on every core at once (the network's products release the GIL), with
    the same result as one by one."""
    from concurrent.futures import ThreadPoolExecutor

    from cosyvoice_lab.analysis.embedding import one_blas_thread
    from cosyvoice_lab.lab.stage import cores

    audios = list(audios)
    todo = list({a.sha256: a for a in audios if a is not None}.values())
    if len(todo) > 1:
        with one_blas_thread(), ThreadPoolExecutor(max_workers=min(cores(), len(todo))) as pool:
            list(pool.map(embedding, todo))
    return [embedding(a) if a is not None else None for a in audios]


def _reference_audio(reference, sample_rate: int | None) -> Audio:
    if isinstance(reference, Audio):
        return reference
    if hasattr(reference, "audio") and hasattr(reference, "take_id"):  # a Take
        if reference.audio is None:
            raise ValueError(f"take {reference.take_id} has no preview to compare with")
        return reference.audio
    if isinstance(reference, np.ndarray):
        if sample_rate is None:
            raise ValueError("a numpy array needs sample_rate=")
        return Audio.from_numpy(reference, sample_rate)
    return Audio.load(reference, sample_rate)  # a path


def closest(experiment_log, reference, takes=None, *, sample_rate: int | None = None):
    """Rank takes by how much their voice sounds like ``reference``.

    Similarity is the cosine of speaker embeddings (``analysis.embedding``: a pretrained
    speaker-verification network): 1 is the same voice; different speakers of the same sex
    typically score 0.6-0.85 on real speech.

    Args:
        experiment_log: the log the takes come from.
        reference: the recording to match: an Audio, a Take, a path to an audio file, or a float
            array with ``sample_rate``.
        takes: None (every ok take of the log), Take objects, take ids, or a DataFrame with a
            ``take_id`` column.

    Returns:
        A pandas DataFrame sorted by ``similarity`` (highest first): ``take_id``, ``voice_id``,
        ``target_model``, ``voice_prompt``, ``similarity`` (NaN for a take without speech) and
        ``rank`` (1 = closest).

    Raises:
        ValueError: the reference holds no speech, or a bare array came without ``sample_rate``.
    """
    import pandas as pd

    target = embedding(_reference_audio(reference, sample_rate))
    if not np.all(np.isfinite(target)):
        raise ValueError("the reference recording holds no speech to compare with")
    rows = []
    found = _takes(experiment_log, takes)
    vectors = embeddings(take.audio if take.audio_path else None for take in found)
    for take, vector in zip(found, vectors, strict=True):
        score = float(target @ vector) if vector is not None else math.nan
        rows.append(
            {
                "take_id": take.take_id,
                "voice_id": take.voice_id,
                "target_model": take.target_model,
                "voice_prompt": take.prompt,
                "similarity": score if math.isfinite(score) else math.nan,
            }
        )
    frame = pd.DataFrame(rows, columns=["take_id", "voice_id", "target_model", "voice_prompt", "similarity"])
    frame = frame.sort_values("similarity", ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    frame["rank"] = np.arange(1, len(frame) + 1)
    return frame
