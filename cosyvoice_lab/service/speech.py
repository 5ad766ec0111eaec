"""What to say and how: speech options, text rules, cost estimates and results.

The pure half of speaking with a designed voice (no network): ``SpeechOptions`` validated
against the catalog's ranges, the text limits and how text is cut into continue-task chunks,
the cost estimate, and the ``SpeechResult`` a synthesis returns. ``ws.py`` holds the
WebSocket protocol that uses them.
"""

from __future__ import annotations

import dataclasses
import re
import struct
import warnings
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field

from cosyvoice_lab import catalog
from cosyvoice_lab.audio import Audio
from cosyvoice_lab.errors import Problem, ValidationError

# The workbench plays in notebooks, and browsers play WAV without a decoder fuss, so speech
# comes back as 24 kHz WAV unless asked otherwise (the service's own default is mp3/22050,
# catalog.SYNTH_DEFAULT_FORMAT/_SAMPLE_RATE, which we never rely on: we always send both).
DEFAULT_FORMAT = "wav"
DEFAULT_SAMPLE_RATE = 24000


# --- options -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeechOptions:
    """How to speak (contract §6.1 ``parameters``). Ranges come from the catalog.

    Args:
        format: 'wav' (workbench default), 'mp3', 'pcm' or 'opus'.
        sample_rate: one of 8000, 16000, 22050, 24000 (default), 44100, 48000.
        volume: 0-100 (50). rate / pitch: 0.5-2.0 (1.0).
        instruction: free-form style hint (v3.5), at most 100 characters, CJK counting 2.
        language_hints: e.g. ('en',); only the first is used by the service.
        seed: 0-65535 for reproducible sampling; None leaves it to the service.
    """

    format: str = DEFAULT_FORMAT
    sample_rate: int = DEFAULT_SAMPLE_RATE
    volume: int = catalog.SYNTH_DEFAULT_VOLUME
    rate: float = catalog.SYNTH_DEFAULT_RATE
    pitch: float = catalog.SYNTH_DEFAULT_PITCH
    instruction: str | None = None
    language_hints: tuple[str, ...] | None = None
    seed: int | None = None

    def __post_init__(self):
        if isinstance(self.language_hints, list):  # keep the dataclass hashable
            object.__setattr__(self, "language_hints", tuple(self.language_hints))

    def problems(self) -> list[Problem]:
        """Every rule these options break (empty when valid)."""
        out = []
        if self.format not in catalog.SYNTH_FORMATS:
            out.append(
                Problem("format", "allowed_values", f"must be one of {catalog.SYNTH_FORMATS}, got {self.format!r}")
            )
        if _not_int(self.sample_rate) or self.sample_rate not in catalog.SYNTH_SAMPLE_RATES:
            out.append(
                Problem(
                    "sample_rate",
                    "allowed_values",
                    f"must be one of {catalog.SYNTH_SAMPLE_RATES}, got {self.sample_rate!r}",
                )
            )
        out += _range_problem("volume", self.volume, catalog.SYNTH_VOLUME_RANGE, integer=True)
        out += _range_problem("rate", self.rate, catalog.SYNTH_RATE_RANGE)
        out += _range_problem("pitch", self.pitch, catalog.SYNTH_PITCH_RANGE)
        if self.seed is not None:
            out += _range_problem("seed", self.seed, catalog.SYNTH_SEED_RANGE, integer=True)
        out += self._instruction_problems() + self._hint_problems()
        return out

    def _instruction_problems(self) -> list[Problem]:
        if self.instruction is None:
            return []
        if not isinstance(self.instruction, str):
            return [Problem("instruction", "type", f"must be a string, got {type(self.instruction).__name__}")]
        if not self.instruction.strip():
            return [Problem("instruction", "non_empty", "must not be empty (use None for no instruction)")]
        n = catalog.billed_characters(self.instruction)
        if n > catalog.SYNTH_INSTRUCTION_MAX:
            return [
                Problem(
                    "instruction",
                    "max_length",
                    f"is {n} characters (CJK counting 2); the limit is {catalog.SYNTH_INSTRUCTION_MAX}",
                )
            ]
        return []

    def _hint_problems(self) -> list[Problem]:
        hints = self.language_hints
        if hints is None:
            return []
        if isinstance(hints, str) or not isinstance(hints, Sequence) or not hints:
            return [
                Problem(
                    "language_hints",
                    "type",
                    f"must be a non-empty list of language codes such as ['en'], got {hints!r}",
                )
            ]
        bad = [h for h in hints if not isinstance(h, str) or not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]+)?", h)]
        if bad:
            return [Problem("language_hints", "pattern", f"must hold language codes such as 'zh' or 'en', got {bad!r}")]
        return []

    def validate(self) -> SpeechOptions:
        """Return self if valid, else raise ``ValidationError`` listing every problem."""
        found = self.problems()
        if found:
            raise ValidationError(found, context="invalid SpeechOptions")
        return self

    def to_parameters(self, voice: str) -> dict:
        """The run-task ``payload.parameters`` for ``voice`` (validates first)."""
        self.validate()
        params = {
            "text_type": "PlainText",
            "voice": voice,
            "format": self.format,
            "sample_rate": self.sample_rate,
            "volume": self.volume,
            "rate": self.rate,
            "pitch": self.pitch,
        }
        if self.instruction is not None:
            params["instruction"] = self.instruction
        if self.language_hints is not None:
            params["language_hints"] = list(self.language_hints)
        if self.seed is not None:
            params["seed"] = self.seed
        return params

    def replace(self, **changes) -> SpeechOptions:
        """A copy with ``changes``; keys whose value is None are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["language_hints"] = list(self.language_hints) if self.language_hints is not None else None
        return d


def _not_int(value) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)


def _range_problem(name: str, value, bounds: tuple, *, integer: bool = False) -> list[Problem]:
    lo, hi = bounds
    kind = "an integer" if integer else "a number"
    if _not_int(value) if integer else (isinstance(value, bool) or not isinstance(value, (int, float))):
        return [Problem(name, "type", f"must be {kind} in [{lo}, {hi}], got {value!r}")]
    if not (lo <= value <= hi):  # also catches NaN
        return [Problem(name, "range", f"must be in [{lo}, {hi}], got {value!r}")]
    return []


# --- text ---------------------------------------------------------------------------------------

_PIECE = re.compile(r"[^。！？!?；;…\n.]*(?:[。！？!?；;…\n]+|\.+(?=\s|$)|\.(?!\s|$)|$)")


def split_text(text: str, limit: int = catalog.SYNTH_CONTINUE_MAX_CHARS) -> list[str]:
    """``text`` cut at sentence ends into chunks of at most ``limit`` billed characters
    (CJK counting 2), each as large as fits. A sentence longer than ``limit`` is cut at a
    space or comma, else hard. Whitespace-only chunks are dropped."""
    pieces = [m.group(0) for m in _PIECE.finditer(text) if m.group(0)]
    chunks, current, size = [], "", 0
    for piece in _fit(pieces, limit):
        n = catalog.billed_characters(piece)
        if current and size + n > limit:
            chunks.append(current)
            current, size = "", 0
        current, size = current + piece, size + n
    if current:
        chunks.append(current)
    return [c for c in chunks if c.strip()]


def _fit(pieces: list[str], limit: int) -> Iterator[str]:
    """Pieces no longer than ``limit``: longer ones cut at a space/comma, else at the limit."""
    for piece in pieces:
        while catalog.billed_characters(piece) > limit:
            cut, n = 0, 0
            for i, ch in enumerate(piece):
                n += catalog.billed_characters(ch)
                if n > limit:
                    break
                cut = i + 1
            soft = max(piece.rfind(sep, 0, cut) for sep in " ,，、")
            cut = soft + 1 if soft > 0 else max(cut, 1)
            yield piece[:cut]
            piece = piece[cut:]
        if piece:
            yield piece


def text_problems(text) -> list[Problem]:
    """Why ``text`` cannot be sent as one task (empty, or over the task limit)."""
    if not isinstance(text, str):
        return [Problem("text", "type", f"must be a string, got {type(text).__name__}")]
    if not text.strip():
        return [Problem("text", "non_empty", "must not be empty")]
    n = catalog.billed_characters(text)
    if n > catalog.SYNTH_TASK_MAX_CHARS:
        return [
            Problem(
                "text",
                "max_length",
                f"is {n} characters (CJK counting 2); one task takes at most "
                f"{catalog.SYNTH_TASK_MAX_CHARS}: split it into several calls",
            )
        ]
    return []


def estimate_cost(text: str, model: str) -> tuple[int, float]:
    """``(billed characters, CNY)`` for speaking ``text`` on ``model``, from the catalog's prices.

    Raises:
        ValidationError: unknown model.
    """
    if model not in catalog.MODELS:
        raise ValidationError([unknown_model_problem(model)], context="cannot estimate cost")
    n = catalog.billed_characters(text)
    return n, catalog.synthesis_cost_cny(model, n)


def unknown_model_problem(model) -> Problem:
    return Problem("model", "allowed_values", f"must be one of {tuple(catalog.MODELS)}, got {model!r}")


def model_problems(options: SpeechOptions, model: str | None, voice_id: str | None = None) -> list[Problem]:
    """Options ``model`` does not take: an ``instruction`` on a model the docs say has none
    (cosyvoice-v3-plus, contract §11), which the service answers with ``InvalidParameter``.

    Also warns (:class:`LanguageWarning`) when the designed voice ``voice_id`` is asked to speak
    a language other than Chinese or English (:func:`language_warning`).
    """
    if (doubt := language_warning(voice_id, options)) is not None:
        warnings.warn(doubt, LanguageWarning, stacklevel=3)
    if options.instruction is None or model not in catalog.MODELS or model in catalog.INSTRUCTION_MODELS:
        return []
    return [
        Problem(
            "instruction",
            "model_support",
            f"{model} does not take an instruction (the service documents it only for "
            f"{', '.join(catalog.INSTRUCTION_MODELS)}); drop instruction=, or design the voice on one of those",
        )
    ]


class LanguageWarning(UserWarning):
    """A designed voice is asked to speak a language the service documents no support for."""


def language_warning(voice_id: str | None, options: SpeechOptions) -> str | None:
    """Why asking the designed voice ``voice_id`` to speak ``options.language_hints`` is doubtful,
    or None: the service documents designed voices as speaking Chinese and English only, though
    its FAQ says "多种语言" (contract §11), so another language is sent, with this warning."""
    hints = options.language_hints
    if not hints or not isinstance(voice_id, str) or catalog.model_of_voice(voice_id) is None:
        return None
    language = str(hints[0]).split("-")[0].lower()
    if language in catalog.DESIGNED_VOICE_LANGUAGES:
        return None
    return (
        f"language_hints {hints[0]!r}: the service documents designed voices speaking only Chinese and "
        f"English ({', '.join(catalog.DESIGNED_VOICE_LANGUAGES)}); {voice_id} may read it poorly or be refused"
    )


# --- results --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SpeechResult:
    """One finished synthesis: the recording, what it cost, and how long it took.

    ``characters`` is the service's last ``usage.characters``; ``cost_cny`` prices it with the
    catalog. Latencies are measured from the start of the synthesis (after any wait for the
    voice to be OK; retries included): ``first_chunk_latency_s`` to the first audio frame,
    ``latency_s`` to ``task-finished``.
    """

    audio: Audio
    text: str = field(repr=False)
    voice_id: str
    model: str
    options: SpeechOptions = field(repr=False)
    characters: int
    cost_cny: float
    request_id: str | None
    task_id: str
    sentences: list[str] = field(repr=False)
    first_chunk_latency_s: float | None
    latency_s: float
    attempts: int = 1
    frames: int = field(default=0, repr=False)

    def _repr_html_(self) -> str:
        from cosyvoice_lab import html  # the one place that writes HTML (escaped)

        facts = f"{self.characters} chars · ¥{self.cost_cny:.4f} · {self.latency_s:.2f} s"
        return html.speech_result(self.audio, voice_id=self.voice_id, model=self.model, facts=facts)


def fix_wav_sizes(data: bytes) -> bytes:
    """Rewrite a WAV header's RIFF and data sizes to match ``data``'s length.

    Streamed WAV carries a header written before the length was known (often a placeholder
    size); frames are only valid as a file once the sizes are true. Non-WAV data is returned as is.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return data
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if chunk == b"data":
            body = len(data) - pos - 8
            out = bytearray(data)
            out[4:8] = struct.pack("<I", len(data) - 8)
            out[pos + 4 : pos + 8] = struct.pack("<I", body)
            return bytes(out)
        pos += 8 + size + (size & 1)
    return data


Frames = Generator[bytes, None, SpeechResult]


class SpeechStream:
    """Iterate for the audio frames (bytes) as they arrive; ``result`` is set at the end.

    ``close()`` (or leaving a ``with`` block) abandons the task and closes the connection.
    """

    def __init__(self, gen: Frames):
        self._gen = gen
        self.result: SpeechResult | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._gen)
        except StopIteration as stop:
            self.result = stop.value
            raise StopIteration from None

    def close(self) -> None:
        self._gen.close()

    def __enter__(self) -> SpeechStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
