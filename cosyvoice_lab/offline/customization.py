"""``POST /api/v1/services/audio/tts/customization``: the five voice actions (contract §2, §4);
the body's ``model`` picks the family (``qwen-voice-design``: the Qwen family's four actions, in
:mod:`cosyvoice_lab.offline.qwen_design`; the answers both families share: :mod:`.answers`).

The handler runs the gateway steps (latency, auth, rate limit, injected faults), then the
action; an :class:`ApiError` anywhere becomes the service's error shape
``{"code", "message", "request_id"}`` with a non-2xx status.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from cosyvoice_lab import catalog, jsontext
from cosyvoice_lab.design import detect_language
from cosyvoice_lab.offline import engine
from cosyvoice_lab.offline.answers import (
    MSG_CLONE,
    MSG_INSPECTION,
    MSG_INTERNAL,
    MSG_INVALID_KEY,
    MSG_NOT_EXIST,
    MSG_READ_TIMEOUT,
    MSG_TOO_LARGE,
    MSG_UPDATE_DESIGNED,
    ApiError,
    choice,
    drop_connection,
    error_response,
    fault_error,
    integer_field,
    invalid,
    json_answer,
    quota_exceeded,
    text_field,
    throttled,
)
from cosyvoice_lab.offline.qwen_design import QWEN_ACTIONS
from cosyvoice_lab.offline.registry import QuotaExceeded, service_time
from cosyvoice_lab.offline.state import STATE, new_request_id

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
        resp = json_answer(await _dispatch(request, state, seen), rid)
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


def _language(inp: dict, preview_text: str) -> str:
    hints, detected = inp.get("language_hints"), detect_language(preview_text)
    if hints is None or hints == []:  # the match is required only when a hint is sent (contract §11)
        return detected or catalog.DEFAULT_LANGUAGE
    if not isinstance(hints, list) or hints[0] not in catalog.LANGUAGES:
        raise invalid("language_hints")
    if detected not in (None, hints[0]):
        raise invalid("language_hints")  # the hint must match the preview text
    return hints[0]


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
    voice_prompt = text_field(inp, "voice_prompt", catalog.VOICE_PROMPT_MAX)
    preview_text = text_field(inp, "preview_text", catalog.PREVIEW_TEXT_MAX)
    return {
        "target_model": inp["target_model"],
        "prefix": prefix,
        "voice_prompt": voice_prompt,
        "preview_text": preview_text,
        "language": _language(inp, preview_text),
        "sample_rate": choice(params, "sample_rate", catalog.PREVIEW_SAMPLE_RATES, catalog.DEFAULT_PREVIEW_SAMPLE_RATE),
        "response_format": choice(params, "response_format", catalog.PREVIEW_FORMATS, catalog.DEFAULT_PREVIEW_FORMAT),
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


async def list_voice(state, inp: dict, params: dict) -> dict:
    """One page of the account's voices, newest first, optionally only those of ``prefix``."""
    prefix = inp.get("prefix")
    if prefix is not None and not isinstance(prefix, str):
        raise invalid("prefix")
    index = integer_field(inp, "page_index", 0, 0, None)
    size = integer_field(inp, "page_size", catalog.LIST_PAGE_SIZE_DEFAULT, 0, catalog.LIST_PAGE_SIZE_MAX)
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
