"""``POST /api/v1/services/audio/tts/customization``: the five voice actions (contract §2, §4),
and the Qwen design family's four (``model: qwen-voice-design``; create, list, query, delete, §12).

The handler runs the gateway steps (latency, auth, rate limit, injected faults), then the
action; an :class:`ApiError` anywhere becomes the service's error shape
``{"code", "message", "request_id"}`` with a non-2xx status.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from datetime import datetime

from aiohttp import web

from cosyvoice_lab import catalog, jsontext
from cosyvoice_lab.design import detect_language, text_problems
from cosyvoice_lab.offline import engine
from cosyvoice_lab.offline.faults import retry_after_header
from cosyvoice_lab.offline.registry import QuotaExceeded, service_time, service_zone
from cosyvoice_lab.offline.state import STATE, new_request_id

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


def _json(body: dict, request_id: str, status: int = 200, headers: dict | None = None) -> web.Response:
    body = dict(body, request_id=request_id)
    return web.json_response(
        body,
        status=status,
        headers={"x-request-id": request_id, **(headers or {})},
        dumps=lambda o: json.dumps(o, ensure_ascii=False),
    )


def error_response(err: ApiError, request_id: str) -> web.Response:
    """The service's error shape for ``err``."""
    return _json({"code": err.code, "message": err.message}, request_id, err.status, err.headers)


def drop_connection(request: web.Request) -> web.Response:
    # Close the socket without a byte of answer; aiohttp then writes nothing.
    if request.transport is not None:  # None: the client has already gone
        request.transport.close()
    return web.Response(status=499)


# --- the handler ---------------------------------------------------------------------------


async def handle(request: web.Request) -> web.Response:
    """Gateway steps, then the action; one log line and one request_log entry per request."""
    state = request.app[STATE]
    started, rid = state.clock.monotonic(), new_request_id()
    seen = {"action": "customization"}  # the action, once the body has been read
    try:
        resp = await _handle(request, state, rid, seen)
    except ApiError as err:
        resp = error_response(err, rid)
    except Exception:  # a simulator bug must still answer in the service's error shape
        state.log.exception("customization request %s failed", rid)
        resp = error_response(ApiError(500, "InternalError", MSG_INTERNAL), rid)
    if resp.status in (408, 413):
        resp.force_close()  # the rest of that body is not worth waiting for
    state.record(started, seen["action"], 0 if resp.status == 499 else resp.status, rid)
    return resp


async def _handle(request: web.Request, state, rid: str, seen: dict) -> web.Response:
    await state.sleep(state.faults.latency)
    if not state.authorized(request):
        raise ApiError(401, "InvalidApiKey", MSG_INVALID_KEY)
    wait = state.limiter.admit((state.api_key, "enrollment"), state.enrollment_rps)
    if wait:
        raise throttled(wait)
    fault = state.faults.draw()
    if fault and not fault.after:
        if fault.kind == "drop":
            return drop_connection(request)
        if fault.kind == "error":
            raise fault_error(fault.status)
    try:
        resp = _json(await _dispatch(request, state, seen), rid)
    except ApiError as err:
        resp = error_response(err, rid)
    await state.sleep(state.faults.action_latency.get(seen.get("action"), 0.0))
    if fault and fault.kind == "hang":
        await state.sleep(state.faults.hang_seconds)
    elif fault and fault.kind == "drop":
        return drop_connection(request)
    elif fault and fault.kind == "error":
        raise fault_error(fault.status)
    return resp


async def _dispatch(request: web.Request, state, seen: dict) -> dict:
    body = await _envelope(request, state)
    inp = body["input"]
    action = inp.get("action")
    actions = QWEN_ACTIONS if body["model"] == catalog.QWEN_DESIGN_MODEL else ACTIONS
    if action not in actions:
        raise invalid("action")
    seen["action"] = action
    params = body.get("parameters")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise invalid("parameters")
    return await actions[action](state, inp, params)


async def read_body(request: web.Request, state) -> bytes:
    """The request body, within the body limit and the read timeout: 413 above the limit
    (declared or counted), 408 when the body does not complete in time."""
    limit = state.max_body_bytes
    too_large = ApiError(413, "BadRequest.TooLarge", MSG_TOO_LARGE.format(limit))
    if request.content_length is not None and request.content_length > limit:
        raise too_large  # answered before reading a byte of it
    try:
        return await asyncio.wait_for(request.read(), state.read_timeout_seconds)
    except web.HTTPRequestEntityTooLarge:  # a chunked body that grew past client_max_size
        raise too_large from None
    except asyncio.TimeoutError:
        raise ApiError(408, "RequestTimeOut", MSG_READ_TIMEOUT.format(state.read_timeout_seconds)) from None


async def _envelope(request: web.Request, state) -> dict:
    """The parsed body, or the documented envelope errors."""
    raw = await read_body(request, state)
    try:
        body = jsontext.loads(raw)
    except ValueError:  # not JSON, not UTF-8, or nested too deep
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest.IllegalInput", "The input parameter requires json format.")
    if not body.get("model"):
        raise ApiError(400, "BadRequest.EmptyModel", 'Required parameter "model" missing from request.')
    if body.get("input") is None:
        raise ApiError(400, "BadRequest.EmptyInput", "Required input parameter missing from request.")
    if body["model"] not in (catalog.ENROLLMENT_MODEL, catalog.QWEN_DESIGN_MODEL):
        raise ApiError(400, "InvalidParameter", "url error, please check url!")
    if not isinstance(body["input"], dict):
        raise invalid("input")
    return body


# --- create_voice --------------------------------------------------------------------------


def _text(inp: dict, field: str, limit: int) -> str:
    value = inp.get(field)
    if not isinstance(value, str) or text_problems(field, value, limit):  # the client's rule: never disagree
        raise invalid(field)
    return value


def _language(inp: dict, preview_text: str) -> str:
    hints, detected = inp.get("language_hints"), detect_language(preview_text)
    if hints is None or hints == []:  # the match is required only when a hint is sent (contract §11)
        return detected or catalog.DEFAULT_LANGUAGE
    if not isinstance(hints, list) or hints[0] not in catalog.LANGUAGES:
        raise invalid("language_hints")
    if detected not in (None, hints[0]):
        raise invalid("language_hints")  # the hint must match the preview text
    return hints[0]


def _choice(params: dict, field: str, allowed: tuple, default):
    value = params.get(field, default)
    # of the default's type: 24000.0 is no sample rate (and would reach the encoder as a float)
    if isinstance(value, bool) or not isinstance(value, type(default)) or value not in allowed:
        raise invalid(field)
    return value


def validate_design(inp: dict, params: dict, *, intl: bool) -> dict:
    """The checked design request: target_model, prefix, voice_prompt, preview_text,
    language, sample_rate, response_format. Raises :class:`ApiError` naming the first bad field."""
    if intl:
        raise invalid("target_model")  # no CosyVoice design in Singapore [contract §3.4]
    if inp.get("url") is not None:
        raise (
            invalid("url")
            if ("voice_prompt" in inp or "preview_text" in inp)
            else ApiError(400, "InvalidParameter", MSG_CLONE)
        )
    if inp.get("target_model") not in catalog.design_models(catalog.DEFAULT_REGION):
        raise invalid("target_model")
    prefix = inp.get("prefix")
    if not isinstance(prefix, str) or not catalog.PREFIX_RE.match(prefix):
        raise invalid("prefix")
    voice_prompt = _text(inp, "voice_prompt", catalog.VOICE_PROMPT_MAX)
    preview_text = _text(inp, "preview_text", catalog.PREVIEW_TEXT_MAX)
    return {
        "target_model": inp["target_model"],
        "prefix": prefix,
        "voice_prompt": voice_prompt,
        "preview_text": preview_text,
        "language": _language(inp, preview_text),
        "sample_rate": _choice(
            params, "sample_rate", catalog.PREVIEW_SAMPLE_RATES, catalog.DEFAULT_PREVIEW_SAMPLE_RATE
        ),
        "response_format": _choice(params, "response_format", catalog.PREVIEW_FORMATS, catalog.DEFAULT_PREVIEW_FORMAT),
    }


async def create_voice(state, inp: dict, params: dict) -> dict:
    """Design a voice: store it with its engine settings and return the preview clip."""
    d = validate_design(inp, params, intl=state.intl)
    if state.faults.refuses(d["voice_prompt"]):
        raise ApiError(400, "DataInspectionFailed", MSG_INSPECTION)
    if state.registry.count(catalog.COSYVOICE_FAMILY) >= state.registry.quota:
        raise quota_exceeded(state.registry.quota)
    started, profile = state.clock.monotonic(), state.profile(d["target_model"])
    voice_id = f"{d['target_model']}-vd-{d['prefix']}-{state.new_voice_uid()}"
    settings = engine.settings_for(d["voice_prompt"], d["language"], voice_id, profile)
    loop = asyncio.get_running_loop()
    # espeak takes milliseconds to tens of ms; off the loop, so other requests keep flowing
    audio = await loop.run_in_executor(
        None,
        lambda: engine.preview(d["preview_text"], settings, sample_rate=d["sample_rate"], fmt=d["response_format"]),
    )
    voice = {k: d[k] for k in ("target_model", "prefix", "voice_prompt", "preview_text", "language")}
    try:
        state.registry.add(
            dict(voice, voice_id=voice_id, settings=settings.to_dict()),
            deploying_seconds=state.deploying_seconds,
            family=catalog.COSYVOICE_FAMILY,
        )
    except QuotaExceeded as exc:  # lost a race with a concurrent create
        raise quota_exceeded(exc.quota) from None
    # The model's design latency (counting the engine's time). As with Faults.action_latency,
    # the voice is stored first: a client that gives up waiting finds it in a listing.
    await state.sleep(profile.design_seconds(state.timing) - (state.clock.monotonic() - started))
    return {
        "output": {
            "preview_audio": {
                "data": audio.to_base64(),
                "sample_rate": d["sample_rate"],
                "response_format": d["response_format"],
            },
            "target_model": d["target_model"],
            "voice_id": voice_id,
        },
        "usage": {"count": 1},
    }


# --- management ----------------------------------------------------------------------------


def describe(voice: dict, *, listed: bool = False) -> dict:
    """A voice as list/query show it (never its audio or engine settings), fields in the
    order of the documented samples. List items of CosyVoice voices carry no ``target_model``
    ("仅Qwen返回", contract §11); the client derives it from the voice id."""
    item = {
        "voice_id": voice["voice_id"],
        "gmt_create": service_time(voice["created"]),
        "gmt_modified": service_time(voice["modified"]),
        "preview_text": voice["preview_text"],
        "target_model": voice["target_model"],
        "status": voice["status"],
        "voice_prompt": voice["voice_prompt"],
    }
    if listed and str(voice["target_model"]).startswith("cosyvoice"):
        del item["target_model"]
    return item


def _int(inp: dict, field: str, default: int, lo: int, hi: int | None) -> int:
    value = inp.get(field, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        raise invalid(field)
    return value


async def list_voice(state, inp: dict, params: dict) -> dict:
    """One page of the account's voices, newest first, optionally only those of ``prefix``."""
    prefix = inp.get("prefix")
    if prefix is not None and not isinstance(prefix, str):
        raise invalid("prefix")
    index = _int(inp, "page_index", 0, 0, None)
    size = _int(inp, "page_size", catalog.LIST_PAGE_SIZE_DEFAULT, 0, catalog.LIST_PAGE_SIZE_MAX)
    voices = state.registry.voices(prefix or None, family=catalog.COSYVOICE_FAMILY)
    return {
        "output": {"voice_list": [describe(v, listed=True) for v in voices[index * size : (index + 1) * size]]},
        "usage": {"count": 1},
    }


def _existing(state, inp: dict) -> dict:
    voice_id = inp.get("voice_id")
    if not isinstance(voice_id, str) or not voice_id:
        raise invalid("voice_id")
    voice = state.registry.get(voice_id)
    if voice is None or catalog.family_of_voice(voice_id) is catalog.FAMILIES[catalog.QWEN_FAMILY]:
        raise ApiError(400, "BadRequest.ResourceNotExist", MSG_NOT_EXIST)  # each family sees its own
    return voice


async def query_voice(state, inp: dict, params: dict) -> dict:
    """One voice's description and status (no preview audio)."""
    return {"output": describe(_existing(state, inp)), "usage": {"count": 1}}


async def update_voice(state, inp: dict, params: dict) -> dict:
    """Cloned voices only: every voice here is designed, so this always fails."""
    _existing(state, inp)
    raise ApiError(400, "InvalidParameter", MSG_UPDATE_DESIGNED)


async def delete_voice(state, inp: dict, params: dict) -> dict:
    """Delete a voice for good (frees its quota slot)."""
    voice = _existing(state, inp)
    if not state.registry.delete(voice["voice_id"]):  # deleted concurrently
        raise ApiError(400, "BadRequest.ResourceNotExist", MSG_NOT_EXIST)
    return {"output": {}, "usage": {"count": 1}}


ACTIONS = {
    "create_voice": create_voice,
    "list_voice": list_voice,
    "query_voice": query_voice,
    "update_voice": update_voice,
    "delete_voice": delete_voice,
}


# --- the Qwen design family (contract §12) -------------------------------------------------
# Shapes from the official reference pages [QVD]: create answers output.voice, preview_audio,
# target_model and usage.count 1; list answers page_index, page_size, total_count, voice_list and
# an empty usage; query answers the voice's fields (no status, no audio); delete answers
# output.voice. Errors for broken limits, unknown voices and a full quota are undocumented for
# this family: the CosyVoice answers are used (400 InvalidParameter naming the field,
# 400 BadRequest.ResourceNotExist, 400 Throttling.AllocationQuota), see contract §12.

QWEN = catalog.FAMILIES[catalog.QWEN_FAMILY]
QWEN_DEFAULT_LANGUAGE = "zh"  # [QVD]: language defaults to zh
NAME_ATTEMPTS = 8  # fresh 4-character tails tried when a name is taken in the same second


def _qwen_language(inp: dict, preview_text: str) -> str:
    language, detected = inp.get("language"), detect_language(preview_text)
    if language is None:  # the match is required only when a language is sent, as for CosyVoice (§11)
        return detected or QWEN_DEFAULT_LANGUAGE
    if not isinstance(language, str) or language not in QWEN.languages:
        raise invalid("language")
    if language in catalog.LANGUAGES and detected not in (None, language):
        raise invalid("language")  # "The language parameter must match the preview_text language" [QVD-AC]
    return language


def validate_qwen_design(inp: dict, params: dict) -> dict:
    """The checked Qwen design request (§12); raises :class:`ApiError` naming the first bad field."""
    if inp.get("target_model") not in QWEN.target_models:
        raise invalid("target_model")
    name = inp.get("preferred_name")
    if not isinstance(name, str) or not QWEN.name_re.match(name):
        raise invalid("preferred_name")
    voice_prompt = _text(inp, "voice_prompt", QWEN.voice_prompt_max)
    preview_text = inp.get("preview_text")
    if not isinstance(preview_text, str) or text_problems(
        "preview_text", preview_text, QWEN.preview_text_max, zh_en_only=False
    ):
        raise invalid("preview_text")
    return {
        "target_model": inp["target_model"],
        "prefix": name,
        "voice_prompt": voice_prompt,
        "preview_text": preview_text,
        "language": _qwen_language(inp, preview_text),
        "sample_rate": _choice(params, "sample_rate", QWEN.sample_rates, catalog.DEFAULT_PREVIEW_SAMPLE_RATE),
        "response_format": _choice(params, "response_format", QWEN.formats, catalog.DEFAULT_PREVIEW_FORMAT),
    }


def _qwen_settings(d: dict, uid: str, profile) -> engine.VoiceSettings:
    """Engine settings as for CosyVoice (same words, same per-voice draw from ``uid``); a
    preview in another of the ten languages is read by espeak-ng's voice for it."""
    spoken = d["language"] if d["language"] in engine.LANGUAGE_VOICES else "en"
    settings = engine.settings_for(d["voice_prompt"], spoken, uid, profile)
    if spoken != d["language"]:
        variant = settings.voice.partition("+")[2]
        settings = replace(settings, voice=f"{engine.SYNTHESIS_VOICES[d['language']]}+{variant}")
    return settings


def _qwen_name(state, name: str, uid: str) -> str:
    stamp = datetime.fromtimestamp(state.clock.time(), service_zone()).strftime(catalog.QWEN_VOICE_TIME_FORMAT)
    return f"{catalog.QWEN_VOICE_PREFIX}{name}-voice-{stamp}-{uid[:4]}"


async def qwen_create(state, inp: dict, params: dict) -> dict:
    """Design a Qwen-family voice: store it and return its name and preview (§12)."""
    d = validate_qwen_design(inp, params)
    if state.faults.refuses(d["voice_prompt"]):
        raise ApiError(400, "DataInspectionFailed", MSG_INSPECTION)
    if state.registry.count(catalog.QWEN_FAMILY) >= state.registry.quota:
        raise quota_exceeded(state.registry.quota)
    started, profile = state.clock.monotonic(), state.profile(d["target_model"])
    uid = state.new_voice_uid()
    settings = _qwen_settings(d, uid, profile)
    loop = asyncio.get_running_loop()
    audio = await loop.run_in_executor(
        None,
        lambda: engine.preview(d["preview_text"], settings, sample_rate=d["sample_rate"], fmt=d["response_format"]),
    )
    voice = {k: d[k] for k in ("target_model", "prefix", "voice_prompt", "preview_text", "language")}
    for _ in range(NAME_ATTEMPTS):
        name = _qwen_name(state, d["prefix"], uid)
        try:
            state.registry.add(dict(voice, voice_id=name, settings=settings.to_dict()), family=catalog.QWEN_FAMILY)
            break
        except QuotaExceeded as exc:
            raise quota_exceeded(exc.quota) from None
        except sqlite3.IntegrityError:  # the same name and tail in the same second: draw another tail
            uid = state.new_voice_uid()
    else:
        raise ApiError(500, "InternalError", MSG_INTERNAL)
    await state.sleep(profile.design_seconds(state.timing) - (state.clock.monotonic() - started))
    return {
        "output": {
            "voice": name,
            "preview_audio": {
                "data": audio.to_base64(),
                "sample_rate": d["sample_rate"],
                "response_format": d["response_format"],
            },
            "target_model": d["target_model"],
        },
        "usage": {"count": 1},
    }


def describe_qwen(voice: dict) -> dict:
    """A Qwen-family voice as list and query show it, fields in the order of the samples [QVD]."""
    return {
        "voice": voice["voice_id"],
        "target_model": voice["target_model"],
        "language": voice["language"],
        "voice_prompt": voice["voice_prompt"],
        "preview_text": voice["preview_text"],
        "gmt_create": service_time(voice["created"]),
        "gmt_modified": service_time(voice["modified"]),
    }


async def qwen_list(state, inp: dict, params: dict) -> dict:
    """One page of the Qwen-family voices, newest first, with the page and the total (§12)."""
    index = _int(inp, "page_index", 0, 0, None)
    size = _int(inp, "page_size", catalog.LIST_PAGE_SIZE_DEFAULT, 0, catalog.LIST_PAGE_SIZE_MAX)
    voices = state.registry.voices(family=catalog.QWEN_FAMILY)
    return {
        "output": {
            "page_index": index,
            "page_size": size,
            "total_count": len(voices),
            "voice_list": [describe_qwen(v) for v in voices[index * size : (index + 1) * size]],
        },
        "usage": {},
    }


def _existing_qwen(state, inp: dict) -> dict:
    name = inp.get("voice")
    if not isinstance(name, str) or not name:
        raise invalid("voice")
    voice = state.registry.get(name)
    if voice is None or not catalog.QWEN_VOICE_ID_RE.match(name):
        raise ApiError(400, "BadRequest.ResourceNotExist", MSG_NOT_EXIST)
    return voice


async def qwen_query(state, inp: dict, params: dict) -> dict:
    """One Qwen-family voice's fields (§12)."""
    return {"output": describe_qwen(_existing_qwen(state, inp)), "usage": {}}


async def qwen_delete(state, inp: dict, params: dict) -> dict:
    """Delete a Qwen-family voice; the answer names it (§12)."""
    voice = _existing_qwen(state, inp)
    if not state.registry.delete(voice["voice_id"]):
        raise ApiError(400, "BadRequest.ResourceNotExist", MSG_NOT_EXIST)
    return {"output": {"voice": voice["voice_id"]}, "usage": {}}


QWEN_ACTIONS = {
    QWEN.verbs["create"]: qwen_create,
    QWEN.verbs["list"]: qwen_list,
    QWEN.verbs["query"]: qwen_query,
    QWEN.verbs["delete"]: qwen_delete,
}
