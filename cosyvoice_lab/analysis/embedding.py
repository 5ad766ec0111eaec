"""Speaker embeddings from a pretrained speaker-verification network, run with numpy.

The network is Resemblyzer's voice encoder (Resemble AI, Apache-2.0): the GE2E model of Wan et
al. (2018), a 3-layer LSTM over 40-band mel spectrograms, trained on LibriSpeech, VoxCeleb 1
and 2 (about 8,000 speakers) to put recordings of one speaker close together and different
speakers apart. Its weights ship inside the ``resemblyzer`` wheel on PyPI (``pretrained.pt``).
That package runs them with torch; we do not: ``voice_encoder.npz`` beside this module holds
the same weights (5.3 MB) converted once with ``scripts/convert_voice_encoder.py`` (licence and provenance in
``voice_encoder.LICENSE.txt``), and the LSTM, the mel
front end (librosa's Slaney mel filters, rebuilt in numpy) and the averaging over 1.6 s
partial utterances are reimplemented here. Nothing is downloaded at run time.

An embedding is a unit vector of 256 non-negative values; two recordings' similarity is the
cosine of their embeddings (1 = the same voice). Differences from the reference pipeline: the
silence trim uses ``measures.speech_frames`` instead of webrtcvad; the rest is the same.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

RATE = 16000
N_MELS, N_FFT, HOP = 40, 400, 160  # 25 ms windows every 10 ms
PARTIAL_FRAMES = 160  # 1.6 s per partial utterance
PARTIALS_PER_S, MIN_COVERAGE = 1.3, 0.75
TARGET_DBFS = -30.0  # quiet recordings are raised to this level (never lowered), as in training
SIZE = 256
WEIGHTS = Path(__file__).with_name("voice_encoder.npz")


def _slaney_mel(f):
    f = np.asarray(f, dtype=np.float64)
    linear = f / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log_part, linear)


def _slaney_hz(m):
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * 200.0 / 3)


@lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=400, n_mels=40): Slaney scale and area norm."""
    fft_freqs = np.fft.rfftfreq(N_FFT, 1 / RATE)
    edges = _slaney_hz(np.linspace(_slaney_mel(0.0), _slaney_mel(RATE / 2), N_MELS + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return (weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]).astype(np.float32)


def mel_spectrogram(y: np.ndarray) -> np.ndarray:
    """Power mel spectrogram (frames x 40), librosa's centred frames with zero padding."""
    padded = np.pad(y, N_FFT // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    window = np.hanning(N_FFT + 1)[:-1]  # periodic Hann, as scipy's get_window("hann")
    power = np.abs(np.fft.rfft(frames * window, N_FFT)) ** 2
    return (power @ mel_filters().T).astype(np.float32)


@lru_cache(maxsize=1)
def _weights() -> dict[str, np.ndarray]:
    with np.load(WEIGHTS) as data:
        return {k: data[k].astype(np.float32) for k in data.files}


# sigmoid(v) = (1 + tanh(v / 2)) / 2: the input, forget and output gates' rows (torch's order
# i, f, g, o) are halved once, so that one tanh per step serves all four gates. Halving is exact in
# floating point (a power of two), so the result is the same, bit for bit, as a sigmoid per gate.
_GATE_SCALE = np.repeat(np.array([0.5, 0.5, 1.0, 0.5], np.float32), SIZE)


# A preview of 2-5 s has 2-3 partials. BLAS multiplies so few rows by the recurrent weights
# (256 x 1024) faster one vector at a time (no packing of the weights per step): 67 ms instead of
# 104 for two partials, 91 instead of 139 for three, on one core; from four rows on, the matrix
# product is as fast or faster. The sums run in another order: embeddings differ by ~1e-6.
ROW_BY_ROW_BELOW = 4


def _lstm(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """The last layer's final hidden state of the 3-layer LSTM for a batch (B x T x 40)."""
    batch, steps, _ = x.shape
    for layer in range(3):
        w_ih, w_hh = w[f"lstm.weight_ih_l{layer}"], w[f"lstm.weight_hh_l{layer}"]
        bias = w[f"lstm.bias_ih_l{layer}"] + w[f"lstm.bias_hh_l{layer}"]
        inputs = (x @ w_ih.T + bias) * _GATE_SCALE  # every step's input projection at once
        h = np.zeros((batch, SIZE), np.float32)
        c = np.zeros((batch, SIZE), np.float32)
        outputs = np.empty((batch, steps, SIZE), np.float32)
        w_hh_t = np.ascontiguousarray(w_hh.T * _GATE_SCALE)
        gates = np.empty((batch, 4 * SIZE), np.float32)
        i, f, g, o = (gates[:, k * SIZE : (k + 1) * SIZE] for k in range(4))  # views into gates
        by_row = batch < ROW_BY_ROW_BELOW
        for t in range(steps):
            if by_row:
                for b in range(batch):
                    np.matmul(h[b], w_hh_t, out=gates[b])
            else:
                np.matmul(h, w_hh_t, out=gates)
            gates += inputs[:, t]
            np.tanh(gates, out=gates)  # i, f, o now hold 2 * sigmoid - 1 of their gate; g its tanh
            c = 0.5 * (1 + f) * c + 0.5 * (1 + i) * g
            h = 0.5 * (1 + o) * np.tanh(c)
            outputs[:, t] = h
        x = outputs
    return h


@lru_cache(maxsize=1)
def _blas():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread():
    """A context in which BLAS runs on one thread: the network's 480 small sequential products
    only contend on more (2-3x slower on a busy machine). Clips embedded in several threads at
    once run inside one such context, entered by the thread that starts them."""
    return _blas().limit(limits=1, user_api="blas")


def _partials(n_frames: int) -> list[slice]:
    step = round(RATE / PARTIALS_PER_S / HOP)
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    slices = [slice(s, s + PARTIAL_FRAMES) for s in starts]
    coverage = (n_frames - slices[-1].start) / PARTIAL_FRAMES
    return slices[:-1] if coverage < MIN_COVERAGE and len(slices) > 1 else slices


def embed(y: np.ndarray) -> np.ndarray:
    """The speaker embedding of ``y``: float samples at 16 kHz, silences already trimmed.

    Returns:
        A unit vector of :data:`SIZE` float32 values (all NaN for a silent recording).
    """
    y = np.asarray(y, dtype=np.float64)
    rms = float(np.sqrt(np.mean(y**2))) if len(y) else 0.0
    if rms == 0:
        return np.full(SIZE, np.nan, np.float32)
    gain_db = TARGET_DBFS - 20 * np.log10(rms)
    if gain_db > 0:
        y = y * 10 ** (gain_db / 20)
    n_frames = len(y) // HOP + 1
    slices = _partials(n_frames)
    y = np.pad(y, (0, max(0, slices[-1].stop * HOP - len(y))))
    mel = mel_spectrogram(y)
    batch = np.stack([mel[s] for s in slices])
    w = _weights()
    with one_blas_thread():
        hidden = _lstm(batch, w)
    raw = np.maximum(hidden @ w["linear.weight"].T + w["linear.bias"], 0)
    raw /= np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
    mean = raw.mean(axis=0)
    return (mean / np.linalg.norm(mean)).astype(np.float32)


def similarity(a, b) -> float:
    """Cosine similarity of two embeddings (NaN if either is missing)."""
    if a is None or b is None:
        return float("nan")
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return d if np.isfinite(d) else float("nan")
