"""The Lab against the offline simulator: design, compare, resume, faults, voices, cleanup."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

from cosyvoice_lab import Lab, catalog
from cosyvoice_lab.errors import LogError, ValidationError
from cosyvoice_lab.lab import planning
from cosyvoice_lab.offline import serve

PROMPTS = ["a deep, slow elderly male voice", "a bright, fast young female voice"]


@pytest.fixture
def sim(monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with serve(enrollment_rps=None) as s:
        yield s


def lab_on(sim, tmp_path, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("measure", False)
    kw.setdefault("requests_per_second", None)
    return Lab(tmp_path / "lab", backend="offline", base_url=sim.base_url, **kw)


def creates(sim):
    return sum(1 for _, action, _ in sim.request_log if action == "create_voice")


def test_offline_backend_is_plain_in_repr_and_every_take(tmp_path, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    lab = Lab(tmp_path / "lab", progress=False)
    assert lab.offline and "OFFLINE" in repr(lab) and "OFFLINE" in lab._repr_html_()
    take = lab.design("a warm female voice", preview_text="Hello there.")
    assert take.ok and take.backend == "offline" and take.audio.duration > 0.3
    assert lab.log.df["backend"].tolist() == ["offline"]


def test_design_n_candidates_with_measurements(sim, tmp_path):
    lab = lab_on(sim, tmp_path, measure=True)
    takes = lab.design("a calm deep male narrator", n=3, experiment="casting")
    assert len(takes) == 3 and all(t.ok for t in takes)
    assert len({t.voice_id for t in takes}) == 3
    assert all(t.metrics and t.metrics["median_f0_hz"] > 50 for t in takes)
    assert "<audio" in takes[0]._repr_html_()


def test_invalid_design_sends_and_logs_nothing(sim, tmp_path):
    lab = lab_on(sim, tmp_path)
    with pytest.raises(ValidationError):
        lab.design("a voice", prefix="No Good")
    assert lab.log.df.empty and not sim.request_log


def test_compare_grid_pivot_and_rerun_sends_nothing(sim, tmp_path):
    lab = lab_on(sim, tmp_path)
    comp = lab.compare(PROMPTS, repeats=3, preview_text="Hello, how are you today?")
    assert len(comp.takes) == 12 and all(t.ok for t in comp.takes)
    assert comp.html().count("<audio") == 12
    pivot = comp.pivot()
    assert pivot.shape == (2, 2) and (pivot == "3/3 ok").all().all()
    before = creates(sim)
    again = lab.compare(PROMPTS, repeats=3, preview_text="Hello, how are you today?")
    assert creates(sim) == before and again.experiment == comp.experiment and len(again.takes) == 12
    more = lab.compare(PROMPTS, repeats=1, preview_text="Hello, how are you today?", new_repeats=True)
    assert len(more.takes) == 16 and creates(sim) == before + 4


def test_compare_with_one_bad_prompt_sends_nothing(sim, tmp_path):
    lab = lab_on(sim, tmp_path)
    with pytest.raises(ValidationError) as info:
        lab.compare(["fine prompt", "x" * 600], repeats=1)
    assert "prompt 1" in str(info.value) and not sim.request_log


def test_a_design_the_service_answered_500_or_503_is_settled_at_once_and_its_cell_redone(sim, tmp_path):
    """Issue 26, item 2: notebook 03's leftovers were neither re-sent nor settled on a re-run
    made within the grace window. A 500 or 503 from the service itself is an answer: the
    request has ended, so one listing settles the take (its voice adopted, or failed)."""
    sim.faults.error_rate, sim.faults.seed = 0.6, 11
    lab = lab_on(sim, tmp_path)
    assert lab.account.grace_s >= 60  # far longer than this test: nothing here waits it out
    comp = lab.compare(PROMPTS, repeats=3, preview_text="Testing one two three.", experiment="flaky")
    sim.faults.error_rate = 0
    takes = comp.takes
    assert any(t.status == "failed" for t in takes), "this seed makes some 500s and 503s"
    assert all(t.status in ("ok", "failed") for t in takes), "no take is left unknown after a service's answer"
    adopted = [t for t in takes if t.ok and t.preview_missing]
    failed_cells = {t.cell for t in takes if t.status == "failed"} - {t.cell for t in takes if t.ok}
    again = lab.compare(PROMPTS, repeats=3, preview_text="Testing one two three.", experiment="flaky")
    redone = [t for t in again.takes if t.take_id not in {x.take_id for x in takes}]
    assert {t.cell for t in redone} == failed_cells and all(t.ok for t in redone)
    assert all(t.ok for t in lab.log.takes(experiment="flaky") if t.cell in {a.cell for a in adopted})


def test_compare_through_faults_loses_nothing_and_duplicates_nothing(sim, tmp_path):
    sim.faults.error_rate, sim.faults.drop_rate, sim.faults.hang_rate = 0.18, 0.08, 0.04
    sim.faults.hang_seconds, sim.faults.seed = 1.5, 5
    from cosyvoice_lab.service.http import RetryPolicy

    lab = lab_on(sim, tmp_path, timeout=0.7, concurrency=6, retry=RetryPolicy(base_delay=0.01, max_delay=0.05))
    lab.account.grace_s = 3.0  # the hung designs (1.5 s) are long stored by then
    comp = lab.compare(PROMPTS, repeats=15, preview_text="Testing one two three.")
    takes = comp.takes
    assert len(takes) == 60
    # a timed-out design may still store its voice: it stays 'unknown' (reconcilable) for the grace window
    assert all(t.status in ("ok", "failed", "unknown") for t in takes)
    assert all(t.error_code and t.error_message for t in takes if t.status in ("failed", "unknown"))
    sim.faults.error_rate = sim.faults.drop_rate = sim.faults.hang_rate = 0
    time.sleep(lab.account.grace_s)
    lab.reconcile()
    assert all(t.status in ("ok", "failed") for t in lab.log.takes()), "after the grace window every take is settled"
    known = set(lab.log.voice_ids()["voice_id"])
    on_server = {v["voice_id"] for v in sim.voices()}
    assert on_server <= known, "every stored voice is known to the log"
    ok_ids = [t.voice_id for t in takes if t.ok]
    assert len(ok_ids) == len(set(ok_ids)), "no voice adopted twice"
    cells = [t.cell for t in takes if t.ok]
    assert len(cells) == len(set(cells)), "no cell done twice"
    # a second run completes the failed cells only
    done = lab.compare(PROMPTS, repeats=15, preview_text="Testing one two three.")
    assert sum(t.ok for t in done.takes) == 60


CHILD = textwrap.dedent("""
    import sys
    from cosyvoice_lab import Lab
    lab = Lab(sys.argv[1], backend="offline", base_url=sys.argv[2], progress=False, measure=False,
              requests_per_second=None, concurrency=2)
    lab.compare({prompts!r}, repeats=10, preview_text="Hello there.")
""")


def test_killed_run_resumes_only_the_remaining_cells(sim, tmp_path):
    sim.faults.latency = 0.3
    folder = tmp_path / "lab"
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(prompts=PROMPTS), str(folder), sim.base_url])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if creates(sim) >= 8:
                break
            time.sleep(0.1)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    sim.faults.latency = 0
    lab = lab_on(sim, tmp_path)
    first = creates(sim)
    assert 8 <= first < 40
    # the takes in flight when it died stay reconcilable for the grace window: wait it out, so this
    # compare's listing proves their voices absent (or adopts them) and it can finish every cell
    lab.account.grace_s = 2.0
    time.sleep(lab.account.grace_s)
    comp = lab.compare(PROMPTS, repeats=10, preview_text="Hello there.")
    ok = [t for t in comp.takes if t.ok]
    assert len(ok) == 40 and len({t.cell for t in ok}) == 40
    assert creates(sim) - first <= 40 - 8 + 2, "only the remaining cells were sent (plus the ones in flight)"
    assert {v["voice_id"] for v in sim.voices()} <= set(lab.log.voice_ids()["voice_id"])


def test_voices_and_cleanup_keep_chosen_and_unknown(sim, tmp_path):
    lab = lab_on(sim, tmp_path)
    takes = lab.design("a cheerful young woman", n=4)
    stranger = lab.client.create_voice(takes[0].design).voice_id  # made outside the log
    lab.log.choose(takes[1].take_id)
    voices = lab.voices()
    assert len(voices) == 5 and voices["known"].sum() == 4
    assert voices.loc[voices.voice_id == takes[1].voice_id, "chosen"].item()
    plan = lab.cleanup()
    assert set(plan.loc[plan.action == "delete", "voice_id"]) == {takes[i].voice_id for i in (0, 2, 3)}
    assert len(sim.voices()) == 5, "a dry run deletes nothing"
    lab.cleanup(dry_run=False)
    assert {v["voice_id"] for v in sim.voices()} == {takes[1].voice_id, stranger}


def test_quota_warning_before_a_run_passes_the_limit(sim, tmp_path, monkeypatch):
    monkeypatch.setattr(catalog, "VOICE_QUOTA", 5)
    lab = lab_on(sim, tmp_path)
    lab.design("a voice for quota", n=3)
    with pytest.warns(RuntimeWarning, match="limit of 5"):
        lab.compare(["another voice"], target_models=["cosyvoice-v3.5-flash"], repeats=3)


def test_rerun_sends_the_same_design_as_a_child_take(sim, tmp_path):
    lab = lab_on(sim, tmp_path)
    first = lab.design("a whispering old man", preview_text="Come closer.")
    second = lab.rerun(first)
    assert second.design == first.design and second.parent_take_id == first.take_id
    assert second.voice_id != first.voice_id


def test_rate_limit_is_respected_at_the_simulator(tmp_path, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with serve() as strict:  # the service's own 10 requests/second
        lab = Lab(
            tmp_path / "lab",
            backend="offline",
            base_url=strict.base_url,
            progress=False,
            measure=False,
            requests_per_second=8,
            concurrency=8,
        )
        comp = lab.compare(["a steady voice"], target_models=["cosyvoice-v3.5-plus"], repeats=16)
        assert all(t.ok for t in comp.takes)
        assert all(status != 429 for _, _, status in strict.request_log)


SCRIPT = "Welcome back. Today we read the first chapter. Please sit comfortably."


def test_speak_logs_an_utterance_with_cost(sim, tmp_path):
    lab = lab_on(sim, tmp_path)
    take = lab.design("a calm deep male narrator", preview_text="Hello.")
    result = lab.speak(take, SCRIPT, rate=1.2)
    assert result.audio.duration > 2 and result.model == take.target_model
    price = catalog.MODELS[take.target_model].price_cny_per_10k_chars
    assert result.cost_cny == pytest.approx(result.characters * price / 10_000)
    utterances = lab.log.utterances.to_dataframe(take.take_id)
    assert len(utterances) == 1 and utterances["characters"].iloc[0] == result.characters
    by_voice = lab.speak(take.voice_id, "Again, by voice id.")
    assert by_voice.audio.duration > 0.5 and len(lab.log.utterances.to_dataframe(take.take_id)) == 2
    with pytest.raises(ValidationError):
        other = "cosyvoice-v3.5-flash" if take.target_model != "cosyvoice-v3.5-flash" else "cosyvoice-v3.5-plus"
        lab.speak(take, SCRIPT, model=other)


def test_audition_reads_one_script_with_several_voices(sim, tmp_path):
    lab = lab_on(sim, tmp_path)
    takes = lab.design("a bright young woman", n=2)
    aud = lab.audition(takes, SCRIPT)
    assert len(aud.ok) == 2 and aud._repr_html_().count("<audio") == 2
    est = lab.estimate(SCRIPT, takes[0].target_model)
    assert est["characters"] == len(SCRIPT)


def test_summary_reports_variability_and_report_shows_measurements(sim, tmp_path):
    lab = lab_on(sim, tmp_path, measure=True)
    comp = lab.compare(PROMPTS, target_models=["cosyvoice-v3.5-flash"], repeats=2)
    summary = comp.summary()
    assert len(summary) == 2 and (summary["variability"] > 0).all()
    report = lab.log.export_html(tmp_path / "report.html").read_text()
    assert report.count("F0 ") == 4 and report.count(" LUFS") == 4  # one line per take; base64 holds no spaces
    assert lab.quota() == {"held": 4, "limit": catalog.VOICE_QUOTA, "free": catalog.VOICE_QUOTA - 4}


def test_a_recognisable_key_never_leaves_a_trace(tmp_path, monkeypatch, caplog):
    """Reprs, HTML displays, errors, log lines and every file in the lab folder: no key."""
    import logging

    key = "sk-LEAKCHECK0123456789abcdef"
    monkeypatch.setenv("DASHSCOPE_API_KEY", key)
    caplog.set_level(logging.DEBUG)
    with serve(api_key=key, enrollment_rps=None) as keyed:
        lab = Lab(tmp_path / "lab", base_url=keyed.base_url, progress=False, measure=True)
        take = lab.design("a calm voice", preview_text="Hello there.")
        comp = lab.compare(["a deep voice"], target_models=["cosyvoice-v3.5-flash"], repeats=1)
        said = lab.speak(take, "Checking for leaks.")
        keyed.faults.error_rate, keyed.faults.seed = 1.0, 1
        failed = lab.design("a failing voice", preview_text="Hello.")
        keyed.faults.error_rate = 0
        lab.log.export_html(tmp_path / "lab" / "report.html")
        lab.log.bundles.export(tmp_path / "lab" / "bundle.zip")
        lab.log.export_csv(tmp_path / "lab" / "table.csv")
        shown = [
            repr(lab),
            lab._repr_html_(),
            repr(lab.client),
            repr(lab.synthesizer),
            repr(take),
            take._repr_html_(),
            comp.html(),
            repr(comp),
            said._repr_html_(),
            repr(failed),
            str(failed.error_message),
            lab.log.df.to_csv(),
            caplog.text,
        ]
    assert take.ok and not failed.ok
    assert not [s for s in shown if "LEAKCHECK" in s]
    files = [p for p in (tmp_path / "lab").rglob("*") if p.is_file()]
    assert files and not [p for p in files if b"LEAKCHECK" in p.read_bytes()]


def test_new_voices_have_their_status_checked_and_recorded(tmp_path, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with serve(enrollment_rps=None, deploying_seconds=30) as slow:
        lab = Lab(tmp_path / "lab", backend="offline", base_url=slow.base_url, progress=False, measure=False)
        take = lab.design("a voice still under review", preview_text="Hello.")
        assert take.voice_status == "DEPLOYING"
        comp = lab.compare(["another voice"], target_models=["cosyvoice-v3.5-flash"], repeats=2)
        assert [t.voice_status for t in comp.takes] == ["DEPLOYING", "DEPLOYING"]
        slow.set_status(comp.takes[0].voice_id, "UNDEPLOYED")
        lab.voices()  # listing records what it sees
        assert lab.log.get(comp.takes[0].take_id).voice_status == "UNDEPLOYED"


def test_several_candidates_display_with_a_player_each(sim, tmp_path):
    lab = lab_on(sim, tmp_path)
    takes = lab.design("a gentle old woman", n=3)
    assert isinstance(takes, list) and len(takes) == 3
    assert takes._repr_html_().count("<audio") == 3


def test_cleanup_can_keep_well_rated_voices(sim, tmp_path):
    lab = lab_on(sim, tmp_path)
    good, plain, unrated = lab.design("a clear narrator", n=3)
    lab.log.rate(good.take_id, 5)
    lab.log.rate(plain.take_id, 2)
    plan = lab.cleanup(keep_rated_at_least=4, dry_run=False)
    assert dict(zip(plan.voice_id, plan.action, strict=True)) == {
        good.voice_id: "keep",
        plain.voice_id: "delete",
        unrated.voice_id: "delete",
    }
    assert {v["voice_id"] for v in sim.voices()} == {good.voice_id}
    assert lab.log.get(plain.take_id).voice_status == "DELETED"


# --- the Lab's shape: a facade over its parts -----------------------------------------------------
def test_lab_is_composed_not_mixed_in(sim, tmp_path):
    from cosyvoice_lab.lab.account import VoiceAccount
    from cosyvoice_lab.lab.speaker import Speaker

    assert Lab.__mro__ == (Lab, object)
    lab = lab_on(sim, tmp_path)
    assert isinstance(lab.account, VoiceAccount) and isinstance(lab.speaker, Speaker)
    assert lab.account.client is lab.client is lab.speaker.client and lab.account.log is lab.log is lab.speaker.log


def test_requests_per_second_limits_requests_and_rate_is_not_a_keyword(tmp_path, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with pytest.raises(TypeError, match="rate"):  # `rate` is speaking speed only: no alias
        Lab(tmp_path / "lab", backend="offline", rate=5)
    with serve(enrollment_rps=None) as unlimited:
        lab = Lab(
            tmp_path / "lab",
            backend="offline",
            base_url=unlimited.base_url,
            progress=False,
            measure=False,
            requests_per_second=5,
            concurrency=8,
        )
        assert lab.requests_per_second == 5
        admitted = admissions(lab)
        comp = lab.compare(
            ["a steady voice"], target_models=["cosyvoice-v3.5-flash"], repeats=10, check_quota=False, verify=False
        )
        sent = [t for t, action, _ in unlimited.request_log if action == "create_voice"]
    assert len(sent) == 10 and all(t.ok for t in comp.takes)
    assert len(admitted) == 10  # the moments the limiter let each request go (not when the server saw it)
    admitted.sort()
    assert all(b - a >= 1.0 for a, b in zip(admitted, admitted[5:], strict=False)), "never more than 5 in any second"


def admissions(lab) -> list[float]:
    """The clock readings at which ``lab``'s limiter admitted each request, in order: exact, as
    each is the reading the window itself made under its lock (arrival times at the server shift
    with the machine's load; these do not)."""
    import threading

    window = lab.limiter._shared or lab.limiter._window  # the per-key window shared by processes, when open
    last, admitted = threading.local(), []
    real_clock, real_admit = window._clock, window.admit

    def clock():
        last.t = real_clock()
        return last.t

    def admit(*args, **kwargs):
        wait = real_admit(*args, **kwargs)
        if wait == 0.0:
            admitted.append(last.t)
        return wait

    window._clock, window.admit = clock, admit
    return admitted


def test_requests_per_second_keyword_warns_nothing(sim, tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        lab = lab_on(sim, tmp_path, requests_per_second=7)
    assert lab.requests_per_second == 7


# --- planning: pure functions ---------------------------------------------------------------------
def _plan(prompts, models=("cosyvoice-v3.5-plus", "cosyvoice-v3.5-flash"), preview="Hello there."):
    from functools import partial

    from cosyvoice_lab.lab import planning

    make = partial(planning.make_design, prefix="lab", preview_text=preview)
    return planning.plan_cells(prompts, models, lambda p, m: make(p, target_model=m))


def _take(cell, repeat, status):
    from types import SimpleNamespace

    return SimpleNamespace(cell=cell, repeat=repeat, status=status)


def test_plan_cells_are_prompt_major_with_stable_keys_and_names():
    from cosyvoice_lab.lab import planning

    cells = _plan(PROMPTS)
    assert [(c.design.voice_prompt, c.design.target_model) for c in cells] == [
        (p, m) for p in PROMPTS for m in ("cosyvoice-v3.5-plus", "cosyvoice-v3.5-flash")
    ]
    assert [c.key for c in cells] == [c.key for c in _plan(PROMPTS)] and len({c.key for c in cells}) == 4
    assert all(c.key.endswith("|" + c.design.target_model) for c in cells)
    assert planning.experiment_name(cells) == planning.experiment_name(_plan(PROMPTS))
    assert planning.experiment_name(cells) != planning.experiment_name(_plan(PROMPTS[:1]))
    assert planning.prompts_of(cells) == PROMPTS


def test_plan_cells_report_every_problem_at_once():
    with pytest.raises(ValidationError) as info:
        _plan(["fine prompt", "x" * 600, ""], models=["cosyvoice-v3.5-flash"])
    text = str(info.value)
    assert "prompt 1 × cosyvoice-v3.5-flash" in text and "prompt 2 × cosyvoice-v3.5-flash" in text
    assert "prompt 0" not in text


def test_resume_plans_only_the_cells_missing_or_failed():
    from cosyvoice_lab.lab.planning import still_to_do

    cells = _plan(PROMPTS[:1], models=["cosyvoice-v3.5-flash"])
    key = cells[0].key
    existing = [
        _take(f"{key}|r0", 0, "ok"),
        _take(f"{key}|r1", 1, "failed"),
        _take(f"{key}|r2", 2, "unknown"),
        _take(f"{key}|r3", 3, "interrupted"),
        _take(f"{key}|r4", 4, "failed"),
        _take(f"{key}|r4", 4, "ok"),
    ]
    todo = still_to_do(cells, 6, existing)
    assert [(j.cell, j.repeat) for j in todo] == [(f"{key}|r1", 1), (f"{key}|r5", 5)]
    assert todo[0].design == cells[0].design
    assert still_to_do(cells, 1, existing) == [] and len(still_to_do(cells, 3, [])) == 3


def test_new_repeats_are_numbered_after_the_highest_so_far():
    from cosyvoice_lab.lab.planning import still_to_do

    done, fresh = _plan(PROMPTS, models=["cosyvoice-v3.5-flash"])
    existing = [_take(f"{done.key}|r{r}", r, "ok") for r in range(3)] + [_take(f"{done.key}|r7", 7, "failed")]
    todo = still_to_do([done, fresh], 2, existing, new_repeats=True)
    assert sorted((j.cell, j.repeat) for j in todo) == sorted(
        [(f"{done.key}|r8", 8), (f"{done.key}|r9", 9), (f"{fresh.key}|r0", 0), (f"{fresh.key}|r1", 1)]
    )


def test_jobs_are_sent_repeat_by_repeat_with_the_models_alternating():
    """No model is sent systematically later than another: a late model would look slower."""
    from cosyvoice_lab.lab.planning import still_to_do

    models = ["cosyvoice-v3.5-plus", "cosyvoice-v3.5-flash"]
    cells = _plan(PROMPTS[:2], models=models)
    todo = still_to_do(cells, 3, [])
    assert [j.repeat for j in todo] == [0] * 4 + [1] * 4 + [2] * 4
    assert [j.design.target_model for j in todo] == models * 6
    first_round = {(j.design.voice_prompt, j.design.target_model) for j in todo[:4]}
    assert len(first_round) == 4


def test_make_design_follows_the_language_of_the_preview_or_the_prompt():
    from cosyvoice_lab.lab.planning import make_design
    from cosyvoice_lab.prompts.spec import PromptSpec

    spec = PromptSpec.preset("news_anchor")
    zh, zh_spec = make_design(
        spec, target_model="cosyvoice-v3.5-flash", prefix="p", preview_text="大家好，欢迎收听新闻。"
    )
    assert zh.voice_prompt == spec.render("zh") and zh_spec == spec.to_dict() and zh.language is None
    by_prompt, none = make_design("一个低沉的男声", target_model="cosyvoice-v3.5-plus", prefix="p")
    assert by_prompt.preview_text == planning.DEFAULT_PREVIEW_TEXT["zh"] and none is None
    en, _ = make_design(spec, target_model="cosyvoice-v3.5-plus", prefix="p", language="en")
    assert en.voice_prompt == spec.render("en") and en.language == "en"
    assert en.preview_text == planning.DEFAULT_PREVIEW_TEXT["en"]
    with pytest.raises(TypeError):
        make_design(42, target_model="cosyvoice-v3.5-plus", prefix="p")


# --- one grouping of takes -------------------------------------------------------------------------
def test_comparison_groups_prompt_by_model_by_repeat(sim, tmp_path):
    from cosyvoice_lab.views.comparison import group_takes

    lab = lab_on(sim, tmp_path)
    comp = lab.compare(PROMPTS, repeats=2, preview_text="Hello there.", experiment="grid")
    lab.compare(PROMPTS, repeats=1, preview_text="Hello there.", experiment="grid", new_repeats=True)
    grid = comp.grid
    assert grid.prompts == tuple(PROMPTS) and grid.models == catalog.COMPARE_MODELS
    assert all([t.repeat for t in grid.cell(p, m)] == [0, 1, 2] for p in PROMPTS for m in grid.models)
    assert [t.take_id for t in comp.takes] == [t.take_id for t in grid.takes]
    # the log's takes, last prompt's first and each cell's repeats backwards (their start times do not fix that
    # order: a compare's threads claim its cells concurrently)
    takes = lab.log.takes(experiment="grid")
    ordered = sorted(takes, key=lambda t: (PROMPTS.index(t.prompt), t.target_model, t.repeat))
    shuffled = list(reversed(ordered))
    again = group_takes(shuffled)  # rows and columns in order of first appearance; cells by repeat
    assert again.prompts == tuple(reversed(PROMPTS))
    assert [t.repeat for t in again.cell(PROMPTS[0], grid.models[0])] == [0, 1, 2]
    assert group_takes(shuffled, PROMPTS[:1], grid.models[:1]).takes == grid.cell(PROMPTS[0], grid.models[0])


def test_design_n_never_returns_fewer_takes_silently(tmp_path, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with serve(enrollment_rps=None, quota=2, model_profiles={"*": {"design_latency": 0}}) as sim:
        lab = lab_on(sim, tmp_path)
        takes = lab.design("a calm deep male narrator", n=3)
        assert len(takes) == 3 and sum(t.ok for t in takes) == 2  # the account holds 2: the third fails
        [failed] = [t for t in takes if not t.ok]
        assert failed.error_code == "Throttling.AllocationQuota" and failed.error_message
        sim.state.registry.quota = 100
        store = lab.log.folder / "audio"
        for f in store.iterdir():
            f.unlink()
        store.rmdir()
        store.write_text("not a folder")  # no preview can be stored: every candidate's sending raises
        with pytest.raises(LogError, match="cannot write audio"):
            lab.design("a bright young voice", n=3)


def test_a_reconcile_waits_for_the_labs_requests_in_flight(tmp_path, monkeypatch):
    import threading

    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with serve(enrollment_rps=None, model_profiles={"*": {"design_latency": 1}}) as sim:
        lab = lab_on(sim, tmp_path, concurrency=2)
        seen_in_flight = []
        reconcile_take = lab.account.reconcile_take

        def watched(take_id):  # what a reconcile sees: this lab's requests in flight at that moment
            seen_in_flight.append(lab.designer.flight.count)
            return reconcile_take(take_id)

        lab.account.reconcile_take = watched
        design = lab.make_design("a warm voice", preview_text="Hello.")[0]
        unknown = lab.log.table.start(design, backend="offline")  # a take for the reconcile to look at
        lab.log.table.fail(unknown.take_id, error_code="OutcomeUnknown", error_message="timed out", status="unknown")
        compare = threading.Thread(target=lab.compare, args=(PROMPTS,), kwargs={"repeats": 2, "check_quota": False})
        compare.start()
        while lab.designer.flight.count == 0 and compare.is_alive():
            time.sleep(0.01)
        lab.reconcile()  # e.g. the PromptBuilder's thread settling while the compare runs
        compare.join()
        assert seen_in_flight and set(seen_in_flight) == {0}


def test_model_profiles_reach_the_simulator_the_lab_starts(tmp_path, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    lab = Lab(tmp_path / "lab", backend="offline", progress=False, model_profiles={"*": {"pitch_shift": 3}})
    assert lab.simulator is not None and all(p.pitch_shift == 3 for p in lab.simulator.model_profiles.values())
    with pytest.raises(ValueError, match="model_profiles"):
        Lab(tmp_path / "b", backend="offline", base_url="http://127.0.0.1:9/api/v1", model_profiles={})


def test_a_compare_reusing_takes_whose_voices_were_deleted_says_so_up_front(sim, tmp_path):
    """Issue 26, item 3: re-running notebook 02 in the same folder reused takes whose voices the
    previous run's clean-up had deleted (9 of 12 cards said DELETED), without a word."""
    lab = lab_on(sim, tmp_path)
    ask = {"target_models": ["cosyvoice-v3.5-flash"], "repeats": 2, "preview_text": "Hi.", "experiment": "again"}
    lab.compare(PROMPTS, **ask)
    lab.cleanup(dry_run=False)
    with pytest.warns(UserWarning, match=r"4 of the takes this compare reuses have voices that were deleted"):
        lab.compare(PROMPTS, **ask)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fresh repeats: nothing to warn about
        fresh = lab.compare(PROMPTS, new_repeats=True, **ask)
    assert sum(t.ok and t.voice_status != "DELETED" for t in fresh.takes) == 4
