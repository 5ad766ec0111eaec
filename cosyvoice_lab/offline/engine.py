"""The simulator's speech engine: espeak-ng 1.52 (from the ``espeakng-loader`` wheel) via ctypes,
then the voice quality of :mod:`cosyvoice_lab.offline.timbre`.

A designed voice is a :class:`VoiceSettings` (see :mod:`cosyvoice_lab.offline.voicing`, which
derives them from the words of the voice prompt, the model's profile and a per-voice draw).
The settings are stored with the voice so that synthesis later sounds like the preview.

The wheel has no Python API, only the library and its data; Debian's espeak-ng 1.51 reads
Mandarin wrongly and is never used.
"""

from __future__ import annotations

import ctypes
import math
import re
import threading
from dataclasses import replace

import numpy as np

from cosyvoice_lab import catalog
from cosyvoice_lab.audio import Audio
from cosyvoice_lab.design import detect_language
from cosyvoice_lab.offline import timbre
from cosyvoice_lab.offline.voicing import (
    FEMALE_VARIANTS,
    LANGUAGE_VOICES,
    MALE_VARIANTS,
    VoiceSettings,
    settings_for,
    timbre_words,
)

__all__ = [
    "ENGINE_RATE",
    "FEMALE_VARIANTS",
    "LANGUAGE_VOICES",
    "MALE_VARIANTS",
    "SYNTHESIS_VOICES",
    "VoiceSettings",
    "billable",
    "encode",
    "encoding_rate",
    "frame_audio",
    "plain_text",
    "preview",
    "render",
    "render_task",
    "settings_for",
    "split_sentences",
    "timbre_words",
]

ENGINE_RATE = 22050  # what espeak-ng renders; everything else is resampled from it

# espeak_PARAMETER values and other C constants (speak_lib.h)
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1

# Designed voices also speak other languages when synthesis names one in language_hints.
SYNTHESIS_VOICES = {**LANGUAGE_VOICES, **{code: code for code in ("fr", "de", "es", "it", "pt", "ru", "ja", "ko")}}


# --- the C library -------------------------------------------------------------------------

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Espeak:
    """The espeak-ng library. It keeps global state, so every call holds the lock; and some of that
    state outlives a rendering (wavegen's pitch flutter index, phase and echo buffer are C statics
    that no API resets, and its breath noise comes from its own random generator), so the same text
    and voice would sound a little different after other renderings. Each rendering therefore loads
    the library afresh, seeds that generator and unloads the library after (``dlclose``: about
    7 ms): a voice renders a text the same way whatever was rendered before.
    """

    def __init__(self):
        import espeakng_loader

        self.lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._path = espeakng_loader.get_library_path()
        self._data = espeakng_loader.get_data_path().encode()
        # ctypes does not keep the callback alive for C: hold it for the life of the process.
        self._callback = _CALLBACK(self._on_samples)
        self._close(self._open())  # fail here, not at the first rendering, if espeak-ng cannot start

    def _open(self) -> ctypes.CDLL:
        lib = ctypes.CDLL(self._path)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self._data, _INITIALIZE_DONT_EXIT)
        if rate != ENGINE_RATE:
            self._close(lib)
            raise RuntimeError(f"espeak-ng failed to initialise (returned {rate})")
        lib.espeak_SetSynthCallback(self._callback)
        seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if seed is not None:
            seed(1)  # the breath noise's generator (builds since espeak-ng 1.52 have their own)
        return lib

    @staticmethod
    def _close(lib: ctypes.CDLL) -> None:
        lib.espeak_Terminate()
        _dlclose(lib._handle)

    def _on_samples(self, wav, n, _events):
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = go on

    def speak(self, text: str, s: VoiceSettings) -> np.ndarray:
        """Render ``text`` as int16 samples at :data:`ENGINE_RATE`."""
        data = text.encode("utf-8")
        with self.lock:
            self._chunks = []
            lib = self._open()
            try:
                if lib.espeak_SetVoiceByName(s.voice.encode()) != 0:
                    raise ValueError(f"espeak-ng has no voice {s.voice!r}")
                for param, value in ((_RATE, s.rate), (_VOLUME, s.volume), (_PITCH, s.pitch), (_RANGE, s.range)):
                    lib.espeak_SetParameter(param, int(value), 0)
                lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
                lib.espeak_Synchronize()
            finally:
                self._close(lib)
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def _dlclose(handle: int) -> None:
    """Unload a library ctypes loaded (its C statics start afresh at the next load)."""
    import _ctypes

    close = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary", None)
    if close is not None:
        close(handle)


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
        out.append(text[start : m.end()].strip())
        start = m.end()
    out.append(text[start:].strip())
    return [s for s in out if s]


def billable(text: str) -> int:
    """Billed characters: CJK 2, others 1, SSML tags not counted."""
    return catalog.billed_characters(_without_ssml(text, ""))


def render(text: str, settings: VoiceSettings, sample_rate: int = ENGINE_RATE) -> np.ndarray:
    """Speak ``text`` with ``settings``; float32 samples in [-1, 1] at ``sample_rate``."""
    samples = _espeak().speak(plain_text(text), settings).astype(np.float32) / 32768.0
    samples = timbre.apply(
        samples,
        ENGINE_RATE,
        shift=settings.shift,
        breath_amount=settings.breath,
        rasp_amount=settings.rasp,
        tilt_db=settings.tilt,
        noise=settings.noise,
        rng=timbre.rng_for(text, settings),
    )
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


def preview(
    text: str,
    settings: VoiceSettings,
    *,
    sample_rate: int = catalog.DEFAULT_PREVIEW_SAMPLE_RATE,
    fmt: str = catalog.DEFAULT_PREVIEW_FORMAT,
) -> Audio:
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
