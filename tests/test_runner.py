"""The runner: rate limit, concurrency, failures counted, Ctrl-C keeps what finished."""

import signal
import threading
import time

import pytest

from cosyvoice_lab.lab.runner import run_tasks
from cosyvoice_lab.service.ratelimit import RateLimiter


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_rate_limiter_starts_a_batch_then_keeps_pace():
    clock = FakeClock()
    limiter = RateLimiter(4, clock=clock, sleep=clock.sleep, slack=0.0)
    times = []
    for _ in range(9):
        limiter.acquire()
        times.append(clock.now)
    assert times == pytest.approx([0, 0, 0, 0, 1, 1, 1, 1, 2])


def test_rate_limiter_slack_lengthens_the_window():
    clock = FakeClock()
    limiter = RateLimiter(2, clock=clock, sleep=clock.sleep, slack=0.1)
    for _ in range(3):
        limiter.acquire()
    assert clock.now == pytest.approx(1.1)


def test_rate_limiter_fractional_rate():
    clock = FakeClock()
    limiter = RateLimiter(0.5, clock=clock, sleep=clock.sleep, slack=0.0)
    for _ in range(3):
        limiter.acquire()
    assert clock.now == pytest.approx(4.0)


def test_rate_limiter_disabled_and_bad_values():
    RateLimiter(None).acquire()
    with pytest.raises(ValueError):
        RateLimiter(-1)


def test_rate_limiter_threads_never_exceed_rate():
    admitted = threading.local()  # each thread's last clock reading: the moment acquire() admitted it

    def clock():
        admitted.t = time.monotonic()
        return admitted.t

    limiter = RateLimiter(20, slack=0.0, clock=clock)
    stamps, lock = [], threading.Lock()

    def worker():
        for _ in range(10):
            limiter.acquire()
            with lock:
                stamps.append(admitted.t)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    # no one-second window holds more than 20 of them
    assert min(b - a for a, b in zip(stamps, stamps[20:], strict=False)) >= 1.0 - 1e-6


def test_results_in_task_order_with_failures_counted():
    def task(i):
        def run():
            time.sleep(0.01 * (5 - i % 5))
            if i == 3:
                raise RuntimeError("boom")
            return i

        return run

    out = run_tasks([task(i) for i in range(10)], concurrency=4, progress=False, is_failure=lambda r: r == 7)
    assert out.results == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert out.failed == 2 and not out.interrupted


def test_concurrency_really_overlaps():
    t0 = time.monotonic()
    run_tasks([lambda: time.sleep(0.2)] * 8, concurrency=8, progress=False)
    assert time.monotonic() - t0 < 1.0  # serial would be 1.6 s


def test_interrupt_keeps_finished_and_cancels_the_rest():
    started = []

    def task(i):
        def run():
            started.append(i)
            time.sleep(0.3)
            return i

        return run

    timer = threading.Timer(0.45, signal.raise_signal, args=(signal.SIGINT,))
    timer.start()
    out = run_tasks([task(i) for i in range(20)], concurrency=2, progress=False)
    assert out.interrupted
    assert out.results == sorted(started)  # everything that started also finished and was kept
    assert 2 <= out.done < 20 and out.skipped == 20 - out.done


def test_progress_bar_in_terminal(capsys):
    run_tasks([lambda: 1] * 3, concurrency=1, desc="designing", progress=True)
    assert "designing" in capsys.readouterr().err


def test_fractional_rate_never_exceeds_its_floor_in_any_second():
    clock = FakeClock()
    limiter = RateLimiter(2.7, clock=clock, sleep=clock.sleep, slack=0.0)
    times = []
    for _ in range(7):
        limiter.acquire()
        times.append(clock.now)
    assert all(b - a >= 1.0 - 1e-9 for a, b in zip(times, times[2:], strict=False)), times  # 2 per second, not 3 or 4


def test_on_done_reports_each_outcome_in_the_calling_thread_as_it_finishes():
    seen, caller = [], threading.current_thread()

    def task(i):
        def run():
            time.sleep(0.05 * (3 - i))  # finish in reverse order
            if i == 1:
                raise ValueError("no good")
            return i * 10

        return run

    def on_done(index, result, error):
        assert threading.current_thread() is caller
        seen.append((index, result, type(error).__name__ if error else None))
        if index == 0:
            raise RuntimeError("a broken display hook is logged, not fatal")

    out = run_tasks([task(i) for i in range(3)], concurrency=3, progress=False, on_done=on_done)
    assert seen == [(2, 20, None), (1, None, "ValueError"), (0, 0, None)]
    assert out.results == [0, 20] and out.failed == 1 and not out.interrupted
