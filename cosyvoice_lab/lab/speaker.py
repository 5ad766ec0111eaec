"""Speaking with designed voices, as the Lab does it: :class:`Speaker` reads text with a voice
over the WebSocket synthesizer and logs each recording as an utterance of the take that made
the voice.

It holds the client and the log it is given and nothing else; the Lab delegates to it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cosyvoice_lab import catalog
from cosyvoice_lab.errors import CosyVoiceLabError, LogError, Problem, ValidationError
from cosyvoice_lab.service.ratelimit import RateLimiter

if TYPE_CHECKING:
    from cosyvoice_lab.service.http import DashScopeClient
    from cosyvoice_lab.service.ws import Synthesizer


class Speaker:
    """Speech with designed voices: ``speak``, ``estimate``, ``audition``.

    Args:
        client: the DashScopeClient whose key, region and base URL the synthesizer uses.
        experiment_log: the ExperimentLog that records each utterance with its take.
        requests_per_second: the lab's request rate; synthesis keeps under the smaller of it
            and the service's synthesis limit (``catalog.SYNTHESIS_RPS``).
        in_process_simulator: True when the client talks to a simulator this process started:
            its WebSocket URL follows the client's, whatever ``DASHSCOPE_WEBSOCKET_BASE_URL`` says.
    """

    def __init__(
        self,
        client: DashScopeClient,
        experiment_log: Any,
        *,
        requests_per_second: float | None,
        in_process_simulator: bool = False,
    ):
        self.client, self.log = client, experiment_log
        self.requests_per_second, self.in_process_simulator = requests_per_second, in_process_simulator
        self._synthesizer: Synthesizer | None = None

    @property
    def synthesizer(self) -> Synthesizer:
        """The WebSocket ``Synthesizer`` for this backend (made on first use).

        It keeps one connection open and runs each task on it (connecting costs 200-1000 ms).
        Synthesis has its own limit (3 tasks/second on the service); the speaker keeps under it,
        together with the other processes on this machine using the same key."""
        if self._synthesizer is None:
            from cosyvoice_lab.service.ws import Synthesizer

            limiter = RateLimiter(min(self.requests_per_second or catalog.SYNTHESIS_RPS, catalog.SYNTHESIS_RPS))
            limiter.share(self.client.api_key.reveal(), self.client.host, "synthesis")  # hashed, never stored
            # read when the synthesizer is made, as the dashscope SDK reads it
            ws_url = None if self.in_process_simulator else os.environ.get("DASHSCOPE_WEBSOCKET_BASE_URL") or None
            self._synthesizer = Synthesizer(
                client=self.client, ws_url=ws_url, throttle=limiter.acquire, keep_alive=True
            )
        return self._synthesizer

    def close(self) -> None:
        """Close the synthesis connection kept open, if any."""
        if self._synthesizer is not None:
            self._synthesizer.close()

    def voice_and_take(self, take_or_voice_id) -> tuple[str, Any]:
        """(voice_id, Take or None) for a Take, a take id or a voice id.

        Raises:
            ValidationError: the take has no voice (it failed, or is still pending).
        """
        value = getattr(take_or_voice_id, "take_id", take_or_voice_id)
        try:
            take = self.log.get(value)
            if not take.voice_id:
                raise ValidationError([Problem("take", "has_voice", f"take {value} has no voice ({take.status})")])
            return take.voice_id, take
        except LogError:
            known = self.log.voice_ids()
            match = known[known["voice_id"] == value]
            return value, (self.log.get(match["take_id"].iloc[-1]) if len(match) else None)

    def speak(self, take_or_voice_id, text: str, *, model: str | None = None, **options):
        """Read ``text`` with a designed voice; the recording is logged as an utterance of its take.

        Options: ``format``, ``sample_rate``, ``volume``, ``rate`` (speaking speed), ``pitch``,
        ``instruction``, ``language_hints``, ``seed`` (see ``speech.SpeechOptions``).

        Returns:
            a SpeechResult (plays inline; ``.characters`` billed and ``.cost_cny`` estimated).
        Raises:
            ValidationError: bad text/options or a model the voice is not bound to (nothing sent).
            SynthesisError, VoiceNotReady, VoiceNotFound: the service could not speak it.
        """
        voice_id, take = self.voice_and_take(take_or_voice_id)
        result = self.synthesizer.speak(voice_id, text, model=model, **options)
        if take is not None:
            self.log.utterances.add(
                take.take_id,
                text=text,
                params={"model": result.model, **result.options.to_dict()},
                characters=result.characters,
                cost_cny=result.cost_cny,
                audio=result.audio,
                request_id=result.request_id,
            )
        return result

    @staticmethod
    def estimate(text: str, model: str) -> dict:
        """Billed characters and estimated cost of speaking ``text`` on ``model`` (CJK counts 2)."""
        from cosyvoice_lab.service.speech import estimate_cost

        characters, cny = estimate_cost(text, model)
        return {"model": model, "characters": characters, "cost_cny": cny}

    def audition(self, takes: Iterable, script: str, **options):
        """Read one ``script`` with several voices; returns an Audition (players side by side).
        A voice that cannot speak it shows its error in its place."""
        from cosyvoice_lab.views.audition import Audition

        takes = list(takes)
        results: list = []
        for t in takes:
            try:
                results.append(self.speak(t, script, **options))
            except CosyVoiceLabError as exc:
                results.append(exc)
        return Audition(script, takes, results)
