"""The measuring stage: previews measured beside the designs, not inside them.

A design is I/O (seconds waiting on the service); measuring its preview is CPU (~0.5 s for a
5 s preview, most of it the quality model). Done inside the design threads, as many previews
were measured at once as there were requests in flight: the measuring's CPU added to the
service's time, and memory grew with concurrency (every run holds its own activations). Here
a take is recorded ``ok`` with its preview first (it is never lost, and plays at once); its id
then joins a queue that a pool as large as the machine's cores works through, each preview read
from the audio store, decoded once, measured and released, the figures written with
``ExperimentLog.set_metrics`` (as ``Lab.remeasure`` writes them). A compare's wall time becomes
the larger of the service's limit and the measuring's CPU time, not their sum.

Whoever reads measures waits for the ones it needs (``wait``), with a progress bar; the CLI
waits for all before it exits. A take whose measuring never ran (Ctrl-C, a crash) is ok without
figures: the next compare of its experiment, or ``Lab.remeasure``, measures it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass
from functools import partial
from typing import Any

log = logging.getLogger(__name__)


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class MeasuringOptions:
    """How the measuring stage runs.

    Attributes:
        workers: previews measured at once; None: the machine's cores (each measure uses one).
        predicted_quality: also run the DNSMOS model (``analysis.quality``; the costliest measure).
        nice: how much lower the measuring threads' CPU priority is than the rest of the process
            (Linux; 0 to keep it): the designs' threads, and an in-process simulator, come first,
            so measuring fills the time they leave and does not slow the compare.
    """

    workers: int | None = None
    predicted_quality: bool = True
    nice: int = 5

    def pool_size(self) -> int:
        return max(1, self.workers or cores())


def _lower_priority(nice: int) -> None:
    """Lower this thread's priority (on Linux a thread has its own niceness)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    except OSError:  # not allowed here: measuring still runs, at the usual priority
        pass


class MeasuringStage:
    """A bounded pool measuring takes' previews after they are recorded.

    Args:
        experiment_log: where the takes are read from and their figures written to.
        options: :class:`MeasuringOptions`.
        progress: show a progress bar while measures are pending.
    """

    def __init__(self, experiment_log, options: MeasuringOptions | None = None, *, progress: bool = True):
        self.experiment_log = experiment_log
        self.options = options or MeasuringOptions()
        self.progress = progress
        self.workers = self.options.pool_size()
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[str, Future] = {}
        self._lock = threading.Lock()
        self._bar: Any = None  # a tqdm bar while measures are pending
        self.running = 0  # measures running now
        self.peak_running = 0  # the most that ever ran at once (never above ``workers``)

    def __repr__(self) -> str:
        return f"<MeasuringStage {self.workers} worker(s); {len(self.pending())} pending>"

    # --- feeding ---------------------------------------------------------------------------
    def submit(self, take) -> Future | None:
        """Queue a recorded take for measuring (a take without a preview, or already queued, is
        not queued again). Returns its future (its result: the figures written, or None)."""
        if not getattr(take, "audio_path", None):
            return None
        with self._lock:
            known = self._futures.get(take.take_id)
            if known is not None and not known.done():
                return known
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.workers,
                    thread_name_prefix="cosyvoice-lab-measure",
                    initializer=_lower_priority,
                    initargs=(self.options.nice,),
                )
            future = self._pool.submit(self._measure, take.take_id)
            self._futures[take.take_id] = future
            self._grow_bar()
        future.add_done_callback(partial(self._advance, take.take_id))
        return future

    def _measure(self, take_id: str) -> dict | None:
        from cosyvoice_lab.analysis.measures import measure

        with self._lock:
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
        try:
            take = self.experiment_log.get(take_id)  # the preview read here, decoded once, then dropped
            found = measure(
                take.audio,
                take.design.preview_text,
                take.design.language_hint,
                predicted_quality=self.options.predicted_quality,
            ).to_dict()
            self.experiment_log.set_metrics(take_id, found)
            return found
        except Exception as exc:  # a measurement never costs a take: it stays ok, re-measurable
            log.warning("could not measure take %s: %s: %s", take_id, type(exc).__name__, exc)
            return None
        finally:
            with self._lock:
                self.running -= 1

    # --- reading ---------------------------------------------------------------------------
    def pending(self, take_ids: Iterable[str] | None = None) -> list[str]:
        """Ids of the takes (of ``take_ids``, or all) whose measures are queued or running."""
        with self._lock:
            items = list(self._futures.items())
        wanted = None if take_ids is None else set(take_ids)
        return [t for t, f in items if not f.done() and (wanted is None or t in wanted)]

    def wait(self, take_ids: Iterable[str] | None = None, *, timeout: float | None = None) -> list[str]:
        """Block until the measures of ``take_ids`` (or every pending one) are written; the
        progress bar shows them fill in. Returns the ids still pending (only with a timeout)."""
        wanted = self.pending(take_ids)
        if not wanted:
            return []
        with self._lock:
            futures = [self._futures[t] for t in wanted if t in self._futures]
        if self._bar is None and self.progress:
            print(f"waiting for the measures of {len(futures)} take(s)", file=sys.stderr)
        wait_all(futures, timeout=timeout)
        return self.pending(wanted)

    def cancel(self) -> int:
        """Drop the queued measures (those running finish). Returns how many were dropped:
        their takes stay ok, unmeasured (``Lab.remeasure`` or the next compare measures them)."""
        with self._lock:
            futures = list(self._futures.values())
        return sum(f.cancel() for f in futures)

    def close(self, *, wait: bool = True) -> None:
        """Finish (or with ``wait=False`` drop) the queued measures and stop the workers."""
        if not wait:
            self.cancel()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=not wait)

    # --- the bar -----------------------------------------------------------------------------
    def _grow_bar(self) -> None:
        """One more to measure (called with the lock held, in the thread that submits)."""
        if not self.progress:
            return
        if self._bar is None:
            from tqdm.auto import tqdm  # a notebook widget in Jupyter, text in a terminal

            self._bar = tqdm(total=0, desc="measuring", unit="take", leave=True)
        self._bar.total += 1
        self._bar.refresh()

    def _advance(self, take_id: str, future: Future) -> None:
        with self._lock:
            if self._futures.get(take_id) is future:  # done: the figures are in the log, nothing kept here
                del self._futures[take_id]
            bar = self._bar
            if bar is None:
                return
            bar.update(1)
            if bar.n >= bar.total:  # drained: the next submission starts a new bar
                bar.close()
                self._bar = None


# --- Lab's methods (Lab binds these) ----------------------------------------------------------
def queue_method(self, take):
    """Queue a recorded take's preview for the measuring stage (when this lab measures). Returns the take."""
    if self.measure and take is not None and take.ok:
        self.measuring.submit(take)
    return take


def queue_unmeasured_method(self, takes: list) -> None:
    """Queue the ok takes that have no measures at all (a run stopped before they were written)."""
    for take in takes:
        if take.ok and not (take.metrics or {}).get("measures_version"):
            self._to_measure(take)


def feeding(queue: Callable[[Any], Any], on_done: Callable | None) -> Callable:
    """A runner's ``on_done`` that queues each arriving take (in the calling thread, so the
    measuring bar is drawn there), then calls ``on_done``."""

    def arrived(index: int, take, error) -> None:
        queue(take)
        if on_done is not None:
            on_done(index, take, error)

    return arrived


def measured_method(self, takes: list) -> list:
    """``takes`` once their pending measures are written (waiting, with progress), re-read from the log."""
    ids = [t.take_id for t in takes if t is not None]
    if not self.measuring.pending(ids):
        return takes
    self.measuring.wait(ids)
    return [self.log.get(t.take_id) if t is not None else None for t in takes]
