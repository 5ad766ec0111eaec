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
