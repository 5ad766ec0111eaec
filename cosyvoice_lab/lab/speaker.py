"""Speaking with designed voices, as the Lab does it: the recording is logged as an
utterance of the take that made the voice.

A mixin of :class:`cosyvoice_lab.lab.lab.Lab` (it uses ``self.client``, ``self.log``,
``self.limiter`` and ``self.model``).
"""
from __future__ import annotations

import os

from cosyvoice_lab import catalog
from cosyvoice_lab.errors import CosyVoiceLabError, LogError, Problem, ValidationError
from cosyvoice_lab.service.ratelimit import RateLimiter


class SpeakingVerbs:
    """``speak``, ``estimate`` and ``audition`` of the Lab."""

    @property
    def synthesizer(self):
        """The WebSocket ``Synthesizer`` for this lab's backend (made on first use).

        Synthesis has its own limit (3 tasks/second on the service); the lab keeps under it."""
        if self._synthesizer is None:
            from cosyvoice_lab.service.ws import Synthesizer

            rate = min(self.limiter.rate or catalog.SYNTHESIS_RPS, catalog.SYNTHESIS_RPS)
            ws_url = None if self.simulator else os.environ.get("DASHSCOPE_WEBSOCKET_BASE_URL") or None
            self._synthesizer = Synthesizer(client=self.client, ws_url=ws_url, throttle=RateLimiter(rate).acquire)
        return self._synthesizer

    def _voice_and_take(self, take_or_voice_id):
        """(voice_id, Take or None) for a Take, a take id or a voice id."""
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

        Options: ``format``, ``sample_rate``, ``volume``, ``rate``, ``pitch``, ``instruction``,
        ``language_hints``, ``seed`` (see ``speech.SpeechOptions``).

        Returns:
            a SpeechResult (plays inline; ``.characters`` billed and ``.cost_cny`` estimated).
        Raises:
            ValidationError: bad text/options or a model the voice is not bound to (nothing sent).
            SynthesisError, VoiceNotReady, VoiceNotFound: the service could not speak it.
        """
        voice_id, take = self._voice_and_take(take_or_voice_id)
        result = self.synthesizer.speak(voice_id, text, model=model, **options)
        if take is not None:
            self.log.add_utterance(take.take_id, text=text, params={"model": result.model, **result.options.to_dict()},
                                   characters=result.characters, cost_cny=result.cost_cny, audio=result.audio,
                                   request_id=result.request_id)
        return result

    def estimate(self, text: str, model: str | None = None) -> dict:
        """Billed characters and estimated cost of speaking ``text`` (CJK characters count 2)."""
        from cosyvoice_lab.service.speech import estimate_cost

        model = model or self.model
        characters, cny = estimate_cost(text, model)
        return {"model": model, "characters": characters, "cost_cny": cny}

    def audition(self, takes, script: str, **options):
        """Read one ``script`` with several voices; returns an Audition (players side by side)."""
        from cosyvoice_lab.views.audition import Audition

        results = []
        for t in takes:
            try:
                results.append(self.speak(t, script, **options))
            except CosyVoiceLabError as exc:
                results.append(exc)
        return Audition(script, list(takes), results)
