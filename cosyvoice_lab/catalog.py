"""The one source of truth for models, regions, endpoints, limits and prices.

The validator (``design.py``), the client (``client.py``, ``synthesis.py``) and the offline
simulator (``offline/``) all read these values; no limit is written anywhere else.
Figures follow ``dashscope-contract.md`` (sections in brackets).
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
DEFAULT_MODEL = V35_PLUS
COMPARE_MODELS = (V35_PLUS, V35_FLASH)

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


def design_models(region: str) -> tuple[str, ...]:
    """Models whose voices can be designed in ``region`` (empty for Singapore)."""
    return tuple(m.name for m in MODELS.values() if region in m.regions)


# --- wire constants [2.1, 6.1] -----------------------------------------------------------

ENROLLMENT_MODEL = "voice-enrollment"
CUSTOMIZATION_PATH = "/services/audio/tts/customization"  # appended to the HTTP base
HTTP_API_ROOT = "/api/v1"  # the path of the HTTP base on every host (and on the simulator)
WS_PATH = "/api-ws/v1/inference"
ACTIONS = ("create_voice", "list_voice", "query_voice", "update_voice", "delete_voice")

# --- design limits [3.1, 3.2, 2.2] -------------------------------------------------------

PREFIX_MAX = 10
PREFIX_RE = re.compile(rf"^[a-z0-9]{{1,{PREFIX_MAX}}}$")
VOICE_PROMPT_MAX = 500
PREVIEW_TEXT_MAX = 200
LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"  # the service's default when language_hints is absent
PREVIEW_SAMPLE_RATES = (16000, 24000, 48000)
DEFAULT_PREVIEW_SAMPLE_RATE = 24000
PREVIEW_FORMATS = ("wav", "mp3", "pcm")
DEFAULT_PREVIEW_FORMAT = "wav"
DEFAULT_PREFIX = "lab"

# voice id of a designed voice [3.3]
VOICE_ID_RE = re.compile(
    rf"^(?P<model>cosyvoice-v[0-9.]+-(?:plus|flash))-vd-(?P<prefix>[a-z0-9]{{1,{PREFIX_MAX}}})-(?P<uid>[0-9a-f]{{32}})$"
)


def model_of_voice(voice_id: str) -> str | None:
    """The target model encoded in a designed voice id, or None if the id is not one."""
    m = VOICE_ID_RE.match(voice_id or "")
    return m.group("model") if m else None


# --- voice management [3.5, 4] -----------------------------------------------------------

VOICE_QUOTA = 1000
LIST_PAGE_SIZE_MAX = 1000
LIST_PAGE_SIZE_DEFAULT = 10
STATUSES = ("DEPLOYING", "OK", "UNDEPLOYED")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # gmt_create / gmt_modified, UTC+8
SERVICE_UTC_OFFSET_HOURS = 8

# --- rate limits [3.6] -------------------------------------------------------------------

ENROLLMENT_RPS = 10.0  # all voice actions together, per key
SYNTHESIS_RPS = 3.0  # run-task submissions per key
DEFAULT_CLIENT_RPS = 5.0  # what the runner allows itself by default: well under the limit

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

# --- timeouts (client side) --------------------------------------------------------------

CREATE_TIMEOUT_S = 90.0  # official sample 60 s, public code 90 s [2.1]
MANAGE_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0
SYNTH_RECV_TIMEOUT_S = 30.0  # longest silence tolerated between two WebSocket messages of a task
VOICE_READY_TIMEOUT_S = 60.0  # how long to poll query_voice for a DEPLOYING voice [4.5]
VOICE_READY_INTERVAL_S = 2.0

# --- retries (client side; service/retry.py) ----------------------------------------------

RETRY_MAX_ATTEMPTS = 4  # attempts in all, the first included
RETRY_BASE_DELAY_S = 0.5  # full jitter: sleep uniform(0, min(max, base * 2**n))
RETRY_MAX_DELAY_S = 8.0
RETRY_AFTER_MAX_S = 60.0  # a longer Retry-After is capped: better fail than hang a notebook
THROTTLED_WAIT_S = 1.0  # after a throttled task-failed (which carries no Retry-After); limits are per second

# --- the lab's defaults (lab/, widgets/, cli) ----------------------------------------------

DEFAULT_CONCURRENCY = 4  # requests a Lab keeps in flight at once (compare, design n>1, the PromptBuilder)
DEFAULT_REPEATS = 3  # designs per prompt and model in a compare: enough to hear the variation
RATING_MIN, RATING_MAX = 1, 5  # the scale of a take's rating (the log's CHECK constraint says the same)
RECONCILE_WINDOW_S = 120.0  # how far a listed voice's gmt_create may sit from our send time to be adopted
# What a preview reads when no preview text is given, by language (a design's language follows it).
DEFAULT_PREVIEW_TEXT = {
    "en": "Hello! This is a preview of a newly designed voice. How does it sound to you?",
    "zh": "大家好，这是新设计的声音的试听。你觉得听起来怎么样？",
}

# --- the experiment log (log/) -------------------------------------------------------------

STALE_PENDING_S = 3600.0  # age after which another host's pending take counts as abandoned (>> create timeout)
LOG_BUSY_TIMEOUT_S = 30.0  # how long a log write waits for another writer before failing

# --- the offline simulator -----------------------------------------------------------------

# The one key the in-process simulator accepts when none is given. Documented, not secret:
# it only ever unlocks a server on 127.0.0.1.
OFFLINE_API_KEY = "sk-offline-cosyvoice-lab"
# The service's HTTP limits are undocumented; the simulator's: a design request is a few KB, so
# a body above 1 MiB is answered 413, and a request whose headers or body do not arrive within
# the read timeout is answered 408 (body) or closed (headers).
OFFLINE_MAX_BODY_BYTES = 1024 * 1024
OFFLINE_READ_TIMEOUT_S = 30.0
# Synthesis timing [WS, contract §11]: first audio 200-800 ms after the text, real-time factor
# 0.1-0.5 (seconds of work per second of audio); the simulator draws within these ranges.
SYNTH_FIRST_AUDIO_S = (0.2, 0.8)
SYNTH_REALTIME_FACTOR = (0.1, 0.5)


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
