import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # shared check modules (contract_checks.py)


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


# --- parallel runs (pytest-xdist, `make test`: -n auto --dist loadgroup) ---------------------------------
# Tests that must not run beside others of their kind share a group, which one worker runs in turn:
# the browser tests (one chromium and one JupyterLab at a time: each wants a core for its page), and the
# tests that start several processes that must overlap in time on purpose (two compares into one folder,
# eight busy processes loading the machine). Every other test is safe side by side: each makes its own
# temporary folder, simulator and database on a free port (pg_server: a server per worker). Modules whose
# module-scoped fixture designs and measures voices for all their tests stay on one worker each, so that
# the fixture is built once, not once per worker.
GROUPS = {"browser": lambda item: item.get_closest_marker("browser") is not None}
# (test_report.py's browser test stays with its module's fixture.)
SHARED_FIXTURE_MODULES = (
    "test_history.py",
    "test_listening.py",
    "test_panel.py",
    "test_report.py",
    "test_synthesis.py",
)
GROUP_MODULES = {"test_multiprocess.py": "processes", **{name: name for name in SHARED_FIXTURE_MODULES}}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        group = GROUP_MODULES.get(item.path.name)
        group = group or next((name for name, member in GROUPS.items() if member(item)), None)
        if group and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
