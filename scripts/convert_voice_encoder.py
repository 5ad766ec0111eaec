"""Convert Resemblyzer's published voice-encoder weights to ``cosyvoice_lab/analysis/voice_encoder.npz``.

Run once, by a maintainer, when the weights change (never at run time; torch is not needed)::

    pip download resemblyzer --no-deps && unzip resemblyzer-*.whl
    python scripts/convert_voice_encoder.py resemblyzer/pretrained.pt

Licence and provenance: ``cosyvoice_lab/analysis/voice_encoder.LICENSE.txt``.
"""

from __future__ import annotations

import collections
import pickle
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS = Path(__file__).resolve().parents[1] / "cosyvoice_lab" / "analysis" / "voice_encoder.npz"


class _TorchLegacy(pickle.Unpickler):
    """Reads torch's legacy checkpoint format without torch: tensors become numpy arrays."""

    def __init__(self, f, storages: dict):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if module == "torch._utils" and name.startswith("_rebuild_tensor"):
            return lambda storage, offset, size, stride, *_: (storage, offset, tuple(size), tuple(stride))
        if module == "torch" and name.endswith("Storage"):
            return name
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unexpected class {module}.{name} in the checkpoint")

    def persistent_load(self, pid):
        _, storage_type, key, _, _, _ = pid
        self.storages[key] = storage_type
        return key


def convert(checkpoint: str | Path, out: str | Path = WEIGHTS) -> None:
    """Write the model weights of resemblyzer's ``pretrained.pt`` as ``.npz`` (float32)."""
    dtypes = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "LongStorage": np.int64}
    storages: dict = {}
    with open(checkpoint, "rb") as f:
        for _ in range(3):  # magic number, protocol version, system info
            pickle.load(f)  # the published checkpoint, read on purpose
        state = _TorchLegacy(f, storages).load()["model_state"]
        data = {}
        for key in pickle.load(f):
            (numel,) = struct.unpack("<q", f.read(8))
            dtype = np.dtype(dtypes[storages[key]])
            data[key] = np.frombuffer(f.read(numel * dtype.itemsize), dtype)
    arrays = {}
    for name, (key, offset, size, stride) in state.items():
        itemsize = data[key].itemsize
        arrays[name] = np.lib.stride_tricks.as_strided(data[key][offset:], size, [s * itemsize for s in stride]).copy()
    kept: dict[str, Any] = {k: v for k, v in arrays.items() if k.startswith(("lstm.", "linear."))}
    np.savez_compressed(out, **kept)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    convert(*sys.argv[1:])
