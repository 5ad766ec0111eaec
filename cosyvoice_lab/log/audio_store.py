"""The log's audio store: the only code that names, writes, opens and lists the log's audio files.

Audio lives beside the database, content-addressed::

    folder/audio/<sha256>.<ext>        ext: wav, mp3, pcm, or ogg (Ogg Opus)

A file's *name* is that path relative to the log folder (``audio/<sha256>.<ext>``), as the
``audio_file`` columns store it and bundles carry it. A name is valid only when it is exactly
``audio/`` + 64 lowercase hex digits + ``.`` + a known extension: absolute paths, ``..``, other
folders and anything else are refused. That rule is the defence against a hostile bundle whose
rows name ``/etc/passwd``: nothing outside ``folder/audio/`` can be named, so nothing outside it
is ever read or written through the store.

Files appear only by atomic rename (temp file, fsync, rename: ``files.atomic_write``), so a file
with the right name and size holds the right bytes.

A log on PostgreSQL keeps its audio in the same database (``TableAudioStore``: the ``audio``
table, keyed by sha256, the bytes in BYTEA), so every teammate's machine plays every preview.
It has the same interface and the same names; a name's "path" is the name itself.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from cosyvoice_lab import files
from cosyvoice_lab.audio import Audio
from cosyvoice_lab.catalog import SYNTH_FORMATS
from cosyvoice_lab.errors import LogError
from cosyvoice_lab.log.database import Prepared
from cosyvoice_lab.log.schema import audio as audio_table

if TYPE_CHECKING:
    from cosyvoice_lab.take import Take

FOLDER = "audio"
# File extension of each audio format (what Audio.extension says: Ogg Opus files end in .ogg).
EXTENSIONS: dict[str, str] = {fmt: "ogg" if fmt == "opus" else fmt for fmt in SYNTH_FORMATS}
_NAME = re.compile(rf"{FOLDER}/(?P<sha>[0-9a-f]{{64}})\.(?:{'|'.join(sorted(set(EXTENSIONS.values())))})")


def is_name(name: object) -> bool:
    """Whether ``name`` is a valid store name: exactly ``audio/<64 lowercase hex>.<known ext>``."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def check_name(name: object) -> str:
    """``name`` if it is a valid store name.

    Raises:
        ValueError: anything else (an absolute path, ``..``, another folder, an unknown extension).
    """
    if not isinstance(name, str) or not is_name(name):
        raise ValueError(f"{name!r} is not an audio store name (audio/<sha256>.<ext>)")
    return name


def name_for(sha256: str, format: str) -> str:
    """The store name of audio with this content hash and format.

    Raises:
        ValueError: not a sha256 hex digest, or an unknown format.
    """
    return check_name(f"{FOLDER}/{sha256}.{EXTENSIONS.get(format, format)}")


def content_matches(name: str, data: bytes) -> bool:
    """Whether ``name`` is a valid store name and ``data`` hashes to the sha256 it carries."""
    found = _NAME.fullmatch(name) if isinstance(name, str) else None
    return found is not None and hashlib.sha256(data).hexdigest() == found["sha"]


class AudioStore:
    """The audio files of the log in ``folder`` (the folder ``folder/audio`` is created).

    Args:
        folder: the log folder (names are relative to it).

    Raises:
        LogError: ``folder/audio`` cannot be created.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.root = Path(folder)
        self.directory = self.root / FOLDER
        self._prefix = f"{self.root}{os.sep}"  # names are joined by text: frames join 100k at once
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LogError(self.directory, f"cannot create the log's audio folder ({exc.strerror or exc})") from exc

    def __repr__(self) -> str:
        return f"AudioStore({str(self.directory)!r})"

    # --- names and paths ---------------------------------------------------------------------------
    def name_of(self, audio: Audio) -> str:
        """The name ``audio`` has (or would have) in the store."""
        return name_for(audio.sha256, audio.format)

    def path(self, name: str) -> Path:
        """The file a store name stands for.

        Raises:
            LogError: ``name`` is not a valid store name (naming the store's folder).
        """
        return Path(self._checked(name))

    def exists(self, name: str) -> bool:
        """Whether the file named ``name`` is in the store (False for an invalid name)."""
        return is_name(name) and os.path.isfile(self._prefix + name)

    def names(self) -> list[str]:
        """The names of every audio file in the store, sorted (temp files and strays ignored)."""
        return sorted(n for n in (f"{FOLDER}/{p.name}" for p in self.directory.iterdir()) if self.exists(n))

    def name_for_path(self, path: str | os.PathLike) -> str:
        """The store name of ``path``: a valid name itself, or a file directly in this store's folder.

        Raises:
            ValueError: ``path`` lies anywhere else, or its file name is not a content address.
        """
        text = os.fspath(path)
        if is_name(text):
            return text
        candidate = f"{FOLDER}/{PurePosixPath(Path(text).name)}"
        if Path(text).parent != self.directory or not is_name(candidate):
            raise ValueError(f"{text!r} is not a file of the audio store {str(self.directory)!r}")
        return candidate

    def paths_for(self, sha256s: Iterable[str | None], formats: Iterable[Any]) -> list[str | None]:
        """The file of each (content hash, format) pair as text, None where the hash is None.

        For DataFrames: built from the hashes without reading the disk or validating each one
        (display paths; the store opens only validated names).
        """
        prefix = f"{self.directory}{os.sep}"
        return [
            None if sha is None else f"{prefix}{sha}.{EXTENSIONS.get(fmt, fmt)}"
            for sha, fmt in zip(sha256s, formats, strict=True)
        ]

    def paths_of(self, names: Iterable[str | None]) -> list[str | None]:
        """The file each stored name stands for as text (None stays None; for DataFrames)."""
        return [self._prefix + name if name else None for name in names]

    # --- writing -------------------------------------------------------------------------------------
    def put(self, audio: Audio) -> str:
        """Write ``audio`` to the store unless it is already there; returns its name.

        Raises:
            TypeError: not an ``Audio``. LogError: the file cannot be written.
        """
        if not isinstance(audio, Audio):
            raise TypeError(f"audio must be an Audio, got {type(audio).__name__}")
        name = self.name_of(audio)
        self._write(name, audio.data)
        return name

    def put_bytes(self, name: str, data: bytes) -> bool:
        """Write encoded audio under ``name`` (as a bundle carries it) unless already there.

        Returns:
            True if a file was written, False if the store already held it.

        Raises:
            ValueError: ``name`` is not a valid name, or ``data`` does not hash to it.
            LogError: the file cannot be written.
        """
        if not content_matches(check_name(name), data):
            raise ValueError(f"{name} is damaged (its sha256 does not match its name)")
        return self._write(name, data)

    def _write(self, name: str, data: bytes) -> bool:
        path = self.path(name)
        try:
            # Same name, same size: the same bytes (files appear only by atomic rename).
            if path.is_file() and path.stat().st_size == len(data):
                return False
            files.atomic_write(path, data)
        except OSError as exc:
            raise LogError(path, f"cannot write audio to the log's store: {exc}") from exc
        return True

    # --- reading -------------------------------------------------------------------------------------
    def read_bytes(self, name: str, *, what: str = "the audio") -> bytes:
        """The encoded bytes stored under ``name``. Raises LogError: invalid name, missing file."""
        path = self.path(name)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            sha = path.stem  # a valid name: its stem is the content hash
            raise LogError(path, f"{what} is missing (sha256 {sha}); restore it from a bundle or backup") from None
        except OSError as exc:
            raise LogError(path, f"cannot read {what}: {exc}") from exc

    def open(self, name: str, *, format: str, sample_rate: int, what: str = "the audio") -> Audio:
        """The recording stored under ``name``.

        Args:
            format, sample_rate: as recorded with it (the file holds only the encoded bytes).
            what: how an error names it, e.g. ``"the preview audio of take 3f2a..."``.

        Raises:
            LogError: the name is invalid, or the file is missing or unreadable (naming the path).
        """
        return Audio(self.read_bytes(name, what=what), format, sample_rate)

    def take_audio(self, take: Take) -> Audio:
        """The preview of ``take`` (the ``audio_loader`` the log gives each take it reads).

        Raises:
            LogError: the take's ``audio_path`` is not in this store, or its file is missing.
        """
        path = os.fspath(take.audio_path or "")
        try:
            name = self.name_for_path(path)
        except ValueError as exc:
            raise LogError(Path(path), f"take {take.take_id}: {exc}") from None
        what = f"the preview audio of take {take.take_id}"
        return self.open(name, format=take.audio_format or "", sample_rate=cast(int, take.audio_sample_rate), what=what)

    def _checked(self, name: str) -> str:
        if not is_name(name):
            raise LogError(self.directory, f"{name!r} is not an audio store name (audio/<sha256>.<ext>)")
        return self._prefix + name


# The write path's insert (one per preview): compiled once, run on the held connection (``Database.run``).
_PUT = Prepared(
    pg_insert(audio_table)
    .values(sha256=bindparam("sha256"), name=bindparam("name"), data=bindparam("data"))
    .on_conflict_do_nothing()
    .returning(audio_table.c.sha256)
)


class TableAudioStore:
    """The audio of a log on PostgreSQL: the ``audio`` table of its database (``AudioStore``'s
    interface and names; ``path(name)`` is the name, since there is no file).

    Args:
        db: the log's database (``database.Database`` on PostgreSQL).
    """

    def __init__(self, db: Any) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"TableAudioStore({self._db.path!r})"

    def name_of(self, audio: Audio) -> str:
        """The name ``audio`` has (or would have) in the store."""
        return name_for(audio.sha256, audio.format)

    def path(self, name: str) -> str:
        """The name itself (checked): what a take's ``audio_path`` holds on a database log.

        Raises:
            LogError: ``name`` is not a valid store name.
        """
        if not is_name(name):
            raise LogError(self._db.path, f"{name!r} is not an audio store name (audio/<sha256>.<ext>)")
        return name

    def exists(self, name: str) -> bool:
        """Whether audio named ``name`` is in the store (False for an invalid name)."""
        return is_name(name) and bool(
            self._db.query(select(audio_table.c.sha256).where(audio_table.c.sha256 == _sha(name)))
        )

    def names(self) -> list[str]:
        """The names of every recording in the store, sorted."""
        return sorted(row[0] for row in self._db.query(select(audio_table.c.name)))

    def name_for_path(self, path: str | os.PathLike) -> str:
        """The store name of ``path`` (a valid name). Raises ValueError for anything else."""
        text = os.fspath(path)
        if not is_name(text):
            raise ValueError(f"{text!r} is not a file of the audio store in the log's database (audio/<sha256>.<ext>)")
        return text

    def paths_for(self, sha256s: Iterable[str | None], formats: Iterable[Any]) -> list[str | None]:
        """The name of each (content hash, format) pair, None where the hash is None (for DataFrames)."""
        return [
            None if sha is None else f"{FOLDER}/{sha}.{EXTENSIONS.get(fmt, fmt)}"
            for sha, fmt in zip(sha256s, formats, strict=True)
        ]

    def paths_of(self, names: Iterable[str | None]) -> list[str | None]:
        """The stored names as they are (None stays None; for DataFrames)."""
        return list(names)

    def put(self, audio: Audio) -> str:
        """Store ``audio`` unless it is already there; returns its name.

        Raises:
            TypeError: not an ``Audio``. LogError: cannot write.
        """
        if not isinstance(audio, Audio):
            raise TypeError(f"audio must be an Audio, got {type(audio).__name__}")
        name = self.name_of(audio)
        self._write(name, audio.data)
        return name

    def put_bytes(self, name: str, data: bytes) -> bool:
        """Store encoded audio under ``name`` unless already there; True if it was added.

        Raises:
            ValueError: ``name`` is not a valid name, or ``data`` does not hash to it. LogError: cannot write.
        """
        if not content_matches(check_name(name), data):
            raise ValueError(f"{name} is damaged (its sha256 does not match its name)")
        return self._write(name, data)

    def _write(self, name: str, data: bytes) -> bool:
        # A lone statement commits before the row that names the audio is written.
        return bool(self._db.run(_PUT, {"sha256": _sha(name), "name": name, "data": data}))

    def read_bytes(self, name: str, *, what: str = "the audio") -> bytes:
        """The bytes stored under ``name``. Raises LogError: invalid name, or not in the database."""
        rows = self._db.query(select(audio_table.c.data).where(audio_table.c.sha256 == _sha(self.path(name))))
        if not rows:
            raise LogError(
                self._db.path, f"{what} is missing (sha256 {_sha(name)}); restore it from a bundle or backup"
            )
        return bytes(rows[0][0])

    def open(self, name: str, *, format: str, sample_rate: int, what: str = "the audio") -> Audio:
        """The recording stored under ``name`` (``format``, ``sample_rate``: as recorded with it).

        Raises:
            LogError: the name is invalid, or the database does not hold it.
        """
        return Audio(self.read_bytes(name, what=what), format, sample_rate)

    def take_audio(self, take: Take) -> Audio:
        """The preview of ``take`` (its ``audio_loader``). Raises LogError: not in the store."""
        try:
            name = self.name_for_path(os.fspath(take.audio_path or ""))
        except ValueError as exc:
            raise LogError(self._db.path, f"take {take.take_id}: {exc}") from None
        what = f"the preview audio of take {take.take_id}"
        return self.open(name, format=take.audio_format or "", sample_rate=cast(int, take.audio_sample_rate), what=what)


def _sha(name: str) -> str:
    found = _NAME.fullmatch(name)
    if found is None:
        raise ValueError(f"{name!r} is not an audio store name (audio/<sha256>.<ext>)")
    return found["sha"]
