"""Finding the DashScope API key, and a ``Secret`` that never prints itself.

Order (contract §8): an explicit argument, else ``DASHSCOPE_API_KEY``, else the INI file
``~/.alibabacloud/credentials`` (profile ``[default]`` or ``ALIBABA_CLOUD_PROFILE``, key
``dashscope_api_key``). Read when a client is built, never at import.

A key with a control character or whitespace inside (a pasted terminal colour code, a line
break, a tab) is refused with a ``CredentialsError`` naming the kind of character and where it
is, never the key. ``redact`` is the one place where text that came back from the network
(error messages, response bodies) is cleaned of keys before it becomes exception text.
"""

from __future__ import annotations

import configparser
import os
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path

from cosyvoice_lab.errors import CredentialsError

REDACTED = "sk-***"
KEY_SHAPE = re.compile(r"sk-[A-Za-z0-9]{8,}")  # what a DashScope key looks like, wherever it appears
_MIN_LITERAL = 8  # a shorter "key" is no real key, and replacing it would garble ordinary words

_NAMED_CHARACTERS = {
    "\x1b": "an escape character (\\x1b, as in a terminal colour code)",
    "\r": "a carriage return (\\r)",
    "\n": "a line break (\\n)",
    "\t": "a tab",
    " ": "a space",
    "\x7f": "a delete character (\\x7f)",
}


def redact(text: str, *keys: Secret | str | None) -> str:
    """``text`` with each of ``keys``, and anything shaped like ``sk-`` + 8 or more letters and
    digits, replaced by ``sk-***``. Applied to every server-supplied text that becomes an
    exception message, since a proxy or a misbehaving server may echo the request's headers."""
    text = str(text)
    for key in keys:
        value = key.reveal() if isinstance(key, Secret) else key
        if value and len(value) >= _MIN_LITERAL:
            text = text.replace(value, REDACTED)
    return KEY_SHAPE.sub(REDACTED, text)


def _character_kind(ch: str) -> str | None:
    """What is wrong with ``ch`` inside a key, or None if it may be there."""
    if ch in _NAMED_CHARACTERS:
        return _NAMED_CHARACTERS[ch]
    if ch.isspace():
        return f"a whitespace character (U+{ord(ch):04X})"
    category = unicodedata.category(ch)
    if category == "Cc":
        return f"a control character (U+{ord(ch):04X})"
    if category == "Cf":
        return f"an invisible formatting character (U+{ord(ch):04X})"
    if not ch.isascii():  # HTTP headers carry ASCII; such a key could never authenticate
        return f"a non-ASCII character (U+{ord(ch):04X})"
    return None


def key_problem(value: str) -> str | None:
    """Why ``value`` (already stripped) cannot be an API key, without quoting it; None if fine."""
    for position, ch in enumerate(value, 1):
        kind = _character_kind(ch)
        if kind:
            return f"{kind} at character {position} of {len(value)}"
    return None


class Secret:
    """A string that shows as ``Secret('sk-…')`` in str, repr, format and f-strings.

    ``reveal()`` returns the value; only the client's header builder calls it.
    """

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "argument"):
        if not isinstance(value, str) or not value.strip():
            raise CredentialsError("the API key is empty")
        problem = key_problem(value.strip())  # leading/trailing whitespace is forgiven
        if problem:
            raise CredentialsError(
                f"the API key from {source} has {problem}; it was probably pasted with "
                "something extra: copy it again (a key is 'sk-' followed by letters and digits)"
            )
        self._value = value.strip()
        self.source = source

    def reveal(self) -> str:
        return self._value

    def redact(self, text: str) -> str:
        """``text`` with this key (and anything shaped like a key) replaced by ``sk-***``."""
        return redact(text, self)

    def __repr__(self):
        return f"Secret('sk-…', source={self.source!r})" if self._value.startswith("sk-") else "Secret('…')"

    __str__ = __repr__

    def __format__(self, spec):
        return repr(self)

    def __eq__(self, other):
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self):
        return hash(("Secret", self._value))

    def __reduce__(self):  # never pickled into files by accident
        raise TypeError("Secret values cannot be pickled")


def _from_file(env: Mapping[str, str], home: Path) -> Secret | None:
    path = home / ".alibabacloud" / "credentials"
    if not path.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:  # the type only: the text may hold a key
        raise CredentialsError(f"{path} is not a valid INI file ({type(exc).__name__})") from None
    profile = env.get("ALIBABA_CLOUD_PROFILE") or env.get("ALICLOUD_PROFILE") or "default"
    if not parser.has_section(profile):
        return None
    section = parser[profile]
    value = section.get("dashscope_api_key") or section.get("DASHSCOPE_API_KEY")
    return Secret(value, f"{path} [{profile}]") if value and value.strip() else None


def find_api_key(
    api_key: str | Secret | None = None, *, env: Mapping[str, str] | None = None, home: str | os.PathLike | None = None
) -> Secret | None:
    """The API key from the argument, the environment or the credentials file, else None."""
    if isinstance(api_key, Secret):
        return api_key
    if api_key is not None:
        return Secret(api_key, "argument")
    env = os.environ if env is None else env
    if env.get("DASHSCOPE_API_KEY", "").strip():
        return Secret(env["DASHSCOPE_API_KEY"], "DASHSCOPE_API_KEY")
    return _from_file(env, Path(home) if home else Path.home())


# The one key the in-process simulator accepts when none is given. Documented, not secret: it only
# ever unlocks a server on 127.0.0.1 (offline/, and a Lab pointed at a separately started one).
OFFLINE_API_KEY = "sk-offline-cosyvoice-lab"
OFFLINE_HINT_CODE = "Lab(backend='offline')"  # how the no-key error says "use the simulator" in code;
OFFLINE_HINT_CLI = "--backend offline"  # and on the command line, which shows it in place of the above


def resolve_api_key(
    api_key: str | Secret | None = None, *, env: Mapping[str, str] | None = None, home: str | os.PathLike | None = None
) -> Secret:
    """Like ``find_api_key`` but raises ``CredentialsError`` saying where it looked.

    Raises:
        CredentialsError: no key in any of the places.
    """
    found = find_api_key(api_key, env=env, home=home)
    if found is None:
        raise CredentialsError(
            "no DashScope API key: pass api_key=..., set DASHSCOPE_API_KEY, or add "
            "dashscope_api_key to ~/.alibabacloud/credentials (Beijing-region key, starts with 'sk-'). "
            f"Without a key, use the offline simulator: {OFFLINE_HINT_CODE}."
        )
    return found
