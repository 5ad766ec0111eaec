"""The simulator's speech engine: espeak-ng 1.52 (from the ``espeakng-loader`` wheel) via ctypes.

A designed voice is a :class:`VoiceSettings`: an espeak voice name with a variant
(``"en-us+m3"``, ``"cmn+f2"``), pitch, pitch range, rate and volume. :func:`settings_for`
derives them from the words of the voice prompt (``vocabulary.read_claims``) plus a small
random variation seeded by the voice id, because the real service gives different voices
for identical prompts. The settings are stored with the voice so that synthesis later sounds
like the preview.

The wheel has no Python API, only the library and its data; Debian's espeak-ng 1.51 reads
Mandarin wrongly and is never used.
"""
from __future__ import annotations

import ctypes
import math
import random
import re
import threading
from dataclasses import asdict, dataclass, replace

import numpy as np

from cosyvoice_lab import catalog
from cosyvoice_lab.audio import Audio
from cosyvoice_lab.design import detect_language
from cosyvoice_lab.prompts.lexicon import read_claims

ENGINE_RATE = 22050  # what espeak-ng renders; everything else is resampled from it

# espeak_PARAMETER values and other C constants (speak_lib.h)
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1

# Variants whose median F0 praat measures cleanly at low pitch; m1 and m4 add creak that
# praat reads an octave too high, which would make "deep" voices measure as high.
MALE_VARIANTS = ("m2", "m3", "m5", "m6", "m7")
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5")
LANGUAGE_VOICES = {"en": "en-us", "zh": "cmn"}  # the design languages
# Designed voices also speak other languages when synthesis names one in language_hints.
SYNTHESIS_VOICES = {**LANGUAGE_VOICES, **{code: code for code in ("fr", "de", "es", "it", "pt", "ru", "ja", "ko")}}

# Prompt word -> setting. Pitch is espeak's 0-99 scale; with the variants above 40 gives a
# male median F0 of about 85 Hz (lower makes Mandarin tones fall under praat's 75 Hz floor),
# 80 gives a female one of about 250 Hz.
_PITCH_BY_CLAIM = {"low": 40, None: 55, "high": 80}
_PITCH_MIN, _PITCH_MAX = 36, 95
_RANGE_BY_ENERGY = {"calm": 35, None: 50, "lively": 75}
_RATE_BY_PACE = {"slow": 0.75, None: 1.0, "fast": 1.3}
_BASE_WPM = {"en": 170, "zh": 195}  # Mandarin at 170 wpm sounds sluggish
_VOLUME_BY_CLAIM = {"soft": 45, None: 85, "loud": 130}
_WPM_MIN, _WPM_MAX = 80, 450

# Per-voice variation; small enough that a "deep" voice never reaches a "high-pitched" one.
_JITTER_PITCH, _JITTER_RANGE, _JITTER_RATE = 4, 8, 0.06


@dataclass(frozen=True)
class VoiceSettings:
    """What espeak-ng needs to speak as one designed voice.

    ``voice`` is an espeak voice name with variant, ``pitch`` and ``range`` are 0-99,
    ``rate`` is words per minute, ``volume`` is espeak's 0-200 amplitude.
    """

    voice: str
    pitch: int
    range: int
    rate: int
    volume: int

    def to_dict(self) -> dict:
        """Plain JSON-able form, as stored in the voice registry."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VoiceSettings":
        """Inverse of :meth:`to_dict`."""
        return cls(str(d["voice"]), int(d["pitch"]), int(d["range"]), int(d["rate"]), int(d["volume"]))

    def adjusted(self, *, rate: float = 1.0, pitch: float = 1.0, volume: int = 50) -> "VoiceSettings":
        """These settings under the synthesis parameters ``rate``/``pitch`` (0.5-2.0) and
        ``volume`` (0-100, 50 = as designed).

        espeak's pitch scale is not linear in Hz; 60 units per octave is close enough in the
        middle of the scale.
        """
        return replace(
            self,
            rate=_clamp(round(self.rate * rate), _WPM_MIN, _WPM_MAX),
            pitch=_clamp(round(self.pitch + 60 * math.log2(pitch)), 0, 99),
            volume=_clamp(round(self.volume * volume / 50), 0, 200),
        )


def _clamp(v, lo, hi):
    return max(lo, min(hi, v))


def _value(claims: dict, dimension: str) -> str | None:
    claim = claims.get(dimension)
    return claim.value if claim else None


def _variant(claims: dict, rng: random.Random) -> str:
    gender = _value(claims, "gender")
    if gender is None:
        # No gender word: let the pitch words decide, as a listener would expect.
        gender = {"low": "male", "high": "female"}.get(_value(claims, "pitch"))
        gender = gender or rng.choice(("male", "female"))
    return rng.choice(MALE_VARIANTS if gender == "male" else FEMALE_VARIANTS)


def settings_for(voice_prompt: str, language: str, seed: str) -> VoiceSettings:
    """Engine settings for a voice designed from ``voice_prompt`` in ``language`` (zh/en).

    ``seed`` (the voice id) makes the per-voice variation reproducible.
    """
    claims = read_claims(voice_prompt)
    rng = random.Random(seed)
    age = _value(claims, "age")
    pitch = _PITCH_BY_CLAIM[_value(claims, "pitch")]
    rng_range = _RANGE_BY_ENERGY[_value(claims, "energy")]
    rate = _BASE_WPM.get(language, 170) * _RATE_BY_PACE[_value(claims, "pace")]
    if age == "child":
        pitch, rng_range, rate = pitch + 15, rng_range + 10, rate * 1.08
    elif age == "elderly":
        pitch, rng_range, rate = pitch - 5, rng_range - 10, rate * 0.85
    voice = f"{LANGUAGE_VOICES.get(language, 'cmn')}+{_variant(claims, rng)}"
    return VoiceSettings(
        voice=voice,
        pitch=_clamp(pitch + rng.randint(-_JITTER_PITCH, _JITTER_PITCH), _PITCH_MIN, _PITCH_MAX),
        range=_clamp(rng_range + rng.randint(-_JITTER_RANGE, _JITTER_RANGE), 5, 99),
        rate=_clamp(round(rate * (1 + rng.uniform(-_JITTER_RATE, _JITTER_RATE))), _WPM_MIN, _WPM_MAX),
        volume=_VOLUME_BY_CLAIM[_value(claims, "volume")],
    )


# --- the C library -------------------------------------------------------------------------

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Espeak:
    """The process-wide espeak-ng library: it keeps global state, so every call holds the lock."""

    def __init__(self):
        import espeakng_loader

        self.lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        data = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INITIALIZE_DONT_EXIT)
        if rate != ENGINE_RATE:
            raise RuntimeError(f"espeak-ng failed to initialise (returned {rate})")
        # ctypes does not keep the callback alive for C: hold it for the life of the process.
        self._callback = _CALLBACK(self._on_samples)
        lib.espeak_SetSynthCallback(self._callback)
        self.lib = lib

    def _on_samples(self, wav, n, _events):
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = go on

    def speak(self, text: str, s: VoiceSettings) -> np.ndarray:
        """Render ``text`` as int16 samples at :data:`ENGINE_RATE`."""
        data = text.encode("utf-8")
        with self.lock:
            self._chunks = []
            if self.lib.espeak_SetVoiceByName(s.voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {s.voice!r}")
            for param, value in ((_RATE, s.rate), (_VOLUME, s.volume), (_PITCH, s.pitch), (_RANGE, s.range)):
                self.lib.espeak_SetParameter(param, int(value), 0)
            self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


_engine: _Espeak | None = None
_engine_lock = threading.Lock()


def _espeak() -> _Espeak:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = _Espeak()
        return _engine


# --- rendering -----------------------------------------------------------------------------

_SSML_TAG = re.compile(r"<[^>]+>")


def _without_ssml(text: str, replacement: str) -> str:
    return _SSML_TAG.sub(replacement, text) if text.lstrip().startswith("<speak") else text


def plain_text(text: str) -> str:
    """``text`` without SSML tags (the engine would read them aloud)."""
    return _without_ssml(text, " ")


CHUNK_SECONDS = 0.5  # audio per binary frame

_SENTENCE_END = re.compile(r"[.!?;]+(?=\s|$)|[。！？；]+[”」』\"']?|\n+")


def split_sentences(text: str) -> list[str]:
    """``text`` cut after ``. ! ? ;`` (followed by a space or the end), ``。！？；`` and newlines."""
    out, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        out.append(text[start:m.end()].strip())
        start = m.end()
    out.append(text[start:].strip())
    return [s for s in out if s]


def billable(text: str) -> int:
    """Billed characters: CJK 2, others 1, SSML tags not counted."""
    return catalog.billed_characters(_without_ssml(text, ""))


def render(text: str, settings: VoiceSettings, sample_rate: int = ENGINE_RATE) -> np.ndarray:
    """Speak ``text`` with ``settings``; float32 samples in [-1, 1] at ``sample_rate``."""
    samples = _espeak().speak(plain_text(text), settings).astype(np.float32) / 32768.0
    if sample_rate != ENGINE_RATE and len(samples):
        import soxr

        samples = soxr.resample(samples, ENGINE_RATE, sample_rate).astype(np.float32)
    return samples


def encoding_rate(fmt: str, sample_rate: int) -> int:
    """The rate ``fmt`` is actually encoded at: Opus knows only 8/12/16/24/48 kHz, so
    22050 and 44100 become the next rate up."""
    if fmt != "opus":
        return sample_rate
    return min(r for r in (8000, 12000, 16000, 24000, 48000) if r >= sample_rate)


def encode(samples: np.ndarray, sample_rate: int, fmt: str) -> Audio:
    """``samples`` (float, [-1, 1]) encoded as ``fmt`` (pcm/wav/mp3/opus)."""
    return Audio.from_numpy(samples, sample_rate, fmt)


def preview(text: str, settings: VoiceSettings, *,
            sample_rate: int = catalog.DEFAULT_PREVIEW_SAMPLE_RATE,
            fmt: str = catalog.DEFAULT_PREVIEW_FORMAT) -> Audio:
    """The preview clip of a designed voice: ``text`` spoken with ``settings``, encoded."""
    return encode(render(text, settings, sample_rate), sample_rate, fmt)


# --- tasks of several sentences (the WebSocket) -----------------------------------------


def _language_of(sentence: str, forced: str | None, default: str) -> str:
    if forced in SYNTHESIS_VOICES:
        return forced
    return detect_language(sentence) or default


def render_task(sentences: list[str], settings: VoiceSettings, params: dict) -> tuple[list, int]:
    """Per-sentence float samples and the rate they are at (each sentence in its language)."""
    rate = encoding_rate(params["format"], params["sample_rate"])
    variant = settings.voice.partition("+")[2]
    default = "zh" if settings.voice.startswith("cmn") else "en"
    out = []
    for s in sentences:
        voice = f"{SYNTHESIS_VOICES[_language_of(s, params['language'], default)]}+{variant}"
        out.append(render(s, replace(settings, voice=voice), rate))
    return out, rate


def frame_audio(parts: list[np.ndarray], rate: int, fmt: str) -> list[list[bytes]]:
    """Encode the concatenated ``parts`` once and cut the bytes into frames, per sentence.

    PCM and WAV are cut on sample boundaries (the first WAV frame carries the header);
    compressed formats in proportion to the audio each frame covers.
    """
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    data = encode(samples, rate, fmt).data
    total = len(samples)
    header = len(data) - 2 * total if fmt in ("pcm", "wav") else 0
    step = max(1, int(CHUNK_SECONDS * rate))

    def offset(samples_done: int) -> int:
        if fmt in ("pcm", "wav"):
            return header + 2 * samples_done
        return round(len(data) * samples_done / total) if total else len(data)

    frames, done, last = [], 0, 0
    for i, part in enumerate(parts):
        n = max(1, math.ceil(len(part) / step))  # equal frames, no runt at the end
        ends = [done + round(len(part) * k / n) for k in range(1, n + 1)]
        done += len(part)
        cuts = [offset(end) for end in ends]
        if i == len(parts) - 1:
            cuts[-1] = len(data)  # trailing container bytes belong to the last frame
        chunks = []
        for cut in cuts:
            if cut > last:
                chunks.append(data[last:cut])
                last = cut
        frames.append(chunks)
    return frames
