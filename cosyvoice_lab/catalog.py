"""The service's contract: models, regions, endpoints, limits and prices.

The validator (``design.py``), the client (``service/``) and the offline simulator
(``offline/``) all read these values; no limit of the service is written anywhere else.
Figures follow ``dashscope-contract.md`` (sections in brackets).

Our own tuning lives beside its owner as a small frozen object with its defaults:
``service.retry.RetryPolicy``, ``service.timeouts.Timeouts``, ``service.ratelimit.Limits``,
``offline.state.SimulatorSettings``, ``panel.settings.PanelSettings``; the default folders are
``folders.py``'s. The section at the end holds what the log still reads from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# --- models [3.4, 3.7] -------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """A CosyVoice synthesis model a designed voice can be bound to."""

    name: str
    price_cny_per_10k_chars: float  # Beijing synthesis price per 10,000 billed characters
    regions: tuple[str, ...]  # regions where voices can be *designed* for this model


V35_PLUS = "cosyvoice-v3.5-plus"
V35_FLASH = "cosyvoice-v3.5-flash"
V3_PLUS = "cosyvoice-v3-plus"
V3_FLASH = "cosyvoice-v3-flash"

MODELS: dict[str, Model] = {
    V35_PLUS: Model(V35_PLUS, 1.5, ("cn-beijing",)),
    V35_FLASH: Model(V35_FLASH, 0.8, ("cn-beijing",)),
    V3_PLUS: Model(V3_PLUS, 2.0, ("cn-beijing",)),
    V3_FLASH: Model(V3_FLASH, 1.0, ("cn-beijing",)),
}
DESIGN_PRICE_CNY = 0.0  # designing a CosyVoice voice (and its preview) is free; only synthesis is billed [3.5]
DEFAULT_MODEL = V35_PLUS
COMPARE_MODELS = (V35_PLUS, V35_FLASH)  # also the one order models are shown in (see model_order)


def model_order(models) -> tuple[str, ...]:
    """``models`` once each, in the one order every grid, pivot and card column uses:
    COMPARE_MODELS first (plus, then flash), then the other catalog models, then by name."""
    rank: dict[str, int] = {}
    for i, name in enumerate((*COMPARE_MODELS, *MODELS)):
        rank.setdefault(name, i)
    return tuple(sorted(dict.fromkeys(models), key=lambda m: (rank.get(m, len(rank)), m)))


# Models that take the synthesis ``instruction`` [contract §11]: "仅适用于cosyvoice-v3.5-flash、
# cosyvoice-v3.5-plus和cosyvoice-v3-flash"; the feature table marks cosyvoice-v3-plus "不支持".
INSTRUCTION_MODELS = (V35_PLUS, V35_FLASH, V3_FLASH)
# Designed voices speak these languages as documented ([TTS]: "中文（普通话）、英文"; the user
# guide's FAQ says "多种语言", contract §11): other language hints work, with a warning.
DESIGNED_VOICE_LANGUAGES = ("zh", "en")
# Voice design families made elsewhere whose voice ids must still parse and list (not designed
# here) [contract §11]: Qwen-Audio-TTS, Beijing.
QWEN_AUDIO_DESIGN_MODELS = ("qwen-audio-3.0-tts-plus", "qwen-audio-3.1-tts-flash", "qwen-audio-3.0-tts-flash")

# --- regions and endpoints [1] ---------------------------------------------------------


@dataclass(frozen=True)
class Region:
    """A DashScope region: its HTTP base URL and WebSocket URL."""

    name: str
    label: str
    http_base: str
    ws_url: str


REGIONS: dict[str, Region] = {
    "cn-beijing": Region(
        "cn-beijing",
        "Beijing (China mainland)",
        "https://dashscope.aliyuncs.com/api/v1",
        "wss://dashscope.aliyuncs.com/api-ws/v1/inference",
    ),
    "ap-southeast-1": Region(
        "ap-southeast-1",
        "Singapore (international)",
        "https://dashscope-intl.aliyuncs.com/api/v1",
        "wss://dashscope-intl.aliyuncs.com/api-ws/v1/inference",
    ),
}
DEFAULT_REGION = "cn-beijing"
# Workspace hosts of the official voice-design samples [contract §11], Beijing only.
WORKSPACE_HOST = "{workspace}.cn-beijing.maas.aliyuncs.com"
WORKSPACE_RE = re.compile(r"\A[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")  # one DNS label


def workspace_endpoints(workspace: str) -> tuple[str, str]:
    """The HTTP base and WebSocket URL of a workspace host (``https://{WorkspaceId}.cn-beijing.
    maas.aliyuncs.com/api/v1`` and ``wss://…/api-ws/v1/inference``).

    Raises:
        ValueError: ``workspace`` is not a workspace id (one DNS label).
    """
    if not isinstance(workspace, str) or not WORKSPACE_RE.match(workspace):
        raise ValueError(f"must be a workspace id such as 'ws-abc123' (letters, digits, '-'), got {workspace!r}")
    host = WORKSPACE_HOST.format(workspace=workspace)
    return f"https://{host}{HTTP_API_ROOT}", f"wss://{host}{WS_PATH}"


def design_models(region: str) -> tuple[str, ...]:
    """Models whose voices can be designed in ``region``, of every family (CosyVoice only in
    Beijing; the Qwen family in Beijing and Singapore, contract §12)."""
    cosy = tuple(m.name for m in MODELS.values() if region in m.regions)
    qwen = FAMILIES[QWEN_FAMILY]
    return cosy + (qwen.target_models if region in qwen.regions else ())


# --- wire constants [2.1, 6.1] -----------------------------------------------------------

ENROLLMENT_MODEL = "voice-enrollment"
CUSTOMIZATION_PATH = "/services/audio/tts/customization"  # appended to the HTTP base
HTTP_API_ROOT = "/api/v1"  # the path of the HTTP base on every host (and on the simulator)
WS_PATH = "/api-ws/v1/inference"
ACTIONS = ("create_voice", "list_voice", "query_voice", "update_voice", "delete_voice")

# --- design limits [3.1, 3.2, 2.2] -------------------------------------------------------

PREFIX_MAX = 10
# Patterns are anchored with \A and \Z, never ^ and $: with re.match, "$" also matches before a
# final newline, so "lab\n" passed as a prefix and put a newline into a voice id.
PREFIX_RE = re.compile(rf"\A[a-z0-9]{{1,{PREFIX_MAX}}}\Z")
VOICE_PROMPT_MAX = 500
PREVIEW_TEXT_MAX = 200
LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"  # the service's default when language_hints is absent
PREVIEW_SAMPLE_RATES = (16000, 24000, 48000)
DEFAULT_PREVIEW_SAMPLE_RATE = 24000
PREVIEW_FORMATS = ("wav", "mp3", "pcm")
DEFAULT_PREVIEW_FORMAT = "wav"
DEFAULT_PREFIX = "lab"

# voice id of a designed voice [3.3]; ids made elsewhere also parse [contract §11]: capitals in
# the prefix (the API pages allow "English letters") and the Qwen-Audio-TTS design models
VOICE_ID_RE = re.compile(
    r"\A(?P<model>(?:cosyvoice-v[0-9.]+|qwen-audio-[0-9.]+-tts)-(?:plus|flash))"
    rf"-vd-(?P<prefix>[A-Za-z0-9]{{1,{PREFIX_MAX}}})-(?P<uid>[0-9a-f]{{32}})\Z"
)


def model_of_voice(voice_id: str) -> str | None:
    """The target model encoded in a designed voice id, or None if the id is not one."""
    m = VOICE_ID_RE.match(voice_id or "")
    return m.group("model") if m else None


# --- design families [contract §12] -------------------------------------------------------
# Two families design voices on the one customization endpoint, told apart by the body's
# ``model``. The family of a design is the family of its target model (``family_of_model``).
# The CosyVoice family is the contract of §2-§5 (the constants above); the Qwen family is §12,
# every figure read from the pages cited in docs/contract-12-qwen-design.md ([QVD] the reference pages,
# [QVD-AC] the Alibaba Cloud API reference, [QPRICE] the model page, [VDG] the user guide).

COSYVOICE_FAMILY = "cosyvoice"
QWEN_FAMILY = "qwen"
QWEN_DESIGN_MODEL = "qwen-voice-design"  # the body's model for every Qwen design action [QVD]
QWEN_VD = "qwen3-tts-vd-2026-01-26"  # non-real-time synthesis target [QVD][QVD-AC]
QWEN_VD_RT = "qwen3-tts-vd-realtime-2026-01-15"  # real-time synthesis target [QVD][QVD-AC]
QWEN_VD_RT_OLD = "qwen3-tts-vd-realtime-2025-12-16"  # real-time, earlier version [QVD][QVD-AC]
QWEN_NAME_MAX = 16  # preferred_name: letters, digits, underscores, at most 16 [QVD]
QWEN_NAME_RE = re.compile(rf"\A[A-Za-z0-9_]{{1,{QWEN_NAME_MAX}}}\Z")
# What a Qwen designed voice is called: qwen-tts-vd-{preferred_name}-voice-{timestamp}-{4 chars}.
# The official samples show 14-digit times ("...-voice-20251210145409-a1b2" [QVD]); the cloning
# family's show 17 ("...-voice-20250812105009984-838b"); both parse.
QWEN_VOICE_PREFIX = "qwen-tts-vd-"
QWEN_VOICE_ID_RE = re.compile(
    rf"\Aqwen-tts-vd-(?P<prefix>[A-Za-z0-9_]{{1,{QWEN_NAME_MAX}}})-voice-(?P<stamp>[0-9]{{8,17}})-(?P<tail>[0-9a-z]{{4}})\Z"
)
QWEN_VOICE_TIME_FORMAT = "%Y%m%d%H%M%S"  # the simulator's timestamp part (the samples' 14 digits)


@dataclass(frozen=True, eq=False)  # one object per family: compared and hashed by identity
class DesignFamily:
    """One voice-design family: what its requests and answers look like, and its limits."""

    name: str
    label: str
    enrollment_model: str  # the body's "model"
    verbs: dict[str, str]  # create / list / query / delete -> the wire's input.action
    voice_field: str  # where create's output and query/delete's input name the voice
    name_field: str  # the input field our ``prefix`` travels in
    name_re: re.Pattern
    name_rule: str
    target_models: tuple[str, ...]
    regions: tuple[str, ...]
    voice_prompt_max: int
    preview_text_max: int
    languages: tuple[str, ...]  # of the preview text (and the ``language`` field)
    sample_rates: tuple[int, ...]
    formats: tuple[str, ...]
    quota: int
    design_price: dict[str, float]  # per designed voice, by currency ({} when free)
    list_prefix_filter: bool  # the list verb filters by prefix on the service's side
    list_page_size_max: int  # the largest page the client asks for

    def voice_id_of(self, output: dict) -> str | None:
        """The voice name in a create answer's ``output`` (``voice_id`` or ``voice``)."""
        value = output.get(self.voice_field)
        return value if isinstance(value, str) else None


VOICE_QUOTA = 1000
LIST_PAGE_SIZE_MAX = 1000

FAMILIES: dict[str, DesignFamily] = {
    COSYVOICE_FAMILY: DesignFamily(
        name=COSYVOICE_FAMILY,
        label="CosyVoice",
        enrollment_model=ENROLLMENT_MODEL,
        verbs={"create": "create_voice", "list": "list_voice", "query": "query_voice", "delete": "delete_voice"},
        voice_field="voice_id",
        name_field="prefix",
        name_re=PREFIX_RE,
        name_rule=f"1-{PREFIX_MAX} lowercase letters or digits",
        target_models=tuple(MODELS),
        regions=("cn-beijing",),  # [3.4]
        voice_prompt_max=VOICE_PROMPT_MAX,
        preview_text_max=PREVIEW_TEXT_MAX,
        languages=LANGUAGES,
        sample_rates=PREVIEW_SAMPLE_RATES,
        formats=PREVIEW_FORMATS,
        quota=VOICE_QUOTA,  # [3.5]
        design_price={},
        list_prefix_filter=True,
        list_page_size_max=LIST_PAGE_SIZE_MAX,  # [4.1]
    ),
    # [QVD] docs.qwencloud.com/api-reference/speech-synthesis/voice-design/{create,list,query,delete}-voice;
    # [QVD-AC] alibabacloud.com/help/en/model-studio/qwen-tts-voice-design (2026-03-15/31); contract §12.
    QWEN_FAMILY: DesignFamily(
        name=QWEN_FAMILY,
        label="Qwen3-TTS-VD",
        enrollment_model=QWEN_DESIGN_MODEL,
        verbs={"create": "create", "list": "list", "query": "query", "delete": "delete"},
        voice_field="voice",
        name_field="preferred_name",
        name_re=QWEN_NAME_RE,
        name_rule=f"1-{QWEN_NAME_MAX} letters, digits or underscores",
        target_models=(QWEN_VD, QWEN_VD_RT, QWEN_VD_RT_OLD),
        regions=("cn-beijing", "ap-southeast-1"),  # [VDG]: "Beijing and Singapore"
        voice_prompt_max=2048,  # Chinese or English only
        preview_text_max=1024,
        languages=("zh", "en", "de", "it", "pt", "es", "ja", "ko", "fr", "ru"),  # default zh
        sample_rates=(8000, 16000, 24000, 48000),  # default 24000
        formats=("pcm", "wav", "mp3", "opus"),  # default wav
        quota=1000,  # [VDG] (contract §11): 1000 Qwen-TTS voices, counted apart from CosyVoice's
        design_price={"USD": 0.2, "CNY": 0.2},  # USD [QPRICE] both regions; CNY the Chinese guide (§11)
        list_prefix_filter=False,  # list takes page_index/page_size only [QVD]
        list_page_size_max=100,  # undocumented for Qwen: a modest page (the samples ask for 10)
    ),
}
DESIGN_FAMILY_ORDER = (COSYVOICE_FAMILY, QWEN_FAMILY)


def family_of_model(target_model: str) -> DesignFamily | None:
    """The design family whose voices can be bound to ``target_model``, or None."""
    for family in FAMILIES.values():
        if target_model in family.target_models:
            return family
    return None


def family_name(target_model) -> str | None:
    """``family_of_model(...).name``: the family column of a take or a log frame (derived from
    the target model; the log stores no family of its own)."""
    family = family_of_model(target_model) if isinstance(target_model, str) else None
    return family.name if family else None


def family_of_voice(voice_id: str) -> DesignFamily | None:
    """The family of a designed voice id (Qwen names start ``qwen-tts-vd-``), or None."""
    if not isinstance(voice_id, str):
        return None
    if QWEN_VOICE_ID_RE.match(voice_id):
        return FAMILIES[QWEN_FAMILY]
    if VOICE_ID_RE.match(voice_id):
        return FAMILIES[COSYVOICE_FAMILY]
    return None


def prefix_of_voice(voice_id: str) -> str | None:
    """The prefix (CosyVoice) or preferred_name (Qwen) inside a designed voice id, or None."""
    m = QWEN_VOICE_ID_RE.match(voice_id or "") or VOICE_ID_RE.match(voice_id or "")
    return m.group("prefix") if m else None


# --- voice management [3.5, 4] -----------------------------------------------------------

LIST_PAGE_SIZE_DEFAULT = 10
STATUSES = ("DEPLOYING", "OK", "UNDEPLOYED")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # gmt_create / gmt_modified, UTC+8
SERVICE_UTC_OFFSET_HOURS = 8

# --- rate limits [3.6] -------------------------------------------------------------------

ENROLLMENT_RPS = 10.0  # all voice actions together, per key
SYNTHESIS_RPS = 3.0  # run-task submissions per key

# --- synthesis limits [6.1] --------------------------------------------------------------

SYNTH_FORMATS = ("pcm", "wav", "mp3", "opus")
SYNTH_SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
SYNTH_DEFAULT_FORMAT = "mp3"
SYNTH_DEFAULT_SAMPLE_RATE = 22050
SYNTH_VOLUME_RANGE = (0, 100)
SYNTH_RATE_RANGE = (0.5, 2.0)
SYNTH_PITCH_RANGE = (0.5, 2.0)
SYNTH_DEFAULT_VOLUME = 50
SYNTH_DEFAULT_RATE = 1.0
SYNTH_DEFAULT_PITCH = 1.0
SYNTH_SEED_RANGE = (0, 65535)
SYNTH_INSTRUCTION_MAX = 100  # CJK characters count 2
SYNTH_CONTINUE_MAX_CHARS = 20_000
SYNTH_TASK_MAX_CHARS = 200_000
SYNTH_GAP_SECONDS = 23.0
SYNTH_IDLE_SECONDS = 60.0


def is_cjk(ch: str) -> bool:
    """True for a CJK ideograph (the characters billed and counted as 2)."""
    o = ord(ch)
    return (
        0x4E00 <= o <= 0x9FFF
        or 0x3400 <= o <= 0x4DBF
        or 0x20000 <= o <= 0x2EBEF
        or 0xF900 <= o <= 0xFAFF
        or 0x30000 <= o <= 0x3134F
    )


def billed_characters(text: str) -> int:
    """Characters as the service bills them: each CJK ideograph counts 2, all else 1 [3.7]."""
    return sum(2 if is_cjk(c) else 1 for c in text)


def synthesis_cost_cny(model: str, characters: int) -> float:
    """Estimated synthesis cost in CNY for ``characters`` billed characters on ``model``."""
    return MODELS[model].price_cny_per_10k_chars * characters / 10_000


# --- what the log still reads from here (ours, not the service's; the log's owner moves them) ---

RATING_MIN, RATING_MAX = 1, 5  # the scale of a take's rating (the log's CHECK constraint says the same)
# Who rates and annotates: a ``rater=`` argument, else this variable, else the login name.
USER_ENV = "COSYVOICE_LAB_USER"
RATER_MAX_CHARS = 64  # a rater's name: 1-64 printable characters
RATING_KINDS = ("preference", "adherence")  # listening rounds (the ratings table's CHECK says the same)
BLIND_SEED_BITS = 31  # a blind round's shuffle seed: 0 <= seed < 2**31 (an INTEGER in every database)
STALE_PENDING_S = 3600.0  # age after which another host's pending take counts as abandoned (>> create timeout)
LOG_BUSY_TIMEOUT_S = 30.0  # how long a log write waits for another writer before failing
# A bundle (log/bundle.py) is untrusted input: what one may hold before it is refused unread.
BUNDLE_MAX_MEMBERS = 200_000  # files in the zip (tables + audio)
BUNDLE_MAX_BYTES = 4 * 1024**3  # their total uncompressed size (the sizes the zip declares)
BUNDLE_MAX_TABLE_BYTES = 256 * 1024**2  # one JSON table, uncompressed
# one audio file: a preview is under 1 MB, an hour of speech as a 24 kHz WAV about 170 MB. A larger
# member (a 1 GiB one in a 1 MB zip) is refused from the zip's directory, never unpacked.
BUNDLE_MAX_AUDIO_BYTES = 256 * 1024**2
BUNDLE_MAX_ROWS = 200_000  # rows in one table
BUNDLE_MAX_TEXT_CHARS = 20_000  # one free text (notes, error message, prompt, utterance text...)
BUNDLE_MAX_NAME_CHARS = 200  # one short text (experiment, cell, host, author, tag, request id...)
BUNDLE_MAX_TAGS = 100  # tags on one take
SHARE_AUDIO_KBPS = 24  # the HTML report's previews: Opus, mono, a speech bit rate (log/export.py, views/report.py)
LOG_COPY_CHUNK_TAKES = 500  # takes per slice of a `log copy` (one bundle, one transaction in DST)
