"""The contract checks of ``contract_checks.py`` against the offline simulator (the live suite
runs the very same checks against the real service)."""

import pytest
from contract_checks import CHECKS, EN, assert_gone

from cosyvoice_lab.offline import serve
from cosyvoice_lab.service.http import DashScopeClient
from cosyvoice_lab.service.ws import Synthesizer


@pytest.fixture(scope="module")
def backend():
    with serve(enrollment_rps=None, synthesis_rps=None) as sim:
        client = DashScopeClient(api_key=sim.api_key, base_url=sim.base_url, backend="offline")
        yield client, Synthesizer(client=client), sim


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_contract(check, backend):
    client, synth, sim = backend
    cleanup = []
    try:
        check(client, synth, cleanup)
    finally:  # as the live suite does: a failing check leaves no voice behind for the next one
        for vid in cleanup:
            client.delete_voice(vid)
    assert not [v for v in sim.voices() if v["voice_id"] in cleanup]


def test_a_deleted_voice_is_asked_after_again_until_it_is_gone(backend):
    client, _, sim = backend
    vid = client.create_voice(EN).voice_id
    queries = sum(1 for _, action, _ in sim.request_log if action == "query_voice")
    with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):  # still there after every try
        assert_gone(client, vid, tries=3, interval=0.0)
    assert sum(1 for _, action, _ in sim.request_log if action == "query_voice") == queries + 3
    client.delete_voice(vid)
    assert_gone(client, vid, tries=3, interval=0.0)
