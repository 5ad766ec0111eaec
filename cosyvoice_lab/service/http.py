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

Both loops are the one of ``retry.py``; this module only says which failures are safe to repeat.
Every text the server sent that becomes an exception message passes through
``credentials.redact`` first (:func:`answer_error`), so an echoed ``Authorization`` header
never shows the key.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from cosyvoice_lab import catalog
from cosyvoice_lab.audio import Audio
from cosyvoice_lab.credentials import Secret, redact, resolve_api_key
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import (
    ConnectionFailed,
    OutcomeUnknown,
    RateLimited,
    RequestTimeout,
    ServerError,
    TransportError,
    VoiceNotReady,
)
from cosyvoice_lab.service.ratelimit import DEFAULT_LIMITS
from cosyvoice_lab.service.retry import DEFAULT_RETRY, Retrier, RetryPolicy, parse_retry_after
from cosyvoice_lab.service.speech import fix_wav_sizes
from cosyvoice_lab.service.timeouts import DEFAULT_TIMEOUTS
from cosyvoice_lab.service.wire import (
    USER_AGENT,
    CreatedVoice,
    VoiceInfo,
    answer_error,
    normalise_base_url,
)

__all__ = [
    "USER_AGENT",
    "CreatedVoice",
    "DashScopeClient",
    "RetryPolicy",
    "VoiceInfo",
    "answer_error",
    "normalise_base_url",
    "parse_retry_after",
]

log = logging.getLogger("cosyvoice_lab.service.http")


def _never_sent(exc: BaseException) -> bool:
    """True when a requests error happened before the request left (connect phase)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
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
        CredentialsError: no API key found, or one with a control character or whitespace inside.
    """

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        region: str = catalog.DEFAULT_REGION,
        base_url: str | None = None,
        workspace: str | None = None,
        create_timeout: float = DEFAULT_TIMEOUTS.create,
        timeout: float = DEFAULT_TIMEOUTS.manage,
        connect_timeout: float = DEFAULT_TIMEOUTS.connect,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
        throttle: Callable[[], None] | None = None,
        backend: str = "dashscope",
    ):
        if region not in catalog.REGIONS:
            raise ValueError(f"region must be one of {tuple(catalog.REGIONS)}, got {region!r}")
        self._key = resolve_api_key(api_key)
        self.region = region
        self.base_url = normalise_base_url(base_url or catalog.REGIONS[region].http_base)
        self.workspace = workspace
        self.create_timeout, self.timeout, self.connect_timeout = create_timeout, timeout, connect_timeout
        self.retry, self._sleep = retry, sleep
        self._retrier = Retrier(retry, sleep=sleep, seed=seed, logger=log)
        self.throttle = throttle  # called before every request, e.g. RateLimiter.acquire
        self.backend = backend
        self.session = requests.Session()
        # one kept connection per request the runner may have in flight (the default keeps 10 and
        # discards the rest after each answer, so every request past ten would connect anew)
        self.session.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=DEFAULT_LIMITS.max_concurrency))
        self.session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=DEFAULT_LIMITS.max_concurrency))
        self.session.headers.update(
            {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": f"{USER_AGENT} python-requests/{requests.__version__}",
            }
        )
        if workspace:
            self.session.headers["X-DashScope-WorkSpace"] = workspace

    def __repr__(self) -> str:
        return (
            f"DashScopeClient(backend={self.backend!r}, region={self.region!r}, base_url={self.base_url!r}, "
            f"api_key={self._key!r})"
        )

    @property
    def url(self) -> str:
        return self.base_url + catalog.CUSTOMIZATION_PATH

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc

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
            resp = self.session.post(self.url, json=body, headers=headers, timeout=(self.connect_timeout, timeout))
        except requests.Timeout as exc:
            raise RequestTimeout(
                f"no answer from {self.host} within {timeout:g} s", never_sent=_never_sent(exc)
            ) from None
        except requests.RequestException as exc:
            raise ConnectionFailed(
                f"connection to {self.host} failed: {type(exc).__name__}", never_sent=_never_sent(exc)
            ) from None
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
                rid = None if rid_header is None else redact(rid_header, self._key)
                raise ServerError(resp.status_code, "Unknown", "answer was not JSON", rid)
            # redact before cutting: a cut key would escape both the literal and the pattern
            text = redact(resp.text, self._key)[:300]
            raise answer_error(
                self._key,
                resp.status_code,
                "Unknown",
                self._hint(resp.status_code, text),
                rid_header,
                retry_after=retry_after,
            )
        if not resp.ok or data.get("code"):  # SDK 2.0's "two-layer" errors: 200 with a code
            status = resp.status_code if not resp.ok else 400
            message = self._hint(status, str(data.get("message") or data.get("msg") or ""))
            raise answer_error(
                self._key,
                status,
                data.get("code"),
                message,
                data.get("request_id") or rid_header,
                retry_after=retry_after,
            )
        data.setdefault("request_id", rid_header)
        return data

    def _hint(self, status: int, message: str) -> str:
        """A 404 from a base URL that is not the API root usually means the root is missing."""
        if status != 404 or self.base_url.endswith(catalog.HTTP_API_ROOT):
            return message
        parts = urlsplit(self.base_url)
        root = urlunsplit((parts.scheme, parts.netloc, catalog.HTTP_API_ROOT, "", ""))
        return (
            f"{message} ({self.url} does not exist: base_url {self.base_url!r} does not end in "
            f"{catalog.HTTP_API_ROOT}; the DashScope API and the offline simulator live at {root!r})"
        )

    def _call(self, body: dict, *, timeout: float, retryable: Callable[[Exception], bool]) -> dict:
        for attempt in self._retrier.attempts(body["input"]["action"], retryable=retryable):
            with attempt:
                return self._post_once(body, timeout)
        raise AssertionError("unreachable: the last attempt raises")

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
            data = self._call(body, timeout=self.create_timeout, retryable=_create_retry)
        except (TransportError, ServerError) as exc:
            if isinstance(exc, TransportError) and exc.never_sent:
                raise
            raise OutcomeUnknown(
                f"create_voice outcome unknown: {exc}; a voice may have been stored "
                f"(reconcile by listing prefix {design.prefix!r})",
                design=design,
                sent_at=sent_at,
                cause=exc,
            ) from None
        out = data.get("output") or {}
        voice_id = design.family.voice_id_of(out) or out.get("voice_id") or out.get("voice")
        if not isinstance(voice_id, str) or not voice_id:  # a 200 without a voice stored nothing we can name
            raise ServerError(200, "Unknown", "create answered without a voice name", data.get("request_id"))
        audio = out.get("preview_audio") or {}
        preview = Audio.from_base64(
            audio.get("data", ""),
            audio.get("response_format") or design.response_format,
            int(audio.get("sample_rate") or design.sample_rate),
        )
        # a WAV preview may carry streaming placeholder sizes, as syntheses do: true ones make it a file
        preview = Audio(fix_wav_sizes(preview.data), preview.format, preview.sample_rate)
        return CreatedVoice(
            voice_id=voice_id,
            target_model=out.get("target_model") or design.target_model,
            preview=preview,
            request_id=data.get("request_id"),
            latency_s=time.perf_counter() - t0,
            design=design,
        )

    def list_page(
        self,
        *,
        prefix: str | None = None,
        page_index: int = 0,
        page_size: int = catalog.LIST_PAGE_SIZE_DEFAULT,
        family: str = catalog.COSYVOICE_FAMILY,
    ) -> list[VoiceInfo]:
        """One page of one family's voices, newest first. ``prefix`` filters: on the service
        for CosyVoice, here for the Qwen family (whose list takes no prefix, §12: the page may
        then hold fewer voices than ``page_size`` although more pages follow)."""
        return self._list_page(prefix, page_index, page_size, catalog.FAMILIES[family])[0]

    def _list_page(
        self, prefix: str | None, page_index: int, page_size: int, fam: catalog.DesignFamily
    ) -> tuple[list[VoiceInfo], int, int | None]:
        """(voices of ``prefix``, items on the page before filtering, total_count if reported)."""
        if not 0 <= page_size <= catalog.LIST_PAGE_SIZE_MAX or page_index < 0:
            raise ValueError(f"page_size must be 0..{catalog.LIST_PAGE_SIZE_MAX} and page_index >= 0")
        inp: dict = {"action": fam.verbs["list"], "page_index": page_index, "page_size": page_size}
        if prefix and fam.list_prefix_filter:
            inp["prefix"] = prefix
        data = self._call({"model": fam.enrollment_model, "input": inp}, timeout=self.timeout, retryable=_safe_retry)
        output = data.get("output") or {}
        items = [VoiceInfo.from_wire(item) for item in output.get("voice_list") or []]
        total = output.get("total_count")  # reported by the Qwen family only
        kept = items
        if prefix and not fam.list_prefix_filter:
            kept = [v for v in items if catalog.prefix_of_voice(v.voice_id) == prefix]
        return kept, len(items), total if isinstance(total, int) and not isinstance(total, bool) else None

    def list_voices(
        self, prefix: str | None = None, *, page_size: int = 100, family: str | None = catalog.COSYVOICE_FAMILY
    ) -> list[VoiceInfo]:
        """Every voice of one design family (all pages), newest first; ``prefix`` filters.
        ``family=None`` lists every family the client's region lists (CosyVoice's first, then
        the Qwen family's: one listing per family, as the service keeps them apart)."""
        if page_size < 1:  # a page of 0 would never come back short: no end to the paging
            raise ValueError(f"page_size must be 1..{catalog.LIST_PAGE_SIZE_MAX}, got {page_size}")
        names = [family] if family else self.families()
        voices: list[VoiceInfo] = []
        for name in names:
            voices += self._list_family(prefix, page_size, catalog.FAMILIES[name])
        return voices

    def families(self) -> list[str]:
        """The design families this client lists: CosyVoice always (its list answers in every
        region), the others where they design (the Qwen family in both regions)."""
        return [
            name
            for name in catalog.DESIGN_FAMILY_ORDER
            if name == catalog.COSYVOICE_FAMILY or self.region in catalog.FAMILIES[name].regions
        ]

    def _list_family(self, prefix: str | None, page_size: int, fam: catalog.DesignFamily) -> list[VoiceInfo]:
        size = min(page_size, fam.list_page_size_max)
        voices, page, seen = [], 0, 0
        while True:
            batch, count, total = self._list_page(prefix, page, size, fam)
            voices += batch
            seen += count
            if count < size or (total is not None and seen >= total):
                return voices
            page += 1

    def _voice_body(self, verb: str, voice_id: str) -> dict:
        """The query/delete body for ``voice_id`` in its family's shape (CosyVoice's for an
        id of no known family, as before families)."""
        fam = catalog.family_of_voice(voice_id) or catalog.FAMILIES[catalog.COSYVOICE_FAMILY]
        return {"model": fam.enrollment_model, "input": {"action": fam.verbs[verb], fam.voice_field: voice_id}}

    def query_voice(self, voice_id: str) -> VoiceInfo:
        """One voice's details and status (a Qwen-family voice reports no status).

        Raises:
            VoiceNotFound: no such voice.
        """
        data = self._call(self._voice_body("query", voice_id), timeout=self.timeout, retryable=_safe_retry)
        return VoiceInfo.from_wire(data.get("output") or {}, voice_id)

    def delete_voice(self, voice_id: str) -> str | None:
        """Delete a voice (irreversible, frees quota); returns the request id.

        Raises:
            VoiceNotFound: no such voice (also when a retried delete already succeeded).
        """
        data = self._call(self._voice_body("delete", voice_id), timeout=self.timeout, retryable=_safe_retry)
        return data.get("request_id")

    def wait_until_ready(
        self,
        voice_id: str,
        *,
        timeout: float = DEFAULT_TIMEOUTS.voice_ready,
        interval: float = DEFAULT_TIMEOUTS.voice_ready_interval,
    ) -> VoiceInfo:
        """Poll ``query_voice`` until the voice is OK (contract §4.5).

        Raises:
            VoiceNotReady: UNDEPLOYED, or not OK within ``timeout`` seconds.
        """
        polls = max(1, math.ceil(timeout / interval)) + 1  # counted, so an injected sleep works too
        for poll in range(polls):
            info = self.query_voice(voice_id)
            if info.status == "OK" or (info.status is None and info.design_family == catalog.QWEN_FAMILY):
                return info  # the Qwen family documents no status: a voice that answers a query is there
            if info.status == "UNDEPLOYED":
                raise VoiceNotReady(voice_id, "UNDEPLOYED", f"voice {voice_id} failed review (UNDEPLOYED)")
            if poll + 1 < polls:
                self._sleep(interval)
        status = redact(str(info.status or "unknown"), self._key)  # the server's word: redacted like all it sends
        raise VoiceNotReady(voice_id, status, f"voice {voice_id} still {status} after {timeout:g} s")


def _safe_retry(exc: Exception) -> bool:
    """list / query / delete: repeating cannot store anything twice."""
    return isinstance(exc, (TransportError, RateLimited, ServerError))


def _create_retry(exc: Exception) -> bool:
    """create_voice: only when the request surely stored nothing (refused, or never left)."""
    return isinstance(exc, RateLimited) or (isinstance(exc, TransportError) and exc.never_sent)
