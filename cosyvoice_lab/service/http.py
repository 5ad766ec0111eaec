"""DashScopeClient: voice design and management over HTTP (contract §2, §4, §5).

One ``requests.Session``; the same code talks to the real service and to the offline
simulator, only the base URL and key differ. Retries are per action:

* ``list_voices`` / ``query_voice`` / ``delete_voice`` are safe to repeat: they retry on
  connection errors, timeouts, 429 and 5xx with capped exponential backoff (full jitter),
  honouring ``Retry-After``.
* ``create_voice`` is not idempotent (each success stores a voice and uses quota). It retries
  only when the request surely did not create a voice: the connection was refused before
  anything was sent, or the service answered 429. A timeout, a dropped connection or a 5xx
  after sending raises ``OutcomeUnknown``, carrying what is needed to reconcile later.
"""
from __future__ import annotations

import datetime as dt
import email.utils
import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from cosyvoice_lab import __version__, catalog
from cosyvoice_lab.audio import Audio
from cosyvoice_lab.credentials import Secret, resolve_api_key
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import (APIError, ConnectionFailed, OutcomeUnknown, RateLimited, RequestTimeout,
                     ServerError, TransportError, VoiceNotReady, api_error)

log = logging.getLogger("cosyvoice_lab.service.http")
UTC8 = dt.timezone(dt.timedelta(hours=catalog.SERVICE_UTC_OFFSET_HOURS))


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: ``max_attempts`` in all, sleeping ``min(cap, base * 2**n)`` with full
    jitter, or the server's ``Retry-After`` when it gives one (capped at ``max_retry_after``)."""

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** attempt))


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

    @classmethod
    def from_wire(cls, item: dict, voice_id: str | None = None) -> "VoiceInfo":
        vid = item.get("voice_id") or voice_id or ""
        return cls(
            voice_id=vid,
            target_model=item.get("target_model") or catalog.model_of_voice(vid),
            status=item.get("status"),
            voice_prompt=item.get("voice_prompt"),
            preview_text=item.get("preview_text"),
            gmt_create=_parse_time(item.get("gmt_create")),
            gmt_modified=_parse_time(item.get("gmt_modified")),
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


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), else None."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


def _never_sent(exc: BaseException) -> bool:
    """True when a requests error happened before the request left (connect phase)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen or e is None:
            continue
        seen.add(id(e))
        if isinstance(e, (NewConnectionError, ConnectTimeoutError, ConnectionRefusedError)):
            return True
        todo += [getattr(e, "reason", None), e.__cause__, e.__context__]
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
    return False


class DashScopeClient:
    """Voice design and management against DashScope or the offline simulator.

    Args:
        api_key: key or ``Secret``; else ``DASHSCOPE_API_KEY``, else ``~/.alibabacloud/credentials``.
        region: ``cn-beijing`` (design lives only there) or ``ap-southeast-1``.
        base_url: HTTP base overriding the region's (e.g. the simulator's ``.../api/v1``).
        workspace: sent as ``X-DashScope-WorkSpace`` when given.
        create_timeout / timeout: read timeouts (s) for create and for the other actions.
        retry: the ``RetryPolicy``; ``sleep`` is injectable so tests take milliseconds.
        throttle: called before every request (retries included), e.g. ``RateLimiter.acquire``.
        backend: a label recorded with takes ("dashscope" or "offline").

    Raises:
        CredentialsError: no API key found.
    """

    def __init__(self, *, api_key: str | Secret | None = None, region: str = catalog.DEFAULT_REGION,
                 base_url: str | None = None, workspace: str | None = None,
                 create_timeout: float = catalog.CREATE_TIMEOUT_S, timeout: float = catalog.MANAGE_TIMEOUT_S,
                 connect_timeout: float = catalog.CONNECT_TIMEOUT_S, retry: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] = time.sleep, seed: int | None = None,
                 throttle: Callable[[], None] | None = None, backend: str = "dashscope"):
        if region not in catalog.REGIONS:
            raise ValueError(f"region must be one of {tuple(catalog.REGIONS)}, got {region!r}")
        self._key = resolve_api_key(api_key)
        self.region = region
        self.base_url = (base_url or catalog.REGIONS[region].http_base).rstrip("/")
        self.workspace = workspace
        self.create_timeout, self.timeout, self.connect_timeout = create_timeout, timeout, connect_timeout
        self.retry, self._sleep, self._rng = retry, sleep, random.Random(seed)
        self.throttle = throttle  # called before every request, e.g. RateLimiter.acquire
        self.backend = backend
        self.session = requests.Session()
        self.session.headers.update({
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"cosyvoice-lab/{__version__} python-requests/{requests.__version__}",
        })
        if workspace:
            self.session.headers["X-DashScope-WorkSpace"] = workspace

    def __repr__(self):
        return f"DashScopeClient(backend={self.backend!r}, region={self.region!r}, base_url={self.base_url!r}, api_key={self._key!r})"

    @property
    def url(self) -> str:
        return self.base_url + catalog.CUSTOMIZATION_PATH

    @property
    def host(self) -> str:
        return requests.utils.urlparse(self.base_url).netloc

    @property
    def api_key(self) -> Secret:
        return self._key

    def close(self):
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- transport ----------------------------------------------------------------------
    def _post_once(self, body: dict, timeout: float) -> dict:
        headers = {"Authorization": f"Bearer {self._key.reveal()}"}
        if self.throttle is not None:
            self.throttle()
        try:
            resp = self.session.post(self.url, json=body, headers=headers,
                                     timeout=(self.connect_timeout, timeout))
        except requests.Timeout as exc:
            raise RequestTimeout(f"no answer from {self.host} within {timeout:g} s",
                                 never_sent=_never_sent(exc)) from None
        except requests.RequestException as exc:
            raise ConnectionFailed(f"connection to {self.host} failed: {type(exc).__name__}",
                                   never_sent=_never_sent(exc)) from None
        return self._parse(resp)

    def _parse(self, resp: requests.Response) -> dict:
        rid_header = resp.headers.get("x-request-id")
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            if resp.ok:
                raise ServerError(resp.status_code, "Unknown", "answer was not JSON", rid_header)
            raise api_error(resp.status_code, "Unknown", resp.text[:300], rid_header, retry_after=retry_after)
        if not resp.ok or data.get("code"):  # SDK 2.0's "two-layer" errors: 200 with a code
            status = resp.status_code if not resp.ok else 400
            raise api_error(status, data.get("code"), data.get("message") or data.get("msg"),
                            data.get("request_id") or rid_header, retry_after=retry_after)
        data.setdefault("request_id", rid_header)
        return data

    def _call(self, body: dict, *, timeout: float, retryable: Callable[[Exception], bool]) -> dict:
        action = body["input"]["action"]
        for attempt in range(self.retry.max_attempts):
            try:
                return self._post_once(body, timeout)
            except (TransportError, APIError) as exc:
                if attempt + 1 >= self.retry.max_attempts or not retryable(exc):
                    raise
                wait = self.retry.delay(attempt, getattr(exc, "retry_after", None), self._rng)
                log.warning("%s: %s; retrying in %.2f s (attempt %d of %d)", action, exc, wait,
                            attempt + 2, self.retry.max_attempts)
                self._sleep(wait)
        raise AssertionError("unreachable")

    @staticmethod
    def _safe_retry(exc: Exception) -> bool:
        return isinstance(exc, (TransportError, RateLimited, ServerError))

    @staticmethod
    def _create_retry(exc: Exception) -> bool:
        return isinstance(exc, RateLimited) or (isinstance(exc, TransportError) and exc.never_sent)

    # --- actions --------------------------------------------------------------------------
    def create_voice(self, design: VoiceDesign) -> CreatedVoice:
        """Design a voice; returns its id and decoded preview.

        Raises:
            ValidationError: before sending, when the design breaks a rule.
            OutcomeUnknown: sent, but no clear answer (timeout, dropped connection, 5xx).
            APIError: the service refused (auth, quota, invalid parameter, 429 after retries).
            ConnectionFailed: the service could not be reached at all (nothing was sent).
        """
        body = design.to_payload()
        if self.region != design.region:
            raise ValueError(f"design is for region {design.region!r} but the client talks to {self.region!r}")
        sent_at = dt.datetime.now(dt.timezone.utc)
        t0 = time.perf_counter()
        try:
            data = self._call(body, timeout=self.create_timeout, retryable=self._create_retry)
        except (TransportError, ServerError) as exc:
            if isinstance(exc, TransportError) and exc.never_sent:
                raise
            raise OutcomeUnknown(f"create_voice outcome unknown: {exc}; a voice may have been stored "
                                 f"(reconcile by listing prefix {design.prefix!r})",
                                 design=design, sent_at=sent_at, cause=exc) from None
        out = data.get("output") or {}
        audio = out.get("preview_audio") or {}
        preview = Audio.from_base64(audio.get("data", ""), audio.get("response_format") or design.response_format,
                                    int(audio.get("sample_rate") or design.sample_rate))
        return CreatedVoice(voice_id=out["voice_id"], target_model=out.get("target_model") or design.target_model,
                            preview=preview, request_id=data.get("request_id"),
                            latency_s=time.perf_counter() - t0, design=design)

    def list_page(self, *, prefix: str | None = None, page_index: int = 0,
                  page_size: int = catalog.LIST_PAGE_SIZE_DEFAULT) -> list[VoiceInfo]:
        """One page of voices, newest first (``prefix`` filters)."""
        if not 0 <= page_size <= catalog.LIST_PAGE_SIZE_MAX or page_index < 0:
            raise ValueError(f"page_size must be 0..{catalog.LIST_PAGE_SIZE_MAX} and page_index >= 0")
        inp = {"action": "list_voice", "page_index": page_index, "page_size": page_size}
        if prefix:
            inp["prefix"] = prefix
        data = self._call({"model": catalog.ENROLLMENT_MODEL, "input": inp}, timeout=self.timeout,
                          retryable=self._safe_retry)
        return [VoiceInfo.from_wire(item) for item in (data.get("output") or {}).get("voice_list") or []]

    def list_voices(self, prefix: str | None = None, *, page_size: int = 100) -> list[VoiceInfo]:
        """Every voice of the account (all pages), newest first; ``prefix`` filters."""
        if page_size < 1:  # a page of 0 would never come back short: no end to the paging
            raise ValueError(f"page_size must be 1..{catalog.LIST_PAGE_SIZE_MAX}, got {page_size}")
        voices, page = [], 0
        while True:
            batch = self.list_page(prefix=prefix, page_index=page, page_size=page_size)
            voices += batch
            if len(batch) < page_size:
                return voices
            page += 1

    def query_voice(self, voice_id: str) -> VoiceInfo:
        """One voice's details and status.

        Raises:
            VoiceNotFound: no such voice.
        """
        data = self._call({"model": catalog.ENROLLMENT_MODEL, "input": {"action": "query_voice", "voice_id": voice_id}},
                          timeout=self.timeout, retryable=self._safe_retry)
        return VoiceInfo.from_wire(data.get("output") or {}, voice_id)

    def delete_voice(self, voice_id: str) -> str | None:
        """Delete a voice (irreversible, frees quota); returns the request id.

        Raises:
            VoiceNotFound: no such voice (also when a retried delete already succeeded).
        """
        data = self._call({"model": catalog.ENROLLMENT_MODEL, "input": {"action": "delete_voice", "voice_id": voice_id}},
                          timeout=self.timeout, retryable=self._safe_retry)
        return data.get("request_id")

    def wait_until_ready(self, voice_id: str, *, timeout: float = catalog.VOICE_READY_TIMEOUT_S,
                         interval: float = catalog.VOICE_READY_INTERVAL_S) -> VoiceInfo:
        """Poll ``query_voice`` until the voice is OK (contract §4.5).

        Raises:
            VoiceNotReady: UNDEPLOYED, or not OK within ``timeout`` seconds.
        """
        polls = max(1, math.ceil(timeout / interval)) + 1  # counted, so an injected sleep works too
        for poll in range(polls):
            info = self.query_voice(voice_id)
            if info.status == "OK":
                return info
            if info.status == "UNDEPLOYED":
                raise VoiceNotReady(voice_id, "UNDEPLOYED", f"voice {voice_id} failed review (UNDEPLOYED)")
            if poll + 1 < polls:
                self._sleep(interval)
        raise VoiceNotReady(voice_id, info.status or "unknown",
                            f"voice {voice_id} still {info.status} after {timeout:g} s")


# Public classes report the module users import them from.
DashScopeClient.__module__ = "cosyvoice_lab"
