"""The one source of truth for models, regions, endpoints, limits and prices.

The validator (``design.py``), the client (``client.py``, ``synthesis.py``) and the offline
simulator (``offline/``) all read these values; no limit is written anywhere else.
Figures follow ``dashscope-contract.md`` (sections in brackets).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

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
SHARE_AUDIO_KBPS = 24  # the HTML report's previews: Opus, mono, a speech bit rate (WAVs stay in the log)
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
        quota=1000,  # VOICE_QUOTA [3.5]
        design_price={},
        list_prefix_filter=True,
        list_page_size_max=1000,  # LIST_PAGE_SIZE_MAX [4.1]
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

VOICE_QUOTA = 1000
LIST_PAGE_SIZE_MAX = 1000
LIST_PAGE_SIZE_DEFAULT = 10
STATUSES = ("DEPLOYING", "OK", "UNDEPLOYED")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # gmt_create / gmt_modified, UTC+8
SERVICE_UTC_OFFSET_HOURS = 8

# --- rate limits [3.6] -------------------------------------------------------------------

ENROLLMENT_RPS = 10.0  # all voice actions together, per key
SYNTHESIS_RPS = 3.0  # run-task submissions per key
# What a Lab allows itself by default: the documented limit minus a margin for jitter. With the
# client's window CLIENT_WINDOW_SLACK_S longer than the service's, 9/s sends at most 9 in any 1.1 s
# (about 8.2/s), so requests that arrive a little bunched still never pass 10 in one second.
CLIENT_RPS_MARGIN = 1.0
DEFAULT_CLIENT_RPS = ENROLLMENT_RPS - CLIENT_RPS_MARGIN
CLIENT_WINDOW_SLACK_S = 0.1
# Processes on one machine using the same key share its budget through a small file in a per-user
# runtime folder ($XDG_RUNTIME_DIR/cosyvoice-lab, else <tmp>/cosyvoice-lab-<uid>), named by a hash
# of the key and host (never the key). COSYVOICE_LAB_RUNTIME_DIR overrides the folder.
RUNTIME_DIR_NAME = "cosyvoice-lab"
SHARED_WINDOW_STALE_S = 86400.0  # a shared window file unused this long is removed

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
SYNTH_REUSE_IDLE_S = 45.0  # a kept synthesis connection idle longer is not reused (the service closes at 60 s)

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

# Requests a Lab keeps in flight (compare, design n>1, the PromptBuilder): sized by the runner
# itself (lab/runner.py, service/ratelimit.ConcurrencyController) by Little's law, in flight =
# rate x latency x CONCURRENCY_HEADROOM, halved on 429; never above MAX_CONCURRENCY (threads and
# connections; 9/s x 8 s designs x 1.25 = 90) nor above a Lab's ``concurrency=`` when one is given.
DEFAULT_CONCURRENCY: int | None = None  # None: no bound but MAX_CONCURRENCY
MAX_CONCURRENCY = 100
CONCURRENCY_HEADROOM = 1.25  # latencies jitter; a task waiting for the limiter costs only a thread
CONCURRENCY_CUT_INTERVAL_S = 1.0  # 429s closer together than this (or one latency) are one signal
DEFAULT_REPEATS = 3  # designs per prompt and model in a compare: enough to hear the variation
RATING_MIN, RATING_MAX = 1, 5  # the scale of a take's rating (the log's CHECK constraint says the same)
RECONCILE_WINDOW_S = 120.0  # how far a listed voice's gmt_create may sit from our send time to be adopted
# A take whose create outcome is unknown stays 'unknown' until a listing made this long after it
# was sent finds no voice (the service's designs take seconds; a voice can be stored after the
# client gave up).
LATE_VOICE_GRACE_S = 60.0
# What a preview reads when no preview text is given, by language (a design's language follows it).
DEFAULT_PREVIEW_TEXT = {
    "en": "Hello! This is a preview of a newly designed voice. How does it sound to you?",
    "zh": "大家好，这是新设计的声音的试听。你觉得听起来怎么样？",
}

# --- the experiment log (log/) -------------------------------------------------------------

# The one default lab folder, shared by Lab(), the notebooks and the CLI (see default_lab_folder).
LAB_HOME_ENV = "COSYVOICE_LAB_HOME"
# The default log when none is given: a folder, or a team's postgresql:// URL (see default_log).
LOG_ENV = "COSYVOICE_LAB_LOG"
# Who rates and annotates: a ``rater=`` argument, else this variable, else the login name.
USER_ENV = "COSYVOICE_LAB_USER"
RATER_MAX_CHARS = 64  # a rater's name: 1-64 printable characters
RATING_KINDS = ("preference", "adherence")  # listening rounds (the ratings table's CHECK says the same)
BLIND_SEED_BITS = 31  # a blind round's shuffle seed: 0 <= seed < 2**31 (an INTEGER in every database)
CHECKOUT_LAB_FOLDER = "lab-data"  # in a checkout of this repository; git-ignored
USER_LAB_FOLDER = ("cosyvoice-lab",)  # under $XDG_DATA_HOME (default ~/.local/share) elsewhere

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
LOG_COPY_CHUNK_TAKES = 500  # takes per slice of a `log copy` (one bundle, one transaction in DST)

# --- the listening panel (panel/) ----------------------------------------------------------------
PANEL_HOST = "127.0.0.1"  # loopback unless asked: another address serves other machines and needs the token
PANEL_PORT = 8770
PANEL_TOKEN_BYTES = 24  # random bytes of the join token (secrets.token_urlsafe: 32 characters)
PANEL_MAX_BODY_BYTES = 4096  # a rating request is ~100 bytes; larger bodies are answered 413
SERVER_STOP_TIMEOUT_S = 10.0  # a background server (panel, simulator) stopping: its shutdown, then its thread

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


def default_lab_folder(cwd: str | os.PathLike | None = None) -> Path:
    """The lab folder used when none is given, the same for ``Lab()``, the notebooks and the CLI.

    In order: ``$COSYVOICE_LAB_HOME``; else ``lab-data/`` at the root of this repository when
    ``cwd`` (default: the current directory) is inside a checkout of it (the notebooks run in
    ``notebooks/``, the CLI from the root: one log); else ``$XDG_DATA_HOME/cosyvoice-lab``
    (``~/.local/share/cosyvoice-lab``). Read when called, never at import.
    """
    if os.environ.get(LAB_HOME_ENV):
        return Path(os.environ[LAB_HOME_ENV]).expanduser()
    here = Path(cwd if cwd is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if _is_checkout(folder):
            return folder / CHECKOUT_LAB_FOLDER
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data, *USER_LAB_FOLDER)


def default_log() -> str | Path:
    """The log used when no folder or log is given (``Lab()``, the CLI): ``$COSYVOICE_LAB_LOG``
    (a folder, or a ``postgresql://`` URL a team shares), else ``default_lab_folder()``."""
    given = os.environ.get(LOG_ENV, "").strip()
    return given if given else default_lab_folder()


def log_location(folder: str | os.PathLike | None = None, log: str | os.PathLike | None = None) -> str | os.PathLike:
    """Where the log is, the one rule for ``Lab`` and the CLI: ``log`` if given (a folder or a
    ``postgresql://`` URL), else ``folder``, else ``default_log()``."""
    if log is not None:
        return log
    return folder if folder is not None else default_log()


def _is_checkout(folder: Path) -> bool:
    pyproject = folder / "pyproject.toml"
    if not (pyproject.is_file() and (folder / "cosyvoice_lab").is_dir()):
        return False
    return re.search(r'(?m)^name\s*=\s*"cosyvoice-lab"', pyproject.read_text(encoding="utf-8")) is not None


# --- evidence (analysis/stats.py, views/evidence.py) -------------------------------------------------
EVIDENCE_ALPHA = 0.05  # two-sided error rate of every interval and test: 95 % intervals
EVIDENCE_POWER = 0.8  # the power "what to do next" plans repeats for
EVIDENCE_MAX_REPEATS = 200  # repeats per cell above which "what to do next" gives up
