import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # shared check modules (contract_checks.py)

# BLAS on one thread in the workers and in every process they start (kernels, CLI runs; the CLI sets
# it for itself too): xdist already gives each core a worker, and OpenBLAS's own threads would only
# spin beside them on each clip's small products (cosyvoice_lab/cli/main.py has the figures).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# jsonschema (under nbformat, nbclient) compiles 39 grammars of rfc3987-syntax as it loads, for the 'iri'
# formats: 2.9 s of CPU in every worker. No schema the tests validate against uses those formats (nbformat's
# name none), so the workers do without it: jsonschema then leaves the 'iri' formats unchecked, as it does
# when the package is not installed. JupyterLab's server and the kernels the tests start are not affected.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]

# Ctrl-C reaches what the tests start. A shell starts a command sent to the background (`make test &`,
# a CI step without a terminal) with SIGINT ignored, and every process inherits that: the tests that
# interrupt a compare, a panel or a run would then wait for an interrupt that never lands. Python's own
# handler in this process (each xdist worker imports this file in its main thread) is reset to the
# default in every process it starts, so theirs is Python's usual KeyboardInterrupt again.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread: nothing to restore from here
        pass


# --- PostgreSQL (tests/pgserver.py): a real server per session, a fresh database per test ------------
@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server from Debian's binaries in a temp folder (skips when they are missing)."""
    from pgserver import PgServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL's server binaries are not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[postgres]')")
    server = PgServer(bindir).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_url(pg_server) -> str:
    """The URL of the server's maintenance database ``postgres`` (role with a password)."""
    return pg_server.url


@pytest.fixture
def pg_log_url(pg_server) -> str:
    """A URL of a fresh, empty database for this test: ``postgresql://cosyvoice:<pw>@127.0.0.1:<port>/t_<hex>``."""
    return pg_server.new_database()


# --- parallel runs (pytest-xdist, `make test`: a worker per core and two more, --dist loadgroup) --------
# Tests that must not run beside others of their kind share a group, which one worker runs in turn:
# the browser tests (one chromium and one JupyterLab at a time: each wants a core for its page), and the
# tests that start several processes that must overlap in time on purpose (two compares into one folder,
# four busy processes loading one core). Every other test is safe side by side: each makes its own
# temporary folder, simulator and database on a free port (pg_server: a server per worker). Modules whose
# module-scoped fixture designs and measures voices for all their tests stay on one worker each, so that
# the fixture is built once, not once per worker.
#
# The groups are given to xdist's scheduler by node id (`pytest_xdist_make_scheduler` below), not by
# `xdist_group` marks: with pytest 9.2, xdist 3.8 no longer sees those marks (it tags the node id through
# a field pytest stopped reading: pytest-xdist issue #1386) and spread every group over all the workers,
# silently. A node id is all the scheduler sees, so the browser group is named by module and by test; a
# test marked `browser` outside it stops the run (`pytest_collection_modifyitems`), so none is missed.
SHARED_FIXTURE_MODULES = (
    "test_history.py",
    "test_listening.py",
    "test_panel.py",
    "test_report.py",
    "test_synthesis.py",
)
GROUP_MODULES = {
    "test_multiprocess.py": "processes",
    "test_browser.py": "browser",
    "test_panel_browser.py": "browser",
    **{name: name for name in SHARED_FIXTURE_MODULES},  # test_report.py's browser test stays with its fixture
}
GROUP_TESTS = {
    "test_export.py": {
        "test_exporting_the_report_again_encodes_only_previews_it_has_not_encoded_before": "browser",
        "test_report_of_a_hostile_bundle_runs_no_script_in_headless_chromium": "browser",
    },
}


def group_of(nodeid: str) -> str | None:
    """The group a test runs in (one worker runs a group's tests in turn), from its node id; None: any
    worker, beside any test."""
    path, _, rest = nodeid.partition("::")
    module = path.rsplit("/", 1)[-1]
    test = rest.split("[", 1)[0].split("@", 1)[0]
    return GROUP_MODULES.get(module) or GROUP_TESTS.get(module, {}).get(test)


def pytest_xdist_make_scheduler(config, log):
    """xdist's loadgroup scheduling with the groups of ``group_of`` (each group one unit of work; the
    units with the most tests go out first, as xdist orders them)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class Groups(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid) or nodeid

    return Groups(config, log)


# Slow: the tests that took 40 s or more in a measured run (`--durations`, loaded machine), and those that take
# 20 s or more on their own (a Ctrl-C while measuring, the DNSMOS agreement; not a module fixture's cost), besides
# the notebooks, browser tests and multiprocess tests (marked where they are). A PostgreSQL restart and a full disk
# stay quick, so `make test-lowest` keeps them: how a lost connection is reported is the driver's, per version.
# Marked here so that their files stay as they are. `make test` runs them; `make test-fast` leaves them out.
SLOW = {
    "test_analysis.py": ("test_simulator_speech_follows_pitch_words", "test_variation_scores_repeats_of_each_prompt"),
    "test_analysis_voice.py": (
        "test_dnsmos_on_the_clips_own_length_agrees_with_the_looped_reference_within_its_tolerance",
    ),
    "test_cli.py": (
        "test_compare_file_resume_voices_cleanup_and_export",
        "test_a_resumed_compare_answers_for_what_it_sent",
    ),
    "test_evidence.py": (
        "test_a_planted_pitch_shift_on_flash_is_found",
        "test_identical_models_name_no_winner_on_pitch",
        "test_what_to_do_next_draws_the_repeats_that_settle_a_small_planted_difference",
    ),
    "test_hygiene.py": ("test_mypy_is_clean",),
    "test_lab.py": ("test_summary_reports_variability_and_report_shows_measurements",),
    "test_measuring_stage.py": (
        "test_ctrl_c_while_the_cli_measures_keeps_every_take_ok_and_a_rerun_measures_the_rest",
    ),
    "test_multiprocess.py": ("*",),
    "test_report.py": ("test_the_cli_html_export_is_the_report_with_evidence",),
    "test_sweep.py": ("test_words_the_simulator_does_not_voice_are_no_evidence",),
    "test_team_log.py": ("test_three_processes_comparing_into_one_database_design_every_cell_once",),
}


@pytest.fixture(autouse=True)
def _measures_no_test_reads_are_dropped():
    """The measures a test left queued (its labs' previews it never read) are dropped when it ends,
    as Ctrl-C drops them, instead of running beside the next tests: a test reads what it checks.
    Stages of module- and session-scoped fixtures (set up before this fixture) keep theirs."""
    from cosyvoice_lab.lab.stage import stages

    before = set(map(id, stages()))
    yield
    for stage in stages():
        if id(stage) not in before:
            stage.cancel()


def pytest_collection_modifyitems(config, items):
    for item in items:
        slow = SLOW.get(item.path.name, ())
        if ("*" in slow or getattr(item, "originalname", item.name) in slow) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("browser") and group_of(item.nodeid) not in ("browser", item.path.name):
            raise pytest.UsageError(
                f"{item.nodeid} drives a browser but is in no group that runs one at a time: name it in "
                "tests/conftest.py's GROUP_TESTS (or its module in GROUP_MODULES)"
            )
