"""Test helper: a copy of a bundle (zip) with one JSON member changed, as a hostile teammate would send."""

from __future__ import annotations

import json
import zipfile


def rewrite(src, dst, member, change):
    """Copy the zip ``src`` to ``dst`` with JSON ``member`` replaced by ``change(its parsed content)``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == member:
                data = json.dumps(change(json.loads(data))).encode()
            zout.writestr(info, data)
    return dst
