"""A real PostgreSQL server for the tests, started from Debian's binaries in a temporary folder.

Fixtures (defined in conftest.py; import nothing from here in tests but ``PgServer`` if needed):
    pg_server   session-scoped ``PgServer`` (skips when PostgreSQL's binaries are not installed)
    pg_url      session-scoped URL of the server's maintenance database (``postgres``)
    pg_log_url  a FRESH, empty database per test: ``postgresql://cosyvoice:<password>@127.0.0.1:<port>/t_<hex>``

The server runs as an unprivileged system user (``initdb`` refuses root): ``cosyvoice-test``,
created with ``useradd`` when missing, else ``nobody``. It listens on 127.0.0.1 on a free port
with password (scram) authentication for the role ``cosyvoice``, so URLs carry a password as a
team's would. CI installs the binaries with ``apt-get install postgresql``.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

ROLE = "cosyvoice"
_USER = "cosyvoice-test"


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` holding initdb, pg_ctl and postgres."""
    found = []
    for candidate in glob.glob("/usr/lib/postgresql/*/bin"):
        major = Path(candidate).parent.name
        if major.isdigit() and all(
            os.access(Path(candidate, exe), os.X_OK) for exe in ("initdb", "pg_ctl", "postgres")
        ):
            found.append((int(major), Path(candidate)))
    return max(found)[1] if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _system_user() -> str:
    """An unprivileged user to run the server as (created if we are root and it is missing)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam(_USER)
        return _USER
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    made = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _USER], capture_output=True
    )
    return _USER if made.returncode == 0 else "nobody"


class PgServer:
    """A throwaway PostgreSQL cluster: ``start()``, ``new_database()``, ``stop()``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.user = _system_user()
        self.password = secrets.token_hex(12)
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cosyvoice-pg-"))
        self.data = self.root / "data"
        self.url = f"postgresql://{ROLE}:{self.password}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in args]
        if os.geteuid() == 0:
            cmd = [
                "setpriv",
                f"--reuid={self.user}",
                f"--regid={pwd.getpwnam(self.user).pw_gid}",
                "--clear-groups",
                *cmd,
            ]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stdout}\n{done.stderr}")
        return done

    def start(self) -> PgServer:
        entry = pwd.getpwnam(self.user)
        os.chmod(self.root, 0o700)
        os.chown(self.root, entry.pw_uid, entry.pw_gid)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        self._run(
            self.bindir / "initdb", "-D", self.data, "-U", ROLE, "--pwfile", pwfile, "--auth=scram-sha-256",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        self.options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self.resume()
        return self

    def halt(self) -> None:
        """Stop the server as an administrator's restart does (``-m fast``: every session is ended)."""
        self._run(self.bindir / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the (stopped) server, on its port with its data."""
        log = self.root / "server.log"
        self._run(self.bindir / "pg_ctl", "-D", self.data, "-l", log, "-o", self.options, "-w", "start")

    def new_database(self) -> str:
        """A new empty database; returns its URL (with the password)."""
        import psycopg

        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + "/" + name

    def stop(self) -> None:
        self._run(self.bindir / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)
