"""Predicted quality: DNSMOS P.835 (Reddy et al., ICASSP 2022), a network trained on listener
ratings that predicts, from the recording alone, the mean opinion score of speech quality
(``dnsmos_sig``), background noise (``dnsmos_bak``) and overall quality (``dnsmos_ovrl``),
each on the 1-5 scale of ITU-T P.835.

The ONNX model is the one that ships inside the ``speechmos`` wheel (MIT licence, Microsoft's
DNS Challenge model, ~1.2 MB), run here with onnxruntime. Nothing is downloaded at run time.
We load the model file ourselves rather than call ``speechmos.dnsmos``: that module imports
librosa (and its numba stack) at import time only for a companion P.808 model we do not use;
the P.835 model reads the raw 16 kHz waveform, so it needs no feature front end.

As in the reference implementation, a clip is looped to the model's 9.01 s input, scored on
9.01 s windows one second apart, the raw scores mapped through the published calibration
polynomials, and the windows averaged.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

RATE = 16000
INPUT_S = 9.01
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


class QualityUnavailable(RuntimeError):
    """The quality model cannot run here (onnxruntime or speechmos not installed)."""


@lru_cache(maxsize=1)
def _session():
    try:
        import onnxruntime
    except ImportError as exc:
        raise QualityUnavailable("onnxruntime is not installed") from exc
    from importlib import resources

    try:
        path = resources.files(MODEL[0]) / MODEL[1]
    except ModuleNotFoundError as exc:
        raise QualityUnavailable("the speechmos wheel (which holds the DNSMOS model) is not installed") from exc
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # a take is measured beside others: one core each
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(path.read_bytes(), options, providers=["CPUExecutionProvider"])


def dnsmos(y: np.ndarray) -> dict[str, float]:
    """DNSMOS P.835 scores of ``y``, float samples at 16 kHz in [-1, 1].

    Returns:
        ``{"dnsmos_sig": ..., "dnsmos_bak": ..., "dnsmos_ovrl": ...}``, each about 1-5.

    Raises:
        QualityUnavailable: the model cannot run here.
        ValueError: ``y`` is silent, or shorter than :data:`MIN_SECONDS`.
    """
    y = np.clip(np.asarray(y, dtype=np.float32), -1, 1)
    if len(y) < MIN_SECONDS * RATE:
        raise ValueError(f"{len(y) / RATE:.2f} s is too short to score (the model needs at least {MIN_SECONDS:g} s)")
    if not np.any(y):
        raise ValueError("silent recording: nothing to score")
    need = int(INPUT_S * RATE)
    if len(y) < need:
        y = np.tile(y, -(-need // len(y)))
    hops = min(MAX_WINDOWS, int(len(y) / RATE - INPUT_S) + 1)
    windows = np.stack([y[i * RATE : i * RATE + need] for i in range(hops)])
    session = _session()
    raw = session.run(None, {session.get_inputs()[0].name: windows})[0]
    return {
        name: float(np.mean(np.polyval(coefficients, raw[:, k])))
        for k, (name, coefficients) in enumerate(_CALIBRATION.items())
    }
