"""The simulator's HTTP limits, over raw sockets (issue 12): a body above the limit is answered
413 in the service's error shape, a request that never completes is not kept open forever,
and no repr shows the key."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from cosyvoice_lab import catalog
from cosyvoice_lab.offline import Simulator, serve
from cosyvoice_lab.offline.state import SIMULATOR

PATH = "/api/v1" + catalog.CUSTOMIZATION_PATH
LIST = json.dumps({"model": "voice-enrollment", "input": {"action": "list_voice"}}).encode()


@pytest.fixture(scope="module")
def sim():
    with serve(enrollment_rps=None, read_timeout_seconds=0.5) as s:
        yield s


def raw(s, head: str, body: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    sock.sendall(head.encode() + body)
    return sock


def headers(s, **extra) -> str:
    lines = [
        f"POST {PATH} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {s.api_key}",
        "Content-Type: application/json",
        *(f"{k.replace('_', '-')}: {v}" for k, v in extra.items()),
    ]
    return "\r\n".join(lines) + "\r\n\r\n"


def answer(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of one HTTP answer."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), json.loads(body[:length])


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes the connection within ``seconds`` (after any answer)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def assert_service_error(status: int, body: dict, expected_status: int, code: str):
    assert status == expected_status, body
    assert set(body) == {"code", "message", "request_id"} and body["code"] == code


def test_the_limit_is_documented_in_the_catalog():
    assert Simulator().state.max_body_bytes == SIMULATOR.max_body_bytes == 1024 * 1024


def test_a_100_mb_body_is_answered_413_before_it_is_read(sim):
    sock = raw(sim, headers(sim, Content_Length=100 * 1024 * 1024), b"{" + b" " * 65535)
    t = time.monotonic()
    status, body = answer(sock)
    assert_service_error(status, body, 413, "BadRequest.TooLarge")
    assert str(SIMULATOR.max_body_bytes) in body["message"] and time.monotonic() - t < 2
    assert closed_within(sock, 5)  # the rest of the 100 MB is not waited for
    assert (
        requests.post(
            sim.base_url + catalog.CUSTOMIZATION_PATH,
            data=LIST,
            timeout=5,
            headers={"Authorization": f"Bearer {sim.api_key}"},
        ).status_code
        == 200
    )


def test_a_chunked_body_past_the_limit_is_413(sim):
    sock = raw(sim, headers(sim, Transfer_Encoding="chunked"))
    chunk = b" " * 65536
    try:
        for _ in range(SIMULATOR.max_body_bytes // len(chunk) + 2):
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may answer and close while we still send
    status, body = answer(sock)
    assert_service_error(status, body, 413, "BadRequest.TooLarge")


def test_a_body_under_the_limit_is_read_as_usual(sim):
    junk = b"x" * (SIMULATOR.max_body_bytes - 1)
    status, body = answer(raw(sim, headers(sim, Content_Length=len(junk)), junk))
    assert_service_error(status, body, 400, "BadRequest.IllegalInput")


def test_a_body_that_never_completes_times_out(sim):
    sock = raw(sim, headers(sim, Content_Length=len(LIST) + 100), LIST)  # 100 bytes never come
    t = time.monotonic()
    status, body = answer(sock)
    assert_service_error(status, body, 408, "RequestTimeOut")
    assert 0.4 < time.monotonic() - t < 2
    assert closed_within(sock, 5)


def test_headers_that_never_complete_are_closed(sim):
    sock = raw(sim, f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and nothing more
    t = time.monotonic()
    assert closed_within(sock, 5) and time.monotonic() - t < 3


def test_the_default_read_timeout_is_the_catalogs():
    assert Simulator().state.read_timeout_seconds == SIMULATOR.read_timeout_seconds


def test_no_repr_shows_the_key():
    key = "sk-offlinesecret-0123456789"
    with serve(api_key=key) as s:
        requests.post(
            s.base_url + catalog.CUSTOMIZATION_PATH, data=LIST, timeout=5, headers={"Authorization": f"Bearer {key}"}
        )
        shown = [repr(s), str(s), repr(s.state), str(s.state), repr(s.state.registry), repr(s.model_profiles)]
    assert all(key not in text and "0123456789" not in text for text in shown), shown
    assert "State(" in repr(s.state)  # still a useful repr, just without the key
