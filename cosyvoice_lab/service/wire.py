"""The shapes on the wire: voices as list/query report them, a created voice, error answers
(redacted of the key), the base URL and the User-Agent."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from cosyvoice_lab import catalog
from cosyvoice_lab.audio import Audio
from cosyvoice_lab.credentials import Secret, redact
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import APIError, api_error
from cosyvoice_lab.version import __version__

UTC8 = dt.timezone(dt.timedelta(hours=catalog.SERVICE_UTC_OFFSET_HOURS))


USER_AGENT = f"cosyvoice-lab/{__version__}"


@dataclass(frozen=True)
class VoiceInfo:
    """A stored voice as list/query report it."""

    voice_id: str
    target_model: str | None
    status: str | None
    voice_prompt: str | None = None
    preview_text: str | None = None
    gmt_create: dt.datetime | None = None
    gmt_modified: dt.datetime | None = None
    design_family: str | None = None  # catalog.FAMILIES: from the id, else the model
    language: str | None = None  # the Qwen family reports the voice's language (§12)

    @classmethod
    def from_wire(cls, item: dict, voice_id: str | None = None) -> VoiceInfo:
        """A list item or query output of either family: CosyVoice names the voice ``voice_id``
        and reports a ``status``; the Qwen family names it ``voice`` and reports no status."""
        vid = item.get("voice_id") or item.get("voice") or voice_id or ""
        model = item.get("target_model") or catalog.model_of_voice(vid)
        family = catalog.family_of_voice(vid) or catalog.family_of_model(model or "")
        return cls(
            voice_id=vid,
            target_model=model,
            status=item.get("status"),
            voice_prompt=item.get("voice_prompt"),
            preview_text=item.get("preview_text"),
            gmt_create=_parse_time(item.get("gmt_create")),
            gmt_modified=_parse_time(item.get("gmt_modified")),
            design_family=family.name if family else None,
            language=item.get("language"),
        )


@dataclass(frozen=True)
class CreatedVoice:
    """What a successful create_voice returned."""

    voice_id: str
    target_model: str
    preview: Audio
    request_id: str | None
    latency_s: float
    design: VoiceDesign = field(repr=False)


def _parse_time(text) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.strptime(text, catalog.TIME_FORMAT).replace(tzinfo=UTC8)
    except (TypeError, ValueError):
        return None


def without_login(url: str, what: str = "base_url") -> str:
    """``url`` if it carries no login (``user:password@``).

    A login in a service URL would be shown in every repr and stored in every take's ``host``
    column (and so in bundles and exports); with the API key in it, the key would reach the log.
    So it is refused, and the message shows the URL without the login.

    Raises:
        ValueError: the URL carries a user name or a password.
    """
    parts = urlsplit(url.strip())
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    shown = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    raise ValueError(
        f"{what} must not carry a login (user:password@): it would be shown and stored with every take; "
        f"use {shown!r} and give the API key as api_key= or DASHSCOPE_API_KEY"
    )


def normalise_base_url(base_url: str) -> str:
    """``base_url`` without a trailing slash; a bare host gets the API root.

    ``http://127.0.0.1:8765`` means ``http://127.0.0.1:8765/api/v1``: nothing of the API lives
    at a host's root, so that reading cannot be wrong. Any other path is kept as given (a proxy
    may mount the API elsewhere); a 404 from it says what was probably meant.

    Raises:
        ValueError: the URL carries a login (``without_login``).
    """
    parts = urlsplit(without_login(base_url))
    path = parts.path.rstrip("/")
    if parts.scheme and parts.netloc and not path:
        path = catalog.HTTP_API_ROOT
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def answer_error(
    key: Secret | None,
    status: int,
    code: object,
    message: object,
    request_id: object,
    *,
    retry_after: float | None = None,
) -> APIError:
    """The ``APIError`` for an error answer, every server-supplied text redacted of ``key``
    (and of anything shaped like a key): the one way an answer becomes exception text."""

    def clean(value: object) -> str | None:
        return None if value is None or value == "" else redact(str(value), key)

    return api_error(status, clean(code), clean(message), clean(request_id), retry_after=retry_after)


def ws_url_for(http_base: str) -> str:
    """The WebSocket URL that goes with an HTTP base (``https://h/api/v1`` → ``wss://h/api-ws/v1/inference``)."""
    scheme, _, rest = http_base.partition("://")
    host = rest.split("/", 1)[0]
    return f"{'wss' if scheme == 'https' else 'ws'}://{host}{catalog.WS_PATH}"
