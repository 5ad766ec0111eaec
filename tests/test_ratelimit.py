"""The concurrency controller fed synthetic latencies and 429s, and the rate window shared by
processes (real SQLite files, real processes)."""

import math
import subprocess
import sys
import textwrap

import pytest

from cosyvoice_lab.service.ratelimit import DEFAULT_LIMITS, ConcurrencyController, RateLimiter, budget_id, runtime_dir


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def controller(rps=9.0, **kw):
    clock = FakeClock()
    return ConcurrencyController(rps, clock=clock, **kw), clock


def test_before_any_latency_is_known_one_windows_burst_goes():
    pace, _ = controller()
    assert pace.limit(oldest_age=0.0) == 9
    assert pace.limit(4, oldest_age=0.0) == 4  # concurrency= stays an upper bound


def test_while_the_first_tasks_are_out_their_age_raises_the_limit():
    pace, _ = controller()
    assert pace.limit(oldest_age=2.0) == math.ceil(9 * 2.0 * DEFAULT_LIMITS.concurrency_headroom)
    assert pace.limit(oldest_age=1000.0) == DEFAULT_LIMITS.max_concurrency


def test_littles_law_from_observed_latency():
    pace, _ = controller()
    for _ in range(20):
        pace.observe(2.0)
    assert pace.latency == pytest.approx(2.0)
    assert pace.limit(oldest_age=0.0) == math.ceil(9 * 2.0 * DEFAULT_LIMITS.concurrency_headroom)
    for _ in range(20):
        pace.observe(0.05)  # fast answers: one window's burst is enough
    assert pace.limit(oldest_age=0.0) == 9
    assert pace.limit(3, oldest_age=0.0) == 3


def test_without_a_rate_the_ceiling_or_the_bound_applies():
    pace, _ = controller(rps=None, ceiling=7)
    pace.observe(5.0)
    assert pace.limit() == 7 and pace.limit(2) == 2


def test_429_halves_once_per_latency_and_clean_finishes_bring_it_back():
    pace, clock = controller()
    for _ in range(10):
        pace.observe(2.0)
    before = pace.limit(oldest_age=0.0)
    pace.throttled(in_flight=before)
    pace.throttled(in_flight=before)  # the same burst's other answers: one signal
    assert pace.throttled_count == 2
    assert pace.limit(oldest_age=0.0) == before // 2
    clock.now += 2.5  # a latency later, the server still says 429
    pace.throttled(in_flight=before // 2)
    assert pace.limit(oldest_age=0.0) == before // 4
    clock.now += 2.5
    for _ in range(6):
        pace.throttled(in_flight=1)
        clock.now += 2.5
    assert pace.limit(oldest_age=0.0) == 1  # never below one
    decisions = []
    for _ in range(before):  # the 429s stopped: each clean finish adds one back
        pace.observe(2.0)
        decisions.append(pace.limit(oldest_age=0.0))
    assert decisions == sorted(decisions) and decisions[-1] == before


def test_time_waiting_for_the_rate_limiter_is_not_latency():
    clock = FakeClock()
    waited = {"s": 0.0}
    pace = ConcurrencyController(9.0, clock=clock, waited=lambda: waited["s"])

    def task():
        waited["s"] += 3.0  # three seconds in the limiter
        clock.now += 3.5  # and half a second of work
        return "ok"

    assert pace.timed(task)() == "ok"
    assert pace.latency == pytest.approx(0.5) and pace.peak_in_flight == 1


def test_a_response_hook_counts_429s():
    class Answer:
        def __init__(self, status):
            self.status_code = status

    pace, _ = controller()
    for status in (200, 429, 500):
        pace.on_response(Answer(status))
    assert pace.throttled_count == 1


def test_budget_file_is_named_by_a_hash_never_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("COSYVOICE_LAB_RUNTIME_DIR", str(tmp_path / "rt"))
    key = "sk-0123456789abcdef0123456789abcdef"
    limiter = RateLimiter(5)
    limiter.share(key, "dashscope.aliyuncs.com")
    limiter.acquire()
    files = list(runtime_dir().iterdir())
    assert files and runtime_dir() == tmp_path / "rt"
    for path in files:
        assert key not in path.name and key.encode() not in path.read_bytes()
    assert budget_id(key, "a", "enrollment") == budget_id(key, "a", "enrollment")
    assert (
        len(
            {budget_id(key, "a", "enrollment"), budget_id(key, "b", "enrollment"), budget_id("sk-x", "a", "enrollment")}
        )
        == 3
    )


CHILD = textwrap.dedent(
    """
    import json, sys, time
    from cosyvoice_lab.service.ratelimit import RateLimiter
    last = [0.0]

    def clock():  # the admitted moment is the last reading before acquire() returns
        last[0] = time.monotonic()
        return last[0]

    limiter = RateLimiter(10, slack=0.0, clock=clock)
    limiter.share("sk-shared-by-two", "127.0.0.1:1")
    stamps = []
    for _ in range(12):
        limiter.acquire()
        stamps.append(last[0])
    print(json.dumps(stamps))
    """
)


def test_two_processes_with_one_key_share_its_window(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("COSYVOICE_LAB_RUNTIME_DIR", str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    stamps = sorted(s for p in procs for s in json.loads(p.communicate(timeout=60)[0]))
    assert len(stamps) == 24
    # time.monotonic is one clock for the machine: together, no second holds more than 10 admissions
    # (the moments each process was admitted, not when it next got the CPU to note the time)
    assert all(b - a >= 1.0 - 1e-6 for a, b in zip(stamps, stamps[10:], strict=False))


def test_processes_sharing_one_new_window_at_the_same_instant_all_share_it(tmp_path):
    """Two compares started together with one key: the one that lost the race to switch the new
    window file to WAL ("database is locked" at once, without SQLite's busy handler) fell back to
    counting alone, and together they sent twice the limit (seen as this file's two-process test
    failing in a whole run). Forked processes meet at a barrier to open it within microseconds."""
    from processes import failures_at_once

    from cosyvoice_lab.service.ratelimit import SharedWindow

    assert failures_at_once(lambda round_: lambda: SharedWindow(tmp_path / f"window{round_}.sqlite").close()) == []
