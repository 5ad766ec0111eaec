"""From a voice prompt to a designed voice's engine settings: the words, the model's profile and
a per-voice random draw.

A designed voice is a :class:`VoiceSettings`: an espeak voice name with a variant
(``"en-us+m3"``, ``"cmn+f2"``), pitch, pitch range, rate and volume, plus the voice quality
added after espeak (:mod:`cosyvoice_lab.offline.timbre`). :func:`settings_for` derives them
from the words of the voice prompt (``prompts.lexicon``) plus a small random variation seeded
by the voice, because the real service gives different voices for identical prompts. The
model's :class:`~cosyvoice_lab.offline.profiles.ModelProfile` scales how much the words count
(adherence) and how wide the random spread is (variation), and adds its planted differences
(pitch shift, pace, noise). The settings are stored with the voice so that synthesis later
sounds like the preview.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import asdict, dataclass, fields, replace
from functools import cache

from cosyvoice_lab import catalog
from cosyvoice_lab.offline.profiles import NEUTRAL, ModelProfile
from cosyvoice_lab.prompts.lexicon import LEXICON, read_claims

# Variants whose median F0 praat measures cleanly at low pitch; m1 and m4 add creak that
# praat reads an octave too high, which would make "deep" voices measure as high.
MALE_VARIANTS = ("m2", "m3", "m5", "m6", "m7")
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5")
LANGUAGE_VOICES = {"en": "en-us", "zh": "cmn"}  # the design languages

# Prompt word -> setting. Pitch is espeak's 0-99 scale; with the variants above 40 gives a
# male median F0 of about 85 Hz (lower makes Mandarin tones fall under praat's 75 Hz floor),
# 80 gives a female one of about 250 Hz.
_PITCH_BY_CLAIM = {"low": 40, None: 55, "high": 80}
_PITCH_MIN, _PITCH_MAX = 36, 95
_RANGE_BY_ENERGY = {"calm": 35, None: 50, "lively": 75}
_RATE_BY_PACE = {"slow": 0.75, None: 1.0, "fast": 1.3}
_BASE_WPM = {"en": 170, "zh": 195}  # Mandarin at 170 wpm sounds sluggish
_VOLUME_BY_CLAIM = {"soft": 45, None: 85, "loud": 130}
WPM_MIN, WPM_MAX = 80, 450
# Timbre word -> effect after espeak (timbre.py): breath and rasp 0-1, tilt in dB per octave.
_TIMBRE_EFFECTS = {"breathy": ("breath", 1.0), "husky": ("rasp", 1.0), "bright": ("tilt", 3.0), "warm": ("tilt", -3.0)}

# Per-voice variation; small enough that a "deep" voice never reaches a "high-pitched" one.
_JITTER_PITCH, _JITTER_RANGE, _JITTER_RATE = 4, 8, 0.06


@dataclass(frozen=True)
class VoiceSettings:
    """What the engine needs to speak as one designed voice.

    ``voice`` is an espeak voice name with variant, ``pitch`` and ``range`` are 0-99,
    ``rate`` is words per minute, ``volume`` is espeak's 0-200 amplitude. The rest is voice
    quality added after espeak (see :mod:`cosyvoice_lab.offline.timbre`): ``shift`` in
    semitones, ``breath``, ``rasp`` and ``noise`` 0-1, ``tilt`` in dB per octave.
    """

    voice: str
    pitch: int
    range: int
    rate: int
    volume: int
    shift: float = 0.0
    breath: float = 0.0
    rasp: float = 0.0
    tilt: float = 0.0
    noise: float = 0.0

    def to_dict(self) -> dict:
        """Plain JSON-able form, as stored in the voice registry."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VoiceSettings:
        """Inverse of :meth:`to_dict` (voices stored before the quality fields get none)."""
        extra = {f.name: float(d.get(f.name) or 0.0) for f in fields(cls)[5:]}
        return cls(str(d["voice"]), int(d["pitch"]), int(d["range"]), int(d["rate"]), int(d["volume"]), **extra)

    def adjusted(self, *, rate: float = 1.0, pitch: float = 1.0, volume: int = 50) -> VoiceSettings:
        """These settings under the synthesis parameters ``rate``/``pitch`` (0.5-2.0) and
        ``volume`` (0-100, 50 = as designed).

        espeak's pitch scale is not linear in Hz; 60 units per octave is close enough in the
        middle of the scale.
        """
        return replace(
            self,
            rate=_clamp(round(self.rate * rate), WPM_MIN, WPM_MAX),
            pitch=_clamp(round(self.pitch + 60 * math.log2(pitch)), 0, 99),
            volume=_clamp(round(self.volume * volume / 50), 0, 200),
        )


def _clamp(v, lo, hi):
    return max(lo, min(hi, v))


def _value(claims: dict, dimension: str) -> str | None:
    claim = claims.get(dimension)
    return claim.value if claim else None


@cache
def _word(word: str) -> re.Pattern:
    return re.compile(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])", re.IGNORECASE)


def timbre_words(voice_prompt: str) -> set[str]:
    """Every timbre value the prompt names ("warm and breathy" names two; ``read_claims``
    keeps one per dimension)."""
    return {
        value
        for value, (en, zh) in LEXICON["timbre"].items()
        if any(_word(w).search(voice_prompt) for w in en) or any(w in voice_prompt for w in zh)
    }


def _seed(seed: str) -> str:
    """The part of a voice id that makes the draw: its unique hex, so that the same draw on
    plus and flash gives the same voice (anything else is used as it is)."""
    m = catalog.VOICE_ID_RE.match(seed)
    return m.group("uid") if m else seed


@dataclass(frozen=True)
class _Draw:
    """The per-voice random draws, always made in the same order whatever the words say."""

    follows_gender: float
    gender: str
    variant: int
    pitch: float
    range: float
    rate: float

    @classmethod
    def make(cls, seed: str) -> _Draw:
        rng = random.Random(_seed(seed))
        return cls(
            rng.random(),
            rng.choice(("male", "female")),
            rng.randrange(len(MALE_VARIANTS)),
            rng.uniform(-1, 1),
            rng.uniform(-1, 1),
            rng.uniform(-1, 1),
        )


def _variant(claims: dict, draw: _Draw, adherence: float, variation: float) -> str:
    gender = _value(claims, "gender")
    if gender is None:
        # No gender word: let the pitch words decide, as a listener would expect.
        gender = {"low": "male", "high": "female"}.get(_value(claims, "pitch") or "")
    if gender is None or draw.follows_gender >= adherence:
        gender = draw.gender  # a model with low adherence sometimes ignores the gender words
    # the variant is part of the per-voice spread: without variation, always the first
    return (MALE_VARIANTS if gender == "male" else FEMALE_VARIANTS)[draw.variant if variation > 0 else 0]


def _toward(neutral: float, claimed: float, adherence: float) -> float:
    return neutral + adherence * (claimed - neutral)


def _quality(voice_prompt: str, adherence: float) -> dict:
    effects = {"breath": 0.0, "rasp": 0.0, "tilt": 0.0}
    for word in timbre_words(voice_prompt):
        if word in _TIMBRE_EFFECTS:
            name, amount = _TIMBRE_EFFECTS[word]
            effects[name] += adherence * amount
    return effects


def settings_for(voice_prompt: str, language: str, seed: str, profile: ModelProfile | None = None) -> VoiceSettings:
    """Engine settings for a voice designed from ``voice_prompt`` in ``language`` (zh/en) on a
    model with ``profile`` (default: words fully heard, no planted difference).

    ``seed`` (the voice id) makes the per-voice variation reproducible; only the id's unique
    part counts, so one draw gives the same voice on every model.
    """
    p = profile or NEUTRAL
    claims, draw, a = read_claims(voice_prompt), _Draw.make(seed), p.adherence
    age = _value(claims, "age")
    pitch = _PITCH_BY_CLAIM[_value(claims, "pitch")]
    pitch_range = _RANGE_BY_ENERGY[_value(claims, "energy")]
    pace = _RATE_BY_PACE[_value(claims, "pace")]
    if age == "child":
        pitch, pitch_range, pace = pitch + 15, pitch_range + 10, pace * 1.08
    elif age == "elderly":
        pitch, pitch_range, pace = pitch - 5, pitch_range - 10, pace * 0.85
    rate = _BASE_WPM.get(language, 170) * _toward(1.0, pace, a) * p.pace
    v = p.variation
    return VoiceSettings(
        voice=f"{LANGUAGE_VOICES.get(language, 'cmn')}+{_variant(claims, draw, a, p.variation)}",
        pitch=_clamp(
            round(_toward(_PITCH_BY_CLAIM[None], pitch, a) + v * _JITTER_PITCH * draw.pitch), _PITCH_MIN, _PITCH_MAX
        ),
        range=_clamp(round(_toward(_RANGE_BY_ENERGY[None], pitch_range, a) + v * _JITTER_RANGE * draw.range), 5, 99),
        rate=_clamp(round(rate * (1 + v * _JITTER_RATE * draw.rate)), WPM_MIN, WPM_MAX),
        volume=round(_toward(_VOLUME_BY_CLAIM[None], _VOLUME_BY_CLAIM[_value(claims, "volume")], a)),
        shift=p.pitch_shift,
        noise=p.noise,
        **_quality(voice_prompt, a),
    )


# What an instruction's words do to the delivery, on top of the designed voice (emotion words
# beyond the lexicon's energy and pace words: (rate factor, pitch steps, range steps)).
_EMOTION_DELIVERY = {
    "sad": (0.88, -4, -10),
    "solemn": (0.9, -3, -8),
    "serious": (0.95, -2, -5),
    "cheerful": (1.08, 4, 10),
    "excited": (1.12, 5, 12),
    "playful": (1.06, 4, 10),
}


def instructed(settings: VoiceSettings, instruction: str | None) -> VoiceSettings:
    """``settings`` as the synthesis ``instruction`` asks ("speak slowly and softly", "用欢快的语气"),
    read with the prompt lexicon: pace words scale the rate, energy words the pitch range, volume
    words the loudness, pitch words the pitch, some emotion words all three, timbre words the
    voice quality. Words the lexicon does not know change nothing."""
    if not instruction:
        return settings
    claims = read_claims(instruction)
    rate_factor, pitch_steps, range_steps = _EMOTION_DELIVERY.get(_value(claims, "emotion") or "", (1.0, 0, 0))
    rate_factor *= _RATE_BY_PACE[_value(claims, "pace")]
    pitch_steps += (_PITCH_BY_CLAIM[_value(claims, "pitch")] - _PITCH_BY_CLAIM[None]) // 2
    range_steps += _RANGE_BY_ENERGY[_value(claims, "energy")] - _RANGE_BY_ENERGY[None]
    volume_factor = _VOLUME_BY_CLAIM[_value(claims, "volume")] / _VOLUME_BY_CLAIM[None]
    quality = _quality(instruction, 1.0)
    return replace(
        settings,
        rate=_clamp(round(settings.rate * rate_factor), WPM_MIN, WPM_MAX),
        pitch=_clamp(settings.pitch + pitch_steps, 0, 99),
        range=_clamp(settings.range + range_steps, 5, 99),
        volume=_clamp(round(settings.volume * volume_factor), 0, 200),
        breath=min(1.0, settings.breath + quality["breath"]),
        rasp=min(1.0, settings.rasp + quality["rasp"]),
        tilt=settings.tilt + quality["tilt"],
    )
