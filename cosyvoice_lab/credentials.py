"""Finding the DashScope API key, and a ``Secret`` that never prints itself.

Order (contract §8): an explicit argument, else ``DASHSCOPE_API_KEY``, else the INI file
``~/.alibabacloud/credentials`` (profile ``[default]`` or ``ALIBABA_CLOUD_PROFILE``, key
``dashscope_api_key``). Read when a client is built, never at import.
"""
from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from pathlib import Path

from cosyvoice_lab.errors import CredentialsError


class Secret:
    """A string that shows as ``Secret('sk-…')`` in str, repr, format and f-strings.

    ``reveal()`` returns the value; only the client's header builder calls it.
    """

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "argument"):
        if not isinstance(value, str) or not value.strip():
            raise CredentialsError("the API key is empty")
        self._value = value.strip()
        self.source = source

    def reveal(self) -> str:
        return self._value

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


def find_api_key(api_key: str | Secret | None = None, *, env: Mapping[str, str] | None = None,
                 home: str | os.PathLike | None = None) -> Secret | None:
    """The API key from the argument, the environment or the credentials file, else None."""
    if isinstance(api_key, Secret):
        return api_key
    if api_key is not None:
        return Secret(api_key, "argument")
    env = os.environ if env is None else env
    if env.get("DASHSCOPE_API_KEY", "").strip():
        return Secret(env["DASHSCOPE_API_KEY"], "DASHSCOPE_API_KEY")
    return _from_file(env, Path(home) if home else Path.home())


def resolve_api_key(api_key: str | Secret | None = None, *, env: Mapping[str, str] | None = None,
                    home: str | os.PathLike | None = None) -> Secret:
    """Like ``find_api_key`` but raises ``CredentialsError`` saying where it looked.

    Raises:
        CredentialsError: no key in any of the places.
    """
    found = find_api_key(api_key, env=env, home=home)
    if found is None:
        raise CredentialsError(
            "no DashScope API key: pass api_key=..., set DASHSCOPE_API_KEY, or add "
            "dashscope_api_key to ~/.alibabacloud/credentials (Beijing-region key, starts with 'sk-'). "
            "Without a key, use the offline simulator: Lab(backend='offline')."
        )
    return found


# Public classes report the module users import them from.
Secret.__module__ = "cosyvoice_lab"
