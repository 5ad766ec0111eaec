"""The simulator's voice registry: designed voices, their status lifecycle, quota and storage.

A voice is a plain dict (the JSON that is stored)::

    {"voice_id", "target_model", "prefix", "voice_prompt", "preview_text", "language",
     "created", "modified",            # epoch seconds
     "status", "ready_at",             # DEPLOYING until ready_at (epoch seconds), then OK
     "seq",                            # creation order, to break ties of equal timestamps
     "settings": {...}}                # engine.VoiceSettings.to_dict(), so synthesis sounds
                                       # like the preview; the audio itself is not kept

Without a ``state_dir`` the registry lives in memory; with one, every change rewrites
``voices.json`` atomically (temp file, fsync, rename), so a restarted simulator still knows
its voices. All methods are thread-safe: the server's event loop and the test or notebook
thread use the registry at the same time.
"""
from __future__ import annotations

import copy
import json
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cosyvoice_lab import catalog
from cosyvoice_lab.files import atomic_write

STATE_FILE = "voices.json"
_SERVICE_TZ = timezone(timedelta(hours=catalog.SERVICE_UTC_OFFSET_HOURS))


class QuotaExceeded(Exception):
    """The account already holds ``quota`` voices."""

    def __init__(self, quota: int):
        super().__init__(f"Your current quota is {quota}")
        self.quota = quota


def service_time(epoch: float) -> str:
    """``epoch`` as the service prints it: ``YYYY-MM-DD HH:MM:SS`` in UTC+8."""
    return datetime.fromtimestamp(epoch, _SERVICE_TZ).strftime(catalog.TIME_FORMAT)


class Registry:
    """Designed voices of one simulated account.

    ``quota`` is the number of voices the account may hold (the service's 1000; tests set it
    low). ``state_dir``, when given, is where ``voices.json`` persists them.
    """

    def __init__(self, state_dir: str | os.PathLike | None = None, *, quota: int = catalog.VOICE_QUOTA):
        self.quota = quota
        self._lock = threading.RLock()
        self._voices: dict[str, dict] = {}
        self._seq = 0
        self._path = Path(state_dir) / STATE_FILE if state_dir is not None else None
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._load()

    # --- persistence ---------------------------------------------------------------------------
    def _load(self) -> None:
        if not self._path.exists():
            return
        data = json.loads(self._path.read_text(encoding="utf-8"))
        self._voices = {v["voice_id"]: v for v in data.get("voices", [])}
        self._seq = max((v.get("seq", 0) for v in self._voices.values()), default=0)

    def _save(self) -> None:
        if self._path is None:
            return
        payload = json.dumps({"version": 1, "voices": list(self._voices.values())}, ensure_ascii=False)
        atomic_write(self._path, payload.encode("utf-8"))  # readers see the old or the new file, never half

    # --- status lifecycle ----------------------------------------------------------------------
    def _settle(self, voice: dict, now: float) -> dict:
        """Move a DEPLOYING voice whose time has come to OK (done lazily, on read)."""
        ready_at = voice.get("ready_at")
        if voice["status"] == "DEPLOYING" and ready_at is not None and now >= ready_at:
            voice.update(status="OK", ready_at=None, modified=ready_at)
            self._save()
        return voice

    # --- the account's voices ------------------------------------------------------------------
    def add(self, voice: dict, *, deploying_seconds: float = 0.0) -> dict:
        """Store a new voice (fills in times, status and order); raises :class:`QuotaExceeded`."""
        with self._lock:
            if len(self._voices) >= self.quota:
                raise QuotaExceeded(self.quota)
            now = time.time()
            self._seq += 1
            voice = dict(voice, created=now, modified=now, seq=self._seq,
                         status="DEPLOYING" if deploying_seconds > 0 else "OK",
                         ready_at=now + deploying_seconds if deploying_seconds > 0 else None)
            self._voices[voice["voice_id"]] = voice
            self._save()
            return copy.deepcopy(voice)

    def get(self, voice_id: str) -> dict | None:
        """A copy of the voice, or None when the account has no such voice."""
        with self._lock:
            voice = self._voices.get(voice_id)
            return copy.deepcopy(self._settle(voice, time.time())) if voice else None

    def voices(self, prefix: str | None = None) -> list[dict]:
        """Copies of all voices (only those created with ``prefix`` if given), newest first."""
        with self._lock:
            now = time.time()
            found = [self._settle(v, now) for v in self._voices.values()
                     if prefix is None or v.get("prefix") == prefix]
            found.sort(key=lambda v: (v["created"], v.get("seq", 0)), reverse=True)
            return copy.deepcopy(found)

    def delete(self, voice_id: str) -> bool:
        """Remove a voice (frees a quota slot); False if there was none."""
        with self._lock:
            if self._voices.pop(voice_id, None) is None:
                return False
            self._save()
            return True

    def set_status(self, voice_id: str, status: str) -> None:
        """Force a voice's status (e.g. ``UNDEPLOYED``, as after a failed review)."""
        if status not in catalog.STATUSES:
            raise ValueError(f"status must be one of {catalog.STATUSES}, got {status!r}")
        with self._lock:
            voice = self._voices.get(voice_id)
            if voice is None:
                raise KeyError(voice_id)
            voice.update(status=status, ready_at=None, modified=time.time())
            self._save()

    def count(self) -> int:
        """How many voices the account holds (what the quota counts)."""
        with self._lock:
            return len(self._voices)

    def clear(self) -> None:
        """Forget every voice (and the stored file's contents)."""
        with self._lock:
            self._voices.clear()
            self._save()
