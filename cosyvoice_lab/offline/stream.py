"""Streaming synthesis: sentences are spoken as soon as their text is complete, paced as the
service documents (contract §11: first audio 200-800 ms after the text, real-time factor
0.1-0.5), not all at finish-task.

Two ways to encode, chosen when a task's first audio is due:

* **whole**: finish-task has already arrived, so the whole text is known (the SDK's ``call()``
  and our client send it at once). The task's audio is encoded once and its bytes cut into
  frames: only the first frame carries the WAV/MP3 header, the WAV header holds the true
  sizes, and the concatenated frames are exactly one valid file.
* **stream**: text is still arriving. PCM goes out as it is; WAV's first frame carries a
  header with the streaming placeholder size (0xFFFFFFFF, which decoders read to the end);
  MP3 goes out as constant-bitrate frames per sentence without the Info frame (a header frame
  counting the frames of one sentence would make decoders stop after it). Ogg Opus cannot be
  cut that way here, so an Opus task waits for finish-task and goes out whole.
"""

from __future__ import annotations

import asyncio
import collections
import io
import json
import math
import random
import re
import struct
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cosyvoice_lab import catalog
from cosyvoice_lab.offline import engine

CHUNK_SECONDS = engine.CHUNK_SECONDS  # audio per binary frame
WAV_STREAMING_SIZE = 0xFFFFFFFF  # what a WAV header says while the total is unknown

# a sentence ends after . ! ? ; (when a space follows: "3.5" and "e.g" at the end of a piece of
# text are not ends yet), after 。！？； (and a closing quote) and at a newline
_END_ASCII = re.compile(r"[.!?;]+(?=\s)")
_END_CJK = re.compile(r"[。！？；]+[”」』\"']?|\n+")


_SSML_TAG = re.compile(r"<[^>]+>")

Counted = tuple[str, int]  # a sentence (stripped) and the billed characters of its raw text


class SentenceBuffer:
    """Text as it arrives, cut into sentences as soon as each is complete.

    Each sentence comes with the billed characters of the raw text it was cut from, whitespace
    included (contract §11: "中 文。" counts 6): the whitespace before a sentence counts with it,
    and whatever follows the last sentence of a cut counts with that one (a cut of whitespace
    alone with the next sentence). In an SSML task (``ssml``) tags are not counted.
    """

    def __init__(self, ssml: bool = False):
        self.pending = ""
        self.ssml = ssml
        self.carry = 0  # billed characters of text cut off without a sentence

    def add(self, text: str) -> list[Counted]:
        """Append ``text``; return the sentences it completed (stripped, never empty)."""
        self.pending += text
        ends = [m.end() for m in _END_ASCII.finditer(self.pending)] + [m.end() for m in _END_CJK.finditer(self.pending)]
        if not ends:
            return []
        cut = max(ends)
        done, self.pending = self.pending[:cut], self.pending[cut:]
        return self._split(done)

    def flush(self) -> list[Counted]:
        """The rest of the text as sentences (finish-task, ``{"flush": true}``, SSML)."""
        done, self.pending = self.pending, ""
        return self._split(done)

    def billed(self, raw: str) -> int:
        """Billed characters of ``raw`` text: CJK 2, all else 1 (whitespace too), SSML tags 0."""
        return catalog.billed_characters(_SSML_TAG.sub("", raw) if self.ssml else raw)

    def _split(self, done: str) -> list[Counted]:
        sentences, out, start = engine.split_sentences(done), [], 0
        for k, sentence in enumerate(sentences):
            end = len(done) if k == len(sentences) - 1 else done.index(sentence, start) + len(sentence)
            out.append((sentence, self.billed(done[start:end]) + self.carry))
            start, self.carry = end, 0
        if not sentences:
            self.carry += self.billed(done)
        return out


# --- stream-mode encoding ----------------------------------------------------------------------


def _int16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def wav_streaming_header(rate: int) -> bytes:
    """A 16-bit mono WAV header whose sizes say "until the end of the stream"."""
    return (
        b"RIFF"
        + struct.pack("<I", WAV_STREAMING_SIZE)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16)
        + b"data"
        + struct.pack("<I", WAV_STREAMING_SIZE)
    )


_MP3_KBPS = {
    3: (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),  # MPEG-1 layer III
    2: (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}  # MPEG-2 and 2.5
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_frame_length(data: bytes) -> int:
    """Bytes of the MPEG layer III frame that starts ``data``."""
    h = int.from_bytes(data[:4], "big")
    version, bitrate, rate, padding = (h >> 19) & 3, (h >> 12) & 15, (h >> 10) & 3, (h >> 9) & 1
    kbps = _MP3_KBPS[3 if version == 3 else 2][bitrate - 1]
    return (144_000 if version == 3 else 72_000) * kbps // _MP3_RATES[version][rate] + padding


def mp3_frames(samples: np.ndarray, rate: int) -> bytes:
    """``samples`` as constant-bitrate MP3 frames without the leading Info frame: pieces made
    this way concatenate into one stream that decodes whole."""
    import soundfile as sf

    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", rate, 1, format="MP3", bitrate_mode="CONSTANT") as f:
        f.write(np.clip(samples, -1.0, 1.0).astype(np.float32))
    data = buf.getvalue()
    first = _mp3_frame_length(data)
    return data[first:] if (b"Info" in data[:first] or b"Xing" in data[:first]) else data


def stream_encode(samples: np.ndarray, rate: int, fmt: str, first: bool) -> bytes:
    """One sentence's bytes in stream mode (``first``: the task's first audio)."""
    if fmt == "mp3":
        return mp3_frames(samples, rate)
    header = wav_streaming_header(rate) if fmt == "wav" and first else b""
    return header + _int16(samples)


def cut(data: bytes, seconds: float, fmt: str, header: int = 0) -> list[bytes]:
    """``data`` (one sentence's bytes, ``seconds`` long) in frames of about
    :data:`CHUNK_SECONDS`; PCM and WAV on sample boundaries, the first frame keeping the
    ``header`` bytes. Never empty: a sentence always has a frame."""
    n = max(1, math.ceil(seconds / CHUNK_SECONDS - 1e-9))
    body = len(data) - header
    ends = [header + round(body * k / n) for k in range(1, n + 1)]
    if fmt in ("pcm", "wav"):
        ends = [header + 2 * ((e - header) // 2) for e in ends[:-1]] + [len(data)]
    frames, start = [], 0
    for end in ends:
        if end > start:
            frames.append(data[start:end])
            start = end
    return frames or [data]


# --- events ------------------------------------------------------------------------------------


def event(task_id: str, name: str, payload: dict | None = None, **header) -> str:
    """One server event as JSON text."""
    head = {"task_id": task_id, "event": name, **header}
    head.setdefault("attributes", {})
    return json.dumps({"header": head, "payload": payload or {}}, ensure_ascii=False)


def sentence_event(task_id: str, index: int, kind: str, text: str | None = None, characters: int | None = None) -> str:
    """A ``result-generated`` event of one sentence (``sentence-begin``/``-synthesis``/``-end``)."""
    output: dict = {"sentence": {"index": index, "words": []}, "type": kind}
    if text is not None:
        output["original_text"] = text
    payload: dict = {"output": output}
    if characters is not None:
        payload["usage"] = {"characters": characters}
    return event(task_id, "result-generated", payload)


# --- the producer ------------------------------------------------------------------------------


class Dropped(Exception):
    """An injected fault dropped the connection half-way through the audio."""


@dataclass(frozen=True)
class Pace:
    """A task's timing: seconds from complete text to first audio, and seconds of work per
    second of audio."""

    first_audio: float = 0.0
    realtime_factor: float = 0.0

    @classmethod
    def draw(cls, first_audio: tuple[float, float], realtime_factor: tuple[float, float], rng: random.Random) -> Pace:
        """A pace within the given (low, high) ranges."""
        return cls(rng.uniform(*first_audio), rng.uniform(*realtime_factor))


@dataclass
class _Sentence:
    text: str
    billed: int  # billed characters of its raw text
    arrived: float  # monotonic time its text became complete
    frames: list[bytes] | None = None
    seconds: float = 0.0


class Sink(Protocol):
    """Where a producer's output goes (the session holds the socket and its send lock)."""

    async def text(self, message: str) -> None: ...

    async def audio(self, message: str, data: bytes) -> None: ...

    async def sleep_until(self, when: float) -> None: ...


class Producer:
    """The audio side of one synthesis task: sentences go in as their text completes
    (:meth:`push`, :meth:`end`), events and frames come out paced by :class:`Pace` (:meth:`run`)."""

    def __init__(
        self,
        task_id: str,
        settings: engine.VoiceSettings,
        params: dict,
        pace: Pace,
        sink: Sink,
        *,
        drop_midway: bool = False,
    ):
        self.task_id, self.settings, self.params, self.pace, self.sink = task_id, settings, params, pace, sink
        self.drop_midway = drop_midway
        self.characters = 0  # billed so far (usage.characters, cumulative)
        self.pushed = 0  # sentences received
        self._queue: asyncio.Queue[_Sentence | None] = asyncio.Queue()
        self._whole: collections.deque[_Sentence | None] = collections.deque()
        self._ended = asyncio.Event()
        self.busy_until = time.monotonic()  # when the audio in hand is all produced

    def push(self, sentences: list[Counted]) -> None:
        """Sentences whose text is complete (with their billed characters), to be spoken in order."""
        now = time.monotonic()
        for s, billed in sentences:
            self._queue.put_nowait(_Sentence(s, billed, now))
        self.pushed += len(sentences)

    @property
    def ended(self) -> bool:
        """Whether :meth:`end` was called (all the task's text is in)."""
        return self._ended.is_set()

    def end(self) -> None:
        """No more text: :meth:`run` returns after the last sentence."""
        self._ended.set()
        self._queue.put_nowait(None)

    async def run(self) -> None:
        """Speak every sentence until :meth:`end`; raises :class:`Dropped` for the injected fault."""
        index = 0
        while True:
            item = self._whole.popleft() if self._whole else await self._queue.get()
            if item is None:
                return
            start = await self._turn(item.arrived)
            if item.frames is None:
                await self._prepare(item, first=index == 0)
            await self._send(index, item, start)
            index += 1
            if self.drop_midway:
                raise Dropped

    async def _turn(self, arrived: float) -> float:
        """When this sentence's first audio is due: after the first-audio latency when the
        producer was idle as its text came, else as soon as the audio before it is produced."""
        start = arrived + self.pace.first_audio if arrived >= self.busy_until else self.busy_until
        self.busy_until = max(self.busy_until, start)
        await self.sink.sleep_until(start)
        return start

    async def _render(self, texts: list[str]) -> tuple[list, int]:
        loop = asyncio.get_running_loop()
        # positional arguments: engine.render_task is looked up now, so tests can replace it
        return await loop.run_in_executor(None, engine.render_task, texts, self.settings, self.params)

    async def _prepare(self, item: _Sentence, *, first: bool) -> None:
        fmt = self.params["format"]
        if first and fmt == "opus":
            await self._ended.wait()  # Ogg Opus goes out whole (see the module docstring)
        if first and self._ended.is_set():
            items = [item]
            while (more := self._queue.get_nowait()) is not None:
                items.append(more)
            parts, rate = await self._render([i.text for i in items])
            for i, frames, part in zip(items, engine.frame_audio(parts, rate, fmt), parts, strict=True):
                i.frames, i.seconds = frames, len(part) / rate
            self._whole.extend([*items[1:], None])
            return
        parts, rate = await self._render([item.text])
        item.seconds = len(parts[0]) / rate
        data = stream_encode(parts[0], rate, fmt, first)
        item.frames = cut(
            data, item.seconds, fmt, header=len(wav_streaming_header(rate)) if fmt == "wav" and first else 0
        )

    async def _send(self, index: int, item: _Sentence, start: float) -> None:
        frames = item.frames or []
        rtf, per_frame = self.pace.realtime_factor, item.seconds / max(1, len(frames))
        self.busy_until = start + rtf * item.seconds
        await self.sink.text(sentence_event(self.task_id, index, "sentence-begin", item.text))
        for k, frame in enumerate(frames):
            await self.sink.sleep_until(start + rtf * k * per_frame)  # each frame once its audio is made
            await self.sink.audio(sentence_event(self.task_id, index, "sentence-synthesis"), frame)
        await self.sink.sleep_until(self.busy_until)
        self.characters += item.billed
        await self.sink.text(sentence_event(self.task_id, index, "sentence-end", item.text, self.characters))
