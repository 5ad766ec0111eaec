"""The measuring stage: previews measured beside the designs, not inside them.

A design is I/O (seconds waiting on the service); measuring its preview is CPU (~0.5 s for a
5 s preview, most of it the quality model). Done inside the design threads, as many previews
were measured at once as there were requests in flight: the measuring's CPU added to the
service's time, and memory grew with concurrency (every run holds its own activations). Here
a take is recorded ``ok`` with its preview first (it is never lost, and plays at once); its id
then joins a queue that a pool as large as the machine's cores works through, each preview read
from the audio store, decoded once, measured and released, the figures written with
``log.table.set_metrics`` (as ``Lab.remeasure`` writes them). A compare's wall time becomes
the larger of the service's limit and the measuring's CPU time, not their sum.

Whoever reads measures waits for the ones it needs (``wait``), with a progress bar; the CLI
waits for all before it exits. A take whose measuring never ran (Ctrl-C, a crash) is ok without
figures: the next compare of its experiment, or ``Lab.remeasure``, measures it.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import queue
import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import wait as wait_all
from dataclasses import dataclass
from functools import partial
from typing import Any

log = logging.getLogger(__name__)
IDLE_S = 30.0  # a worker with nothing to measure for this long ends
URGENT = 2  # subtracted from a step's rank in the queue when someone waits for its take by name
_CREATED = itertools.count()


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
    """A bounded pool measuring takes' previews after they are recorded, in two steps: every
    measure but predicted quality first (~0.15 s of CPU a preview), then predicted quality (the
    DNSMOS model, ~0.3-0.6 s), the first steps of every queued take before any second step. So a
    reader that needs pitch, loudness or rate (``wait(quality=False)``) waits for little, and one
    that needs predicted quality waits for the model. Takes someone waits for by name
    (``wait(take_ids)``: a single design or rerun while a compare's backlog measures) go to the
    front of the queue: they wait for their own measures, not for the backlog's.

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
        # (rank, order, take id, future): rank is the step (0 first, 1 quality), less URGENT for a take
        # someone waits for by name; such a take's steps are queued again ahead, and whichever entry
        # comes out first runs the step (the other finds its future taken).
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._created = next(_CREATED)
        self._threads: list[threading.Thread] = []
        self._futures: dict[str, tuple[Future, Future]] = {}  # take id -> (first step, whole)
        self._lock = threading.Lock()
        self._bar: Any = None  # a tqdm bar while measures are pending
        self.running = 0  # measures running now
        self.peak_running = 0  # the most that ever ran at once (never above ``workers``)
        _STAGES.add(self)

    @property
    def threads(self) -> int:
        """Worker threads alive now (never more than ``workers``; idle ones end)."""
        with self._lock:
            return len(self._threads)

    def __repr__(self) -> str:
        return f"<MeasuringStage {self.workers} worker(s); {len(self.pending())} pending>"

    # --- feeding ---------------------------------------------------------------------------
    def submit(self, take, *, quality: bool = True) -> Future | None:
        """Queue a recorded take for measuring (a take without a preview, or already queued, is
        not queued again). Returns the future of its whole measuring (its figures, or None).

        ``quality=False`` (a reader that never looks at predicted quality, such as ``lab.tune``)
        queues only the first step: its figures are written without ``measures_version``, so the
        take counts as not yet fully measured and ``Lab.remeasure`` (or the next compare of its
        experiment) adds predicted quality when someone wants it."""
        if not getattr(take, "audio_path", None):
            return None
        with self._lock:
            known = self._futures.get(take.take_id)
            if known is not None and not known[1].done():
                return known[1]
            first: Future = Future()
            whole: Future = Future() if self.options.predicted_quality and quality else first
            self._futures[take.take_id] = (first, whole)
            self._queue.put((0, next(self._order), take.take_id, first))
            if whole is not first:
                self._queue.put((1, next(self._order), take.take_id, whole))
            if len(self._threads) < self.workers:
                self._start_worker()
            self._grow_bar()
        whole.add_done_callback(partial(self._advance, take.take_id))
        return whole

    def _start_worker(self) -> None:
        thread = threading.Thread(target=self._work, name=f"cosyvoice-lab-measure-{len(self._threads)}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        _lower_priority(self.options.nice)
        while True:
            try:
                rank, _, take_id, future = self._queue.get(timeout=IDLE_S)
            except queue.Empty:
                with self._lock:  # idle: this worker ends (a later submission starts another)
                    if self._queue.empty():
                        self._threads.remove(threading.current_thread())
                        return
                continue
            with self._lock:  # a step queued twice (moved ahead by ``wait``) runs once
                if future.running() or future.done() or not future.set_running_or_notify_cancel():
                    continue
                self.running += 1
                self.peak_running = max(self.peak_running, self.running)
            try:
                future.set_result(self._first(take_id) if rank % URGENT == 0 else self._quality(take_id))
            except BaseException as exc:  # a measurement never costs a take: it stays ok, re-measurable
                log.warning("could not measure take %s: %s: %s", take_id, type(exc).__name__, exc)
                future.set_result(None)
            finally:
                with self._lock:
                    self.running -= 1

    def _first(self, take_id: str) -> dict:
        """Every measure but predicted quality, written; without ``measures_version`` while
        predicted quality is still to come (the second step, or a later remeasure for a take
        submitted with ``quality=False``): such a take counts as not yet fully measured."""
        from cosyvoice_lab.analysis.measures import measure

        take = self.experiment_log.get(take_id)  # the preview read here, decoded once, then dropped
        found = measure(
            take.audio, take.design.preview_text, take.design.language_hint, predicted_quality=False
        ).to_dict()
        if self.options.predicted_quality:
            found.pop("measures_version")
        self.experiment_log.table.set_metrics(take_id, found)
        return found

    def _quality(self, take_id: str) -> dict | None:
        """Predicted quality, written with ``measures_version`` once the first step's figures are in."""
        from cosyvoice_lab.analysis.measures import VERSION, predicted_quality

        first = self._futures.get(take_id, (None, None))[0]
        if first is not None and first.result() is None:  # the first step failed: nothing to complete
            return None
        take = self.experiment_log.get(take_id)
        found = predicted_quality(take.audio)
        problems = "; ".join(p for p in ((take.metrics or {}).get("problems"), found["problems"]) if p) or None
        figures = {**found, "problems": problems, "measures_version": VERSION}
        self.experiment_log.table.set_metrics(take_id, figures)
        return figures

    # --- reading ---------------------------------------------------------------------------
    def pending(self, take_ids: Iterable[str] | None = None, *, quality: bool = True) -> list[str]:
        """Ids of the takes (of ``take_ids``, or all) whose measures are queued or running; with
        ``quality=False``, whose measures other than predicted quality are."""
        with self._lock:
            items = list(self._futures.items())
        wanted = None if take_ids is None else set(take_ids)
        step = 1 if quality else 0
        return [t for t, f in items if not f[step].done() and (wanted is None or t in wanted)]

    def wait(
        self, take_ids: Iterable[str] | None = None, *, quality: bool = True, timeout: float | None = None
    ) -> list[str]:
        """Block until the measures of ``take_ids`` (or every pending one) are written (with
        ``quality=False``: all but predicted quality); the progress bar shows them fill in.
        Returns the ids still pending (only with a timeout)."""
        wanted = self.pending(take_ids, quality=quality)
        if not wanted:
            return []
        with self._lock:
            futures = [self._futures[t][1 if quality else 0] for t in wanted if t in self._futures]
            if take_ids is not None:
                self._move_ahead(wanted, quality)
        if self._bar is None and self.progress:
            print(f"waiting for the measures of {len(futures)} take(s)", file=sys.stderr)
        wait_all(futures, timeout=timeout)
        return self.pending(wanted, quality=quality)

    def _move_ahead(self, take_ids: list[str], quality: bool) -> None:
        """Queue the pending steps of ``take_ids`` again, ahead of every take nobody waits for by
        name (held: ``self._lock``)."""
        for take_id in take_ids:
            if take_id not in self._futures:  # measured since the caller looked
                continue
            first, whole = self._futures[take_id]
            steps = [(0, first)] + ([(1, whole)] if quality and whole is not first else [])
            for step, future in steps:
                if not (future.running() or future.done()):
                    self._queue.put((step - URGENT, next(self._order), take_id, future))

    def measured(self, takes: list) -> list:
        """``takes`` once their pending measures are written (waiting, with progress), re-read
        from the log (None stays None)."""
        ids = [t.take_id for t in takes if t is not None]
        if not self.pending(ids):
            return takes
        self.wait(ids)
        return [self.experiment_log.get(t.take_id) if t is not None else None for t in takes]

    def cancel(self) -> int:
        """Drop the queued measures (those running finish). Returns how many takes lost some:
        they stay ok, unmeasured (``Lab.remeasure`` or the next compare measures them)."""
        with self._lock:
            futures = list(self._futures.values())
        return sum([first.cancel() | (whole is not first and whole.cancel()) for first, whole in futures])

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
            known = self._futures.get(take_id)
            if known is not None and known[1] is future:  # done: the figures are in the log, nothing kept here
                del self._futures[take_id]
            bar = self._bar
            if bar is None:
                return
            bar.update(1)
            if bar.n >= bar.total:  # drained: the next submission starts a new bar
                bar.close()
                self._bar = None


_STAGES: weakref.WeakSet[MeasuringStage] = weakref.WeakSet()  # every stage alive in this process


def stages() -> list[MeasuringStage]:
    """Every measuring stage alive in this process (one per ``Lab``), oldest first."""
    return sorted(_STAGES, key=lambda stage: stage._created)


@atexit.register
def _drain_at_exit() -> None:
    """At interpreter exit, the stages' queued measures are finished (the takes are recorded; a
    script that ends after ``compare`` still gets its figures); Ctrl-C stops the wait."""
    try:
        for stage in stages():
            stage.wait()
    except KeyboardInterrupt:
        for stage in stages():
            stage.cancel()


def has_measures(metrics: dict | None) -> bool:
    """Whether a take's measures other than predicted quality are written (its first step's
    figures, ``duration_s`` among them, or a complete measuring with its ``measures_version``)."""
    metrics = metrics or {}
    return bool(metrics.get("measures_version")) or metrics.get("duration_s") is not None


def feeding(queue: Callable[[Any], Any], on_done: Callable | None) -> Callable:
    """A runner's ``on_done`` that queues each arriving take (in the calling thread, so the
    measuring bar is drawn there), then calls ``on_done``."""

    def arrived(index: int, take, error) -> None:
        queue(take)
        if on_done is not None:
            on_done(index, take, error)

    return arrived
