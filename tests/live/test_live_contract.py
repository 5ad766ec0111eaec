"""Opt-in: the same contract checks against the real DashScope service (Beijing).

Runs only with ``DASHSCOPE_API_KEY`` set and ``COSYVOICE_LAB_LIVE=1``::

    COSYVOICE_LAB_LIVE=1 DASHSCOPE_API_KEY=sk-... .venv/bin/python -m pytest tests/live -v

Every voice it creates is deleted at the end, even when a check fails. CosyVoice design is
free; the synthesis check speaks about 30 characters (well under ¥0.01). The Qwen design family's
checks design two voices, billed $0.2 each (contract §12).
"""

import contextlib
import os

import pytest
from contract_checks import CHECKS, PREFIX, READY_INTERVAL_S, READY_TIMEOUT_S

from cosyvoice_lab.errors import VoiceNotFound
from cosyvoice_lab.service.http import DashScopeClient
from cosyvoice_lab.service.ws import Synthesizer

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (os.environ.get("DASHSCOPE_API_KEY") and os.environ.get("COSYVOICE_LAB_LIVE") == "1"),
        reason="live suite: set DASHSCOPE_API_KEY and COSYVOICE_LAB_LIVE=1",
    ),
]


@pytest.fixture(scope="module")
def backend():
    client = DashScopeClient(backend="dashscope")  # key from the environment, Beijing endpoint
    # syntheses wait as long as the checks for a DEPLOYING voice (every 10 s, up to 300 s)
    yield client, Synthesizer(client=client, ready_timeout=READY_TIMEOUT_S, ready_interval=READY_INTERVAL_S)
    for voice in client.list_voices(prefix=PREFIX, family=None):  # leave nothing behind (both families)
        with contextlib.suppress(VoiceNotFound):  # a voice deleted a moment ago may still be listed
            client.delete_voice(voice.voice_id)


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_live_contract(check, backend):
    client, synth = backend
    cleanup = []
    try:
        check(client, synth, cleanup)
    finally:
        for vid in cleanup:
            with contextlib.suppress(VoiceNotFound):
                client.delete_voice(vid)
