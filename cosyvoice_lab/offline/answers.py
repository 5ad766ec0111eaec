"""What the customization endpoint answers with, for every design family: the documented error
messages, :class:`ApiError` and its JSON shape, injected faults' answers, and the checks of one
field that answer 400 ``InvalidParameter`` naming it (contract §5)."""

from __future__ import annotations

import json

from aiohttp import web

from cosyvoice_lab.design import text_problems
from cosyvoice_lab.offline.faults import retry_after_header
from cosyvoice_lab.offline.registry import QuotaExceeded

# documented messages [contract §5.2]
MSG_INVALID_KEY = "Invalid API-key provided."
MSG_RATE = "Requests rate limit exceeded, try again later."
MSG_INTERNAL = "An internal error has occured, try again later or contact service support."
MSG_UNAVAILABLE = "Model is unavailable, try again later."
MSG_NOT_EXIST = "The Required resource not exist."
MSG_UPDATE_DESIGNED = "update_voice is not supported for designed voices"
MSG_CLONE = "Voice cloning (input.url) is not supported by the offline simulator."
MSG_PARAMETER = "Required parameter({}) missing or invalid, please check the request parameters."
MSG_INSPECTION = "Input data may contain inappropriate content."
# the simulator's own (the service's answers to these are undocumented)
MSG_TOO_LARGE = "Request body too large: the limit is {} bytes."
MSG_READ_TIMEOUT = "Request body not received within {:g} seconds."


class ApiError(Exception):
    """An error answer: HTTP ``status``, service ``code`` and ``message``, extra headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def invalid(field: str) -> ApiError:
    """400 ``InvalidParameter`` naming ``field`` with the documented template."""
    return ApiError(400, "InvalidParameter", MSG_PARAMETER.format(field))


def quota_exceeded(quota: int) -> ApiError:
    """400 ``Throttling.AllocationQuota``: the account holds ``quota`` voices (400, not 429)."""
    return ApiError(400, "Throttling.AllocationQuota", str(QuotaExceeded(quota)))


def throttled(wait: float) -> ApiError:
    """429 ``Throttling.RateQuota`` with an honest ``Retry-After``."""
    return ApiError(429, "Throttling.RateQuota", MSG_RATE, {"Retry-After": retry_after_header(wait)})


def fault_error(status: int) -> ApiError:
    """The error answer of an injected fault with HTTP ``status``."""
    if status == 429:
        return throttled(1.0)
    if status == 503:
        return ApiError(503, "ServiceUnavailable", MSG_UNAVAILABLE)
    return ApiError(500, "InternalError", MSG_INTERNAL)


def json_answer(body: dict, request_id: str, status: int = 200, headers: dict | None = None) -> web.Response:
    body = dict(body, request_id=request_id)
    return web.json_response(
        body,
        status=status,
        headers={"x-request-id": request_id, **(headers or {})},
        dumps=lambda o: json.dumps(o, ensure_ascii=False),
    )


def error_response(err: ApiError, request_id: str) -> web.Response:
    """The service's error shape for ``err``."""
    return json_answer({"code": err.code, "message": err.message}, request_id, err.status, err.headers)


def drop_connection(request: web.Request) -> web.Response:
    # Close the socket without a byte of answer; aiohttp then writes nothing.
    if request.transport is not None:  # None: the client has already gone
        request.transport.close()
    return web.Response(status=499)


# --- one field ----------------------------------------------------------------------------


def text_field(inp: dict, field: str, limit: int) -> str:
    value = inp.get(field)
    if not isinstance(value, str) or text_problems(field, value, limit):  # the client's rule: never disagree
        raise invalid(field)
    return value


def choice(params: dict, field: str, allowed: tuple, default):
    value = params.get(field, default)
    # of the default's type: 24000.0 is no sample rate (and would reach the encoder as a float)
    if isinstance(value, bool) or not isinstance(value, type(default)) or value not in allowed:
        raise invalid(field)
    return value


def integer_field(inp: dict, field: str, default: int, lo: int, hi: int | None) -> int:
    value = inp.get(field, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        raise invalid(field)
    return value
