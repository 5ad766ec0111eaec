"""One exception tree for the whole package.

::

    CosyVoiceLabError
    ├── ValidationError          bad input, caught before anything is sent (.problems)
    ├── CredentialsError         no API key found, or one with a control character or space inside
    ├── TransportError           the request did not complete
    │   ├── ConnectionFailed     could not connect / connection dropped
    │   └── RequestTimeout       no answer in time
    ├── OutcomeUnknown           a create_voice may or may not have stored a voice (.design, .sent_at)
    ├── APIError                 the service answered with an error (.status, .code, .message, .request_id,
    │   │                        .retry_after when the answer carried Retry-After)
    │   ├── AuthenticationError  401 / 403: bad key, key of another region, no access
    │   ├── RateLimited          429
    │   ├── VoiceQuotaExceeded   400 Throttling.AllocationQuota: 1000 voices held
    │   ├── VoiceNotFound        400 BadRequest.ResourceNotExist
    │   ├── InvalidParameter     400 InvalidParameter / BadRequest.*
    │   ├── DataInspectionFailed 400 DataInspectionFailed: content refused (e.g. imitating a named person)
    │   └── ServerError          5xx
    ├── SynthesisError           a WebSocket task failed (.code, .message, .task_id)
    ├── VoiceNotReady            a voice is not OK (DEPLOYING too long, or UNDEPLOYED)
    └── LogError                 the experiment log cannot be opened or written (.path)

No message ever contains the API key: the key lives in a ``Secret``, the client never formats
request headers into errors, and every text the server sent (error messages, bodies, close
reasons) passes through ``credentials.redact`` before it becomes part of an exception, so even
a server that echoes the ``Authorization`` header shows ``sk-***``.
"""

from __future__ import annotations

from dataclasses import dataclass


class CosyVoiceLabError(Exception):
    """Base class of every error this package raises on purpose.

    Every one pickles with its message and attributes (to another process, or a cache): it is
    rebuilt from its ``args`` and its ``__dict__`` without calling ``__init__``, whose keywords
    differ between the classes.
    """

    def __reduce__(self):
        return _rebuild, (type(self), self.args, self.__dict__)


@dataclass(frozen=True)
class Problem:
    """One reason a request is invalid: the ``field`` it concerns, the ``rule`` broken, a message."""

    field: str
    rule: str
    message: str

    def __str__(self):
        return f"{self.field}: {self.message}"


class ValidationError(CosyVoiceLabError, ValueError):
    """Input that would be rejected; lists every problem at once."""

    def __init__(self, problems, *, context: str = ""):
        self.problems = list(problems)
        self.context = context
        head = f"{context}: " if context else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{head}{len(self.problems)} problem(s):\n{lines}")


class CredentialsError(CosyVoiceLabError):
    """No API key could be found (or the one found is unusable)."""


class TransportError(CosyVoiceLabError):
    """The HTTP or WebSocket exchange did not complete.

    ``never_sent`` is True when it failed before the request left (connection refused,
    connect timeout), so even a non-idempotent request can safely be repeated.
    """

    def __init__(self, message: str, *, never_sent: bool = False):
        super().__init__(message)
        self.never_sent = never_sent


class ConnectionFailed(TransportError):
    """Could not connect, or the connection dropped before an answer."""


class RequestTimeout(TransportError):
    """No answer within the timeout."""


class OutcomeUnknown(CosyVoiceLabError):
    """A ``create_voice`` request was sent but its result is unknown.

    A voice may have been stored (and uses quota). Reconcile by listing voices with
    ``design.prefix`` created around ``sent_at`` with the same prompt and preview text.
    """

    def __init__(self, message: str, *, design=None, sent_at=None, cause: Exception | None = None):
        super().__init__(message)
        self.design = design
        self.sent_at = sent_at
        self.cause = cause


class APIError(CosyVoiceLabError):
    """The service answered with an error status; ``retry_after`` is the seconds its
    ``Retry-After`` header asked for (None if it gave none)."""

    def __init__(
        self, status: int, code: str, message: str, request_id: str | None = None, *, retry_after: float | None = None
    ):
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after
        rid = f" (request_id {request_id})" if request_id else ""
        super().__init__(f"HTTP {status} {code}: {message}{rid}")


class AuthenticationError(APIError):
    """401/403: the key is wrong, from another region, or lacks access."""


class RateLimited(APIError):
    """429: too many requests; wait ``retry_after`` seconds (None if the server did not say)."""


class VoiceQuotaExceeded(APIError):
    """The account holds its limit of custom voices; delete some first."""


class VoiceNotFound(APIError):
    """No voice with that id (deleted, or never existed in this account/region)."""


class InvalidParameter(APIError):
    """The service rejected a parameter."""


class DataInspectionFailed(APIError):
    """400 ``DataInspectionFailed``: the service's content inspection refused the request, e.g. a
    voice prompt asking to imitate a named person ("模型不支持模仿"). Rephrase; retrying is futile."""


class ServerError(APIError):
    """5xx: the service failed; usually transient."""


class SynthesisError(CosyVoiceLabError):
    """A WebSocket synthesis task failed (``task-failed`` event or a refused connection)."""

    def __init__(self, code: str, message: str, task_id: str | None = None):
        self.code = code
        self.message = message
        self.task_id = task_id
        super().__init__(f"{code}: {message}" + (f" (task {task_id})" if task_id else ""))


class VoiceNotReady(CosyVoiceLabError):
    """The voice is not usable: still DEPLOYING after the wait, or UNDEPLOYED."""

    def __init__(self, voice_id: str, status: str, message: str = ""):
        self.voice_id = voice_id
        self.status = status
        super().__init__(message or f"voice {voice_id} is {status}")


class LogError(CosyVoiceLabError):
    """The experiment log at ``path`` cannot be opened or written."""

    def __init__(self, path, message: str):
        self.path = path
        super().__init__(f"{path}: {message}")


class TakeNotFound(LogError, KeyError):
    """No take (or utterance) with that id in the log."""

    def __str__(self):  # KeyError would quote the message
        return Exception.__str__(self)


_BY_CODE = {
    "Throttling.AllocationQuota": VoiceQuotaExceeded,  # 400 for the voice limit; 429 generic below
    "BadRequest.ResourceNotExist": VoiceNotFound,
    "DataInspectionFailed": DataInspectionFailed,
}


def api_error(
    status: int, code: str | None, message: str | None, request_id: str | None, *, retry_after: float | None = None
) -> APIError:
    """Map an HTTP error answer to the most specific ``APIError`` subclass."""
    code = code or "Unknown"
    cls: type[APIError] | None
    if status in (401, 403):
        cls = AuthenticationError
    elif status == 429:
        cls = RateLimited
    elif status >= 500:
        cls = ServerError  # 503 may carry Retry-After too
    else:
        cls = _BY_CODE.get(code)
        if cls is None and (code.startswith("InvalidParameter") or code.startswith("BadRequest")):
            cls = InvalidParameter
    return (cls or APIError)(status, code, message or "", request_id, retry_after=retry_after)


def _rebuild(cls: type[CosyVoiceLabError], args: tuple, state: dict) -> CosyVoiceLabError:
    """An error unpickled: its ``args`` (the message) and attributes, as they were."""
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc
