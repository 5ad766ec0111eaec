"""The Qwen3-TTS voice-design family on the customization endpoint (``model: qwen-voice-design``;
actions ``create``, ``list``, ``query``, ``delete``; contract §12, ``docs/contract-12-qwen-design.md``).

Shapes from the official reference pages [QVD]: create answers output.voice, preview_audio,
target_model and usage.count 1; list answers page_index, page_size, total_count, voice_list and
an empty usage; query answers the voice's fields (no status, no audio); delete answers
output.voice. Errors for broken limits, unknown voices and a full quota are undocumented for
this family: the CosyVoice answers are used (400 InvalidParameter naming the field,
400 BadRequest.ResourceNotExist, 400 Throttling.AllocationQuota).
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from datetime import datetime

from cosyvoice_lab import catalog
from cosyvoice_lab.design import detect_language, text_problems
from cosyvoice_lab.offline import engine
from cosyvoice_lab.offline.answers import (
    MSG_INSPECTION,
    MSG_INTERNAL,
    MSG_NOT_EXIST,
    ApiError,
    choice,
    integer_field,
    invalid,
    quota_exceeded,
    text_field,
)
from cosyvoice_lab.offline.registry import QuotaExceeded, service_time, service_zone

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
    voice_prompt = text_field(inp, "voice_prompt", QWEN.voice_prompt_max)
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
        "sample_rate": choice(params, "sample_rate", QWEN.sample_rates, catalog.DEFAULT_PREVIEW_SAMPLE_RATE),
        "response_format": choice(params, "response_format", QWEN.formats, catalog.DEFAULT_PREVIEW_FORMAT),
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
    index = integer_field(inp, "page_index", 0, 0, None)
    size = integer_field(inp, "page_size", catalog.LIST_PAGE_SIZE_DEFAULT, 0, catalog.LIST_PAGE_SIZE_MAX)
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
