"""Audio: bytes + format + sample rate, that plays itself inline, saves and decodes.

``pcm`` means raw signed 16-bit little-endian mono, as the service sends it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosyvoice_lab import html
from cosyvoice_lab.catalog import SHARE_AUDIO_KBPS
from cosyvoice_lab.catalog import SYNTH_FORMATS as FORMATS  # every format the service sends (previews use a subset)
from cosyvoice_lab.files import atomic_write

if TYPE_CHECKING:  # numpy loads on first decode/encode, not with the client
    import numpy as np
_MIME = {"wav": "audio/wav", "mp3": "audio/mpeg", "opus": "audio/ogg"}
_SF_FORMAT = {"wav": ("WAV", "PCM_16"), "mp3": ("MP3", None), "opus": ("OGG", "OPUS")}
OPUS_SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)  # the rates an Opus encoder accepts
_OPUS_KBPS_RANGE = (6.0, 256.0)  # libsndfile maps compression_level 1 -> 0 onto these kbit/s (per channel)


@dataclass(frozen=True, eq=False)
class Audio:
    """A recording: encoded ``data`` in ``format`` at ``sample_rate`` Hz (mono).

    Displays as an HTML ``<audio>`` player in Jupyter; ``to_numpy()`` decodes to float32.
    """

    data: bytes = field(repr=False)
    format: str
    sample_rate: int

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"audio format must be one of {FORMATS}, got {self.format!r}")

    # --- identity ---------------------------------------------------------------------
    @property
    def sha256(self) -> str:
        """Hex sha256 of the encoded bytes: the audio store's content address."""
        return hashlib.sha256(self.data).hexdigest()

    def __eq__(self, other):
        if not isinstance(other, Audio):
            return NotImplemented
        return (self.data, self.format, self.sample_rate) == (other.data, other.format, other.sample_rate)

    def __hash__(self):
        return hash((self.sha256, self.format, self.sample_rate))

    def __repr__(self):
        return f"Audio({self.format}, {self.sample_rate} Hz, {self.duration:.2f} s, {len(self.data)} bytes)"

    # --- decoding ---------------------------------------------------------------------
    def to_numpy(self) -> np.ndarray:
        """Decoded samples as float32 in [-1, 1], mono."""
        import numpy as np

        if self.format == "pcm":
            return np.frombuffer(self.data, dtype="<i2").astype(np.float32) / 32768.0
        import soundfile as sf

        samples, _ = sf.read(io.BytesIO(self.data), dtype="float32", always_2d=True)
        return samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]

    @property
    def duration(self) -> float:
        """Length in seconds."""
        if self.format == "pcm":
            return len(self.data) / 2 / self.sample_rate
        if self.format == "wav":
            import soundfile as sf

            info = sf.info(io.BytesIO(self.data))
            return info.frames / info.samplerate
        return len(self.to_numpy()) / self.sample_rate

    # --- encoding ---------------------------------------------------------------------
    @classmethod
    def from_numpy(cls, samples: np.ndarray, sample_rate: int, format: str = "wav") -> Audio:
        """Encode float samples in [-1, 1] (or int16) as ``format``."""
        import numpy as np

        samples = np.asarray(samples)
        if samples.dtype != np.int16:
            samples = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
        if format == "pcm":
            return cls(samples.astype("<i2").tobytes(), "pcm", sample_rate)
        import soundfile as sf

        buf = io.BytesIO()
        container, subtype = _SF_FORMAT[format]
        sf.write(buf, samples, sample_rate, format=container, subtype=subtype)
        return cls(buf.getvalue(), format, sample_rate)

    def to_wav(self) -> Audio:
        """The same recording as WAV (what browsers play for raw PCM)."""
        if self.format == "wav":
            return self
        return Audio.from_numpy(self.to_numpy(), self.sample_rate, "wav")

    def compressed(self, kbps: float = SHARE_AUDIO_KBPS) -> Audio:
        """The recording as Opus (in Ogg), mono, at about ``kbps`` kbit/s: small enough to share
        (a tenth of a 24 kHz WAV at 24 kbit/s) and clear for speech. Itself when it is already
        Opus, or when its sample rate is not one Opus takes (``OPUS_SAMPLE_RATES``).

        Raises:
            ValueError: ``kbps`` outside the encoder's range (6-256).
        """
        low, high = _OPUS_KBPS_RANGE
        if not low <= kbps <= high:
            raise ValueError(f"kbps must be within {low:g}-{high:g}, got {kbps!r}")
        if self.format == "opus" or self.sample_rate not in OPUS_SAMPLE_RATES:
            return self
        import soundfile as sf

        buf = io.BytesIO()
        level = (high - kbps) / (high - low)
        sf.write(buf, self.to_numpy(), self.sample_rate, format="OGG", subtype="OPUS", compression_level=level)
        return Audio(buf.getvalue(), "opus", self.sample_rate)

    @classmethod
    def from_base64(cls, text: str, format: str, sample_rate: int) -> Audio:
        return cls(base64.b64decode(text), format, sample_rate)

    def to_base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    # --- files --------------------------------------------------------------------------
    @property
    def extension(self) -> str:
        return "ogg" if self.format == "opus" else self.format

    def save(self, path: str | os.PathLike) -> Path:
        """Write the encoded bytes atomically (temp file, fsync, rename); returns the path.

        A directory path gets ``<sha256>.<ext>`` inside it.
        """
        path = Path(path)
        if path.is_dir():
            path = path / f"{self.sha256}.{self.extension}"
        return atomic_write(path, self.data)

    @classmethod
    def load(cls, path: str | os.PathLike, sample_rate: int | None = None) -> Audio:
        """Read a file; format from the extension (``.pcm`` needs ``sample_rate``)."""
        path = Path(path)
        ext = path.suffix.lstrip(".").lower()
        fmt = "opus" if ext == "ogg" else ext
        data = path.read_bytes()
        if fmt == "pcm":
            if not sample_rate:
                raise ValueError(f"{path}: raw PCM needs sample_rate")
            return cls(data, "pcm", sample_rate)
        if sample_rate is None:
            import soundfile as sf

            sample_rate = sf.info(io.BytesIO(data)).samplerate
        return cls(data, fmt, sample_rate)

    # --- notebook display -------------------------------------------------------------------
    @property
    def mime(self) -> str:
        """The media type a browser plays these bytes as (raw PCM has none: ``to_wav()`` first)."""
        return _MIME[self.format]

    def data_uri(self) -> str:
        """The recording as a ``data:`` URI a browser plays (raw PCM is wrapped as WAV)."""
        playable = self.to_wav() if self.format == "pcm" else self
        return f"data:{playable.mime};base64,{playable.to_base64()}"

    def html(self, *, label: str = "") -> str:
        """A self-contained ``<audio>`` element (data URI, ``preload="metadata"``), usable in any page.

        ``label`` becomes its tooltip (escaped); the element is ``cosyvoice_lab.html.player``'s.
        """
        return html.player(self, label=label)

    def _repr_html_(self) -> str:
        return self.html()


class Recent:
    """The results of costly work on sounds (an analysis, an encoding), kept for the ``size`` sounds
    used last in this process, by a key naming the content (a hash of the samples or the bytes, and
    whatever else the work depends on): work done once per sound per process. Thread-safe. Values
    are shared, not copied: keep them immutable, or copy what you change."""

    def __init__(self, size: int):
        self.size = size
        self._kept: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        """The value kept for ``key`` (now the most recent), or None."""
        with self._lock:
            if key not in self._kept:
                return None
            self._kept.move_to_end(key)
            return self._kept[key]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._kept[key] = value
            self._kept.move_to_end(key)
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The value kept for ``key``, else ``make()``'s, kept (two threads may both make it)."""
        found = self.get(key)
        if found is None:
            found = make()
            self.put(key, found)
        return found
