"""The members of a bundle's zip, checked before anything is read: the tables a bundle carries,
audio store names, sizes (``catalog.BUNDLE_*``). Pure: nothing here opens the zip's contents.
"""

from __future__ import annotations

import zipfile

from cosyvoice_lab import catalog
from cosyvoice_lab.log.audio_store import FOLDER, is_name

# ratings.json arrived with bundle format 2; a format 1 bundle simply has none.
TABLE_NAMES = ("manifest.json", "takes.json", "annotations.json", "utterances.json", "ratings.json")


class BundleError(ValueError):
    """A bundle refused as a whole: too large, a member given twice or one a bundle does not carry."""


def check_members(infos: list[zipfile.ZipInfo]) -> list[str]:
    """The audio entries of a bundle's zip, checked before anything is read (a hostile name is
    never used; the sizes are the ones the zip declares, which reading never exceeds).

    Raises:
        BundleError: too many files or bytes, a table or an audio file over its size, a name given
            twice, or a member that is neither a table nor an audio store name.
    """
    if len(infos) > catalog.BUNDLE_MAX_MEMBERS:
        raise BundleError(f"holds {len(infos)} files, over the limit of {catalog.BUNDLE_MAX_MEMBERS}")
    total = sum(i.file_size for i in infos)
    if total > catalog.BUNDLE_MAX_BYTES:
        raise BundleError(f"unpacks to {total} bytes, over the limit of {catalog.BUNDLE_MAX_BYTES}")
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise BundleError(f"holds {sorted(n for n in names if names.count(n) > 1)[0]!r} more than once")
    entries = []
    for info in infos:
        name = info.filename
        if name in TABLE_NAMES:
            if info.file_size > catalog.BUNDLE_MAX_TABLE_BYTES:
                raise BundleError(
                    f"{name} is {info.file_size} bytes, over the limit of {catalog.BUNDLE_MAX_TABLE_BYTES}"
                )
        elif name != f"{FOLDER}/":
            if not is_name(name):
                raise BundleError(f"holds {name!r}, which is not an audio store name (audio/<sha256>.<ext>)")
            if info.file_size > catalog.BUNDLE_MAX_AUDIO_BYTES:
                raise BundleError(
                    f"{name} is {info.file_size} bytes, over the limit of {catalog.BUNDLE_MAX_AUDIO_BYTES} for one "
                    "audio file"
                )
            entries.append(name)
    return entries
