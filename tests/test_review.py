"""Findings of the review of the PostgreSQL log, the listening panel and blind rounds: each a
behaviour a user would hit, on real logs (SQLite folders, a real PostgreSQL server), a real panel
on loopback driven over real HTTP, real bundles."""

import numpy as np
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from zipedit import rewrite

from cosyvoice_lab.audio import Audio
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.log.experiment_log import ExperimentLog
from cosyvoice_lab.panel import Panel
from cosyvoice_lab.views.listening import BlindSession

DESIGN = VoiceDesign("A calm, low male voice", "Hello there, welcome to the show.")
VOICE = "cosyvoice-v3.5-plus-vd-lab-" + "0" * 32


def ok_take(log, experiment="exp", pitch=7):
    take = log.table.start(DESIGN, backend="offline", experiment=experiment)
    audio = Audio.from_numpy(0.2 * np.sin(np.arange(2400) / pitch), 24000)
    return log.table.finish(take.take_id, voice_id=VOICE, audio=audio)


@pytest.fixture
def log(tmp_path):
    with ExperimentLog(tmp_path / "log") as opened:
        yield opened


# --- the panel --------------------------------------------------------------------------------------
def test_a_loopback_panel_without_token_answers_only_requests_addressed_to_this_machine(log):
    """DNS rebinding: a web page the organiser opens elsewhere points its own host name at
    127.0.0.1 and, being then same-origin, reads /api/session and posts ratings under any rater
    name. A panel without a join token must answer only a Host naming the loopback."""
    for pitch in (5, 7, 9):
        ok_take(log, pitch=pitch)
    with Panel(log, "exp", port=0) as panel:
        base = f"http://127.0.0.1:{panel.port}"
        assert requests.get(base + "/api/session", params={"rater": "ana"}, timeout=10).status_code == 200
        for host in (f"localhost:{panel.port}", f"[::1]:{panel.port}", f"127.0.0.1:{panel.port}"):
            assert requests.get(base + "/", headers={"Host": host}, timeout=10).status_code == 200
        rebound = {"Host": f"attacker.example:{panel.port}"}
        for path in ("/", "/api/session?rater=eve"):
            answer = requests.get(base + path, headers=rebound, timeout=10)
            assert answer.status_code == 403  # the page: a short page that says why; the API: JSON
            assert "127.0.0.1" in answer.text if path == "/" else "error" in answer.json()
        post = requests.post(base + "/api/rating", json={}, headers=rebound, timeout=10)
        assert post.status_code == 403
        assert [s.rater for s in panel.round.sessions()] == ["ana"]


# --- blind rounds and bundles -----------------------------------------------------------------------
def test_a_bundle_cannot_silently_reseed_a_recorded_blind_round(tmp_path, log):
    """A bundle's ratings.json may carry round rows (a seed) for a session id this log already
    holds (the id is in every take's tag): the round rebuilt from the log must not then take the
    bundle's seed, relabelling the voices under the rater (a rating by label would go to
    another take). Conflicting records are refused, as ``from_log`` documents."""
    ids = [ok_take(log, pitch=p).take_id for p in (3, 5, 7, 9, 11)]
    session = BlindSession.start(ids, seed=1, session_id="round1", rater="ana")
    session.record(log)
    labels = {t: session.label(t) for t in ids}
    bundle = log.bundles.export(tmp_path / "b.zip")

    def reseed(rows):
        return [
            {**r, "rating_id": "%032x" % (i + 1), "seed": 2, "at": "2000-01-01T00:00:00.000000+00:00"}
            for i, r in enumerate(rows)
        ]

    hostile = rewrite(bundle, tmp_path / "hostile.zip", "ratings.json", reseed)
    log.bundles.merge(hostile)
    try:
        rebuilt = BlindSession.from_log(log, "round1")
    except ValueError as exc:
        assert "round1" in str(exc)
    else:
        assert {t: rebuilt.label(t) for t in ids} == labels


# --- PostgreSQL: SQL text through the log's query (SQLAlchemy's text(), :name parameters) ------------
def test_a_percent_in_a_statement_without_parameters_works_on_postgresql(pg_log_url):
    with ExperimentLog(pg_log_url) as team:
        assert team.db.query("SELECT 7 % 3") == [(1,)]


def test_a_percent_inside_a_string_literal_works_with_parameters_on_postgresql(pg_log_url):
    with ExperimentLog(pg_log_url) as team:
        assert team.db.query("SELECT '50%' || :x", {"x": "!"}) == [("50%!",)]


def test_a_password_given_in_the_query_never_reaches_an_error_message(tmp_path):
    from cosyvoice_lab.errors import LogError

    pytest.importorskip("psycopg")
    secret = "s3cr%zzet"  # a '%' typed as it is: libpq quotes the bad token in its message
    with pytest.raises(LogError) as err:
        ExperimentLog(f"postgresql://lab@127.0.0.1:1/team?password={secret}", folder=tmp_path, busy_timeout_s=1)
    assert secret not in str(err.value) and secret not in repr(err.value)


def test_a_take_pickled_from_a_database_log_does_not_carry_the_password(pg_log_url):
    import pickle
    from urllib.parse import urlsplit

    password = urlsplit(pg_log_url).password
    with ExperimentLog(pg_log_url) as team:
        take = team.get(ok_take(team).take_id)
        assert take.audio is not None
        pickled = pickle.dumps(take)
        assert password.encode() not in pickled
        assert pickle.loads(pickled).audio == take.audio  # this process opened the log: it reconnects


@given(st.text(min_size=1, max_size=20))
def test_no_form_of_a_password_survives_redaction(password):
    from urllib.parse import quote, unquote

    from cosyvoice_lab.log.urls import redact_url, url_secrets, without_password

    secret = "SECRET-" + password
    for typed in (quote(secret, safe=""), quote(secret, safe="%")):
        for url in (f"postgresql://me:{typed}@db:5432/lab?sslmode=require", f"postgres://db/lab?password={typed}&x=1"):
            for shown in (redact_url(url), without_password(url)):
                assert "SECRET-" not in shown and "SECRET-" not in unquote(shown)
            assert {typed, unquote(typed)} <= set(url_secrets(url))
            assert without_password(url).startswith(
                ("postgresql://me@db:5432/lab?sslmode=require", "postgres://db/lab?x=1")
            )


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://lab:{s}@127.0.0.1:1/team",
        "postgresql://lab:{e}@127.0.0.1:1/team",
        "postgresql://lab@127.0.0.1:1/team?password={e}",
        "postgresql://lab@127.0.0.1:1/team?sslmode=disable&Password={s}",
    ],
)
@pytest.mark.parametrize("secret", ["s3cr%zz@xq9", "s3cret@hq7z"])
def test_a_password_in_any_form_never_reaches_an_error_message(tmp_path, url, secret):
    from urllib.parse import quote

    from cosyvoice_lab.errors import LogError

    pytest.importorskip("psycopg")
    with pytest.raises(LogError) as err:
        ExperimentLog(url.format(s=secret, e=quote(secret, safe="")), folder=tmp_path, busy_timeout_s=1)
    shown = str(err.value) + repr(err.value)
    assert secret[:4] not in shown and secret[-3:] not in shown and "***" in shown


def test_a_pickled_take_reconnects_elsewhere_with_libpqs_own_password(pg_log_url, tmp_path):
    """A fresh process (not forked from one that opened the log) gets no password from the pickle:
    libpq's PGPASSWORD supplies it; without one the take's audio cannot load."""
    import os
    import pickle
    import subprocess
    import sys
    from urllib.parse import urlsplit

    with ExperimentLog(pg_log_url) as team:
        take = team.get(ok_take(team).take_id)
        pickled, audio = pickle.dumps(take), take.audio
    code = "import pickle, sys\ntake = pickle.load(sys.stdin.buffer)\nsys.stdout.buffer.write(pickle.dumps(take.audio))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"HOME": str(tmp_path)}
    with_password = env | {"PGPASSWORD": urlsplit(pg_log_url).password}
    done = subprocess.run([sys.executable, "-c", code], input=pickled, capture_output=True, env=with_password)
    assert done.returncode == 0, done.stderr.decode()
    assert pickle.loads(done.stdout) == audio
    refused = subprocess.run([sys.executable, "-c", code], input=pickled, capture_output=True, env=env)
    assert refused.returncode != 0 and b"password" in refused.stderr
    assert b"waiting for the log's database" not in refused.stderr, "a refused login is said at once, not waited out"


def test_a_login_the_server_refuses_is_not_waited_for_as_a_lost_connection(pg_log_url, monkeypatch):
    """No password, a wrong one, a database that does not exist: the server answered, so waiting
    30 s for it to "come back" (as for a restart) only delays the error. A closed port is waited for."""
    from urllib.parse import urlsplit

    import psycopg

    from cosyvoice_lab.log.database import is_disconnect

    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    password = urlsplit(pg_log_url).password
    refused = [
        pg_log_url.replace(f":{password}@", "@"),
        pg_log_url.replace(f":{password}@", ":not-the-password@"),
        pg_log_url.rsplit("/", 1)[0] + "/no_such_database",
    ]
    for url in refused:
        with pytest.raises(psycopg.OperationalError) as info:
            psycopg.connect(url, connect_timeout=5).close()
        assert not is_disconnect(info.value), str(info.value)
    closed = f"postgresql://lab:x@127.0.0.1:{_closed_port()}/team"
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(closed, connect_timeout=5).close()
    assert is_disconnect(info.value), str(info.value)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "header, host",
    [
        ("127.0.0.1:42611", "127.0.0.1"),
        ("LocalHost", "localhost"),
        ("[::1]:8770", "::1"),
        ("attacker.example:80", "attacker.example"),
        ("", None),
        ("a:b:c", None),
        ("[::1]x", None),
        ("evil@127.0.0.1", None),
    ],
)
def test_the_panel_reads_the_host_of_a_host_header_itself(header, host):
    from cosyvoice_lab.panel.app import host_name

    assert host_name(header) == host


@given(st.text(max_size=40))
def test_a_host_header_parses_to_a_plain_lower_case_name_or_nothing(header):
    from cosyvoice_lab.panel.app import host_name

    host = host_name(header)
    assert host is None or (host == host.lower() and not any(c in host for c in "/?#@ "))


@pytest.mark.parametrize("special", ["#", "?", "#?"])
def test_a_password_with_characters_libpq_takes_raw_appears_nowhere(pg_log_url, tmp_path, special):
    """Issue 23, item 1: a password holding # or ? (libpq accepts them unencoded) was printed
    whole in reprs, log.path, the CLI's log line, errors and pickles. A canary search over all."""
    import pickle
    import subprocess
    import sys
    from urllib.parse import urlsplit

    import psycopg

    from cosyvoice_lab.lab.lab import Lab
    from cosyvoice_lab.offline import serve

    parts = urlsplit(pg_log_url)
    canary = f"Kan{special}ary{special}9x"
    with psycopg.connect(pg_log_url, autocommit=True) as raw:
        raw.execute(f"ALTER ROLE {parts.username} PASSWORD '{canary}'")
    try:
        url = f"postgresql://{parts.username}:{canary}@{parts.hostname}:{parts.port}{parts.path}"
        with serve(enrollment_rps=None, model_profiles={"*": {"design_latency": 0}}) as sim:
            lab = Lab(tmp_path / "lab", log=url, base_url=sim.base_url, progress=False, measure=False)
            take = lab.design("A calm voice.", preview_text="Hello.")
            shown = [repr(lab), lab._repr_html_(), repr(lab.log), str(lab.log.path), str(lab.log.location)]
            shown += [repr(take), take.to_dict().__repr__(), lab.log.df.to_csv()]
            pickled = pickle.dumps(take)
            cli = subprocess.run(
                [sys.executable, "-m", "cosyvoice_lab.cli", "log", "show", "--log", url, "--folder", str(tmp_path)],
                capture_output=True,
                text=True,
            )
            shown += [cli.stdout, cli.stderr]
            lab.log.close()
        bad = url.replace(f":{parts.port}", ":1")  # an error text about this URL
        with pytest.raises(Exception) as err:
            ExperimentLog(bad, folder=tmp_path, busy_timeout_s=1)
        shown += [str(err.value), repr(err.value)]
        for text in shown:
            assert canary not in text and canary.replace(special, "") not in text
            assert f"Kan{special}" not in text and f"ary{special}9x" not in text
        assert canary.encode() not in pickled
    finally:
        with psycopg.connect(pg_log_url.replace(parts.password, canary), autocommit=True) as raw:
            raw.execute(f"ALTER ROLE {parts.username} PASSWORD '{parts.password}'")


@pytest.mark.parametrize("password", ["p/ss", "p@ss", "p%ss"])
def test_a_password_libpq_would_read_as_part_of_the_address_is_refused_unshown(tmp_path, password):
    from cosyvoice_lab.errors import LogError

    pytest.importorskip("psycopg")
    with pytest.raises(LogError, match="percent-encode") as err:
        ExperimentLog(f"postgresql://lab:{password}@127.0.0.1:1/team", folder=tmp_path, busy_timeout_s=1)
    assert password not in str(err.value) and "***" in str(err.value)
