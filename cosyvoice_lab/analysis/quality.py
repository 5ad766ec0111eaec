"""Predicted quality: DNSMOS P.835 (Reddy et al., ICASSP 2022), a network trained on listener
ratings that predicts, from the recording alone, the mean opinion score of speech quality
(``dnsmos_sig``), background noise (``dnsmos_bak``) and overall quality (``dnsmos_ovrl``),
each on the 1-5 scale of ITU-T P.835.

The ONNX model is the one that ships inside the ``speechmos`` wheel (MIT licence, Microsoft's
DNS Challenge model, ~1.2 MB), run here with onnxruntime. Nothing is downloaded at run time.
We load the model file ourselves rather than call ``speechmos.dnsmos``: that module imports
librosa (and its numba stack) at import time only for a companion P.808 model we do not use;
the P.835 model reads the raw 16 kHz waveform, so it needs no feature front end.

How a clip is scored:

* The reference implementation (:func:`dnsmos_reference`) loops a clip to the model's 9.01 s
  input, scores 9.01 s windows one second apart (at most :data:`MAX_WINDOWS`), maps the raw
  scores through the published calibration polynomials and averages the windows. A 5 s preview
  costs a whole 9.01 s window (~0.5-1 s of CPU), mostly on a repeat of itself.
* :func:`dnsmos` (what ``measure`` uses) scores a clip shorter than 9.01 s on its own length:
  the network is convolutional up to a global max over time, and only two constants of the
  published graph (frames of 160 samples, 900 of them) fix the length, so the graph is loaded
  with those constants freed (:func:`free_length`, an edit of the model's bytes at load time)
  and the clip is zero-padded once to whole frames. Clips of 9.01 s or more are scored exactly
  as the reference does. The cost is proportional to the clip: about half for a 5 s preview.

Tolerance (``tests/test_analysis.py`` checks it on simulator previews): on short clips the two
agree within :data:`TOLERANCE` per clip (SIG, BAK, OVRL) and on average within
:data:`MEAN_TOLERANCE`. That is the scale of the reference's own sensitivity to framing: delaying
the same clip by 5 ms moves the reference by up to 0.17 / 0.39 / 0.26 on the same previews,
because a looped clip is framed at a different phase on each repeat. Scores stored before
``measures`` version 3 came from the reference; ``Lab.remeasure`` brings them up to date.

One onnxruntime session serves the whole process (:func:`session`; onnxruntime's ``run`` is
thread-safe), with one intra-op thread and no memory arena: each concurrent run holds only its
own activations (~50 MB for a 5 s clip) and gives them back when done, so memory follows the
number of runs at once (the measuring stage bounds it), not the history of the process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

RATE = 16000
INPUT_S = 9.01
FRAME = 160  # the model's frame hop in samples: a clip is padded to whole frames
MODEL = ("speechmos", "dnsmos_models/sig_bak_ovr.onnx")
# The reference implementation's calibration of the raw outputs (non-personalised model).
_CALIBRATION = {
    "dnsmos_sig": (-0.08397278, 1.22083953, 0.0052439),
    "dnsmos_bak": (-0.13166888, 1.60915514, -0.39604546),
    "dnsmos_ovrl": (-0.06766283, 1.11546468, 0.04602535),
}
COLUMNS = tuple(_CALIBRATION)
MIN_SECONDS = 1.0  # shorter clips would be looped many times over: scored, but meaningless
MAX_WINDOWS = 3  # a long recording is scored on its first three windows: the cost stays bounded
# |own length - reference| per clip, and of the mean over a set of clips (SIG, BAK, OVRL); see above
TOLERANCE = {"dnsmos_sig": 0.3, "dnsmos_bak": 0.6, "dnsmos_ovrl": 0.45}
# 0.15 on SIG, not 0.1: the simulator's espeak renders the same text and voice a little differently
# after other renderings in the process, and over such draws the six test previews' mean moved to 0.117
MEAN_TOLERANCE = {"dnsmos_sig": 0.15, "dnsmos_bak": 0.2, "dnsmos_ovrl": 0.15}


@dataclass(frozen=True)
class QualityOptions:
    """How the quality model runs: one session for the process, built with these.

    Attributes:
        intra_op_threads: threads one run may use; 1, because the measuring stage runs as many
            measures at once as there are cores.
        memory_arena: onnxruntime's CPU memory arena keeps the largest activations it ever
            allocated, per concurrent run; off, a run's memory is returned when it ends.
    """

    intra_op_threads: int = 1
    memory_arena: bool = False


OPTIONS = QualityOptions()


class QualityUnavailable(RuntimeError):
    """The quality model cannot run here (onnxruntime or speechmos not installed)."""


# --- the model's bytes, with its length freed -------------------------------------------------
# A minimal protobuf reader/writer for the few fields edited (onnx.proto field numbers): enough
# not to depend on the onnx package (40 MB) for three constants.
_MODEL_GRAPH, _GRAPH_INITIALIZER, _GRAPH_INPUT, _TENSOR_NAME, _TENSOR_INT64 = 7, 5, 11, 8, 7
_VALUE_TYPE, _TYPE_TENSOR, _TENSOR_SHAPE, _SHAPE_DIM, _DIM_PARAM = 2, 1, 2, 1, 2
_INT64_MAX = 2**63 - 1
# [-1, 900, 160] -> [0, -1, 160]: keep the batch, as many frames as the clip has; the two
# frame halves are cropped as x[:, :-160] and x[:, 160:] instead of ending at sample 144000.
_FREED = {
    "shape_tensor": [0, -1, FRAME],
    "shape_tensor1": [0, -1, FRAME],
    "input_1:01_cropping_end": [_INT64_MAX, -FRAME],
}


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 negatives as ten bytes, as protobuf writes them
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """A message's fields as (number, wire type, value): int for varints, bytes otherwise."""
    out: list[tuple[int, int, int | bytes]] = []
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, i = _read_varint(buf, i)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, i = buf[i : i + size], i + size
        elif wire == 2:
            size, i = _read_varint(buf, i)
            value, i = buf[i : i + size], i + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, wire, value))
    return out


def _encode(fields: list[tuple[int, int, int | bytes]]) -> bytes:
    out = bytearray()
    for number, wire, value in fields:
        out += _varint(number << 3 | wire)
        if isinstance(value, int):
            out += _varint(value)
        else:
            out += (_varint(len(value)) if wire == 2 else b"") + value
    return bytes(out)


def _edit(buf: bytes, number: int, fn) -> bytes:
    """``buf`` with each length-delimited field ``number`` replaced by ``fn(its bytes)``."""
    return _encode([(n, w, fn(v) if n == number and w == 2 else v) for n, w, v in _fields(buf)])


def _free_constant(tensor: bytes) -> bytes:
    fields = _fields(tensor)
    name = next((v for n, _, v in fields if n == _TENSOR_NAME), b"")
    values = _FREED.get(name.decode() if isinstance(name, bytes) else "")
    if values is None:
        return tensor
    packed = b"".join(_varint(v) for v in values)
    return _encode([f for f in fields if f[0] != _TENSOR_INT64] + [(_TENSOR_INT64, 2, packed)])


def _free_samples_dim(shape: bytes) -> bytes:
    dims = _fields(shape)
    dims[1] = (_SHAPE_DIM, 2, _encode([(_DIM_PARAM, 2, b"samples")]))  # was dim_value 144160
    return _encode(dims)


def _free_graph(graph: bytes) -> bytes:
    out = []
    for n, w, v in _fields(graph):
        if n == _GRAPH_INITIALIZER and isinstance(v, bytes):
            v = _free_constant(v)
        elif n == _GRAPH_INPUT and isinstance(v, bytes):
            v = _edit(
                v, _VALUE_TYPE, lambda t: _edit(t, _TYPE_TENSOR, lambda s: _edit(s, _TENSOR_SHAPE, _free_samples_dim))
            )
        out.append((n, w, v))
    return _encode(out)


def free_length(model: bytes) -> bytes:
    """The DNSMOS P.835 model's bytes with its input length freed (any whole number of
    :data:`FRAME`-sample frames, at least 9 of them): the weights and every operation as published."""
    return _edit(model, _MODEL_GRAPH, _free_graph)


# --- the one session ------------------------------------------------------------------------
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _model_bytes() -> bytes:
    from importlib import resources

    try:
        return (resources.files(MODEL[0]) / MODEL[1]).read_bytes()
    except ModuleNotFoundError as exc:
        raise QualityUnavailable("the speechmos wheel (which holds the DNSMOS model) is not installed") from exc


@lru_cache(maxsize=2)
def _build(free: bool):
    try:
        import onnxruntime
    except ImportError as exc:
        raise QualityUnavailable("onnxruntime is not installed") from exc
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = OPTIONS.intra_op_threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = OPTIONS.memory_arena
    options.log_severity_level = 3
    model = free_length(_model_bytes()) if free else _model_bytes()
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def session(*, free: bool = True):
    """The process's one onnxruntime session of the model (built on first use, shared by every
    thread): the length-free graph, or with ``free=False`` the published one (the reference)."""
    with _lock:  # two threads asking at once must not build two
        return _build(free)


def _scores(raw: np.ndarray) -> dict[str, float]:
    return {
        name: float(np.mean(np.polyval(coefficients, raw[:, k])))
        for k, (name, coefficients) in enumerate(_CALIBRATION.items())
    }


def _checked(y: np.ndarray) -> np.ndarray:
    y = np.clip(np.asarray(y, dtype=np.float32), -1, 1)
    if len(y) < MIN_SECONDS * RATE:
        raise ValueError(f"{len(y) / RATE:.2f} s is too short to score (the model needs at least {MIN_SECONDS:g} s)")
    if not np.any(y):
        raise ValueError("silent recording: nothing to score")
    return y


def dnsmos_reference(y: np.ndarray) -> dict[str, float]:
    """DNSMOS P.835 as the reference implementation scores it: looped to 9.01 s windows.
    Arguments, returns and raises as :func:`dnsmos`."""
    y = _checked(y)
    need = int(INPUT_S * RATE)
    if len(y) < need:
        y = np.tile(y, -(-need // len(y)))
    hops = min(MAX_WINDOWS, int(len(y) / RATE - INPUT_S) + 1)
    windows = np.stack([y[i * RATE : i * RATE + need] for i in range(hops)])
    model = session(free=False)
    return _scores(model.run(None, {model.get_inputs()[0].name: windows})[0])


def dnsmos(y: np.ndarray) -> dict[str, float]:
    """DNSMOS P.835 scores of ``y``, float samples at 16 kHz in [-1, 1]: a clip shorter than
    9.01 s on its own length (within :data:`TOLERANCE` of :func:`dnsmos_reference`), a longer
    one exactly as the reference.

    Returns:
        ``{"dnsmos_sig": ..., "dnsmos_bak": ..., "dnsmos_ovrl": ...}``, each about 1-5.

    Raises:
        QualityUnavailable: the model cannot run here.
        ValueError: ``y`` is silent, or shorter than :data:`MIN_SECONDS`.
    """
    y = _checked(y)
    if len(y) >= INPUT_S * RATE:
        return dnsmos_reference(y)
    frames = -(-len(y) // FRAME) + 1  # whole frames, plus the half-frame the last one overlaps
    padded = np.zeros((1, frames * FRAME), np.float32)
    padded[0, : len(y)] = y
    model = session()
    return _scores(model.run(None, {model.get_inputs()[0].name: padded})[0])
