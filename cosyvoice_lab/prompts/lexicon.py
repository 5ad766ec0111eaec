"""The descriptive words of voice prompts, in English and Chinese, and what they claim.

One lexicon serves three readers: ``prompts.PromptSpec`` renders descriptions from it, the
offline simulator turns a prompt's claims into engine settings, and ``analysis`` checks a
recording against the claims of its prompt. Negation ("not too fast") is not understood: a
claim is read from the words present, which is also why adherence reports say "consistent",
"inconsistent" or "not measurable" rather than pass/fail.

The first six dimensions (gender, age, pitch, pace, energy, volume) steer the simulator; the
rest (timbre, emotion, articulation, accent, scenario) are read so that nothing a prompt says
is silently dropped, and so that every value ``prompts.PromptSpec`` offers is understood.
Which words ``analysis`` can check, and on which measure, is ``analysis.correlates``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

# dimension -> value -> (English words, Chinese words). English words match on word
# boundaries, case-insensitively; Chinese words match as substrings.
LEXICON: dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "gender": {
        "male": (
            (
                "male",
                "man",
                "men",
                "boy",
                "gentleman",
                "masculine",
                "father",
                "grandfather",
                "grandpa",
                "guy",
                "he",
                "his",
            ),
            ("男", "大叔", "爷爷", "先生", "父亲"),
        ),
        "female": (
            ("female", "woman", "women", "girl", "lady", "feminine", "mother", "grandmother", "grandma", "she", "her"),
            ("女", "阿姨", "奶奶", "妈妈", "姐姐", "母亲"),
        ),
    },
    "age": {
        "child": (
            ("child", "children", "kid", "little boy", "little girl", "childlike", "toddler"),
            ("儿童", "小孩", "孩子", "童声", "小男孩", "小女孩", "孩童"),
        ),
        "young": (
            ("young", "youthful", "teenage", "teenager", "twenties", "in her 20s", "in his 20s"),
            ("年轻", "青年", "少女", "少年", "青春"),
        ),
        "middle-aged": (
            (
                "middle-aged",
                "middle aged",
                "forties",
                "fifties",
                "in his 40s",
                "in her 40s",
                "in his 50s",
                "in her 50s",
                "mature",
            ),
            ("中年", "成熟"),
        ),
        "elderly": (
            (
                "elderly",
                "old",
                "older",
                "aged",
                "senior",
                "seventies",
                "eighties",
                "grandfather",
                "grandmother",
                "grandpa",
                "grandma",
            ),
            ("老年", "老人", "年迈", "苍老", "爷爷", "奶奶", "老者"),
        ),
    },
    "pitch": {
        "low": (
            ("deep", "low", "low-pitched", "bass", "baritone", "booming", "resonant", "gravelly"),
            ("低沉", "浑厚", "低音", "深沉", "厚重", "低哑"),
        ),
        "high": (
            (
                "high-pitched",
                "high pitched",
                "high pitch",
                "high voice",
                "shrill",
                "squeaky",
                "piping",
                "soprano",
                "bright",
            ),
            ("高亢", "尖细", "高音", "清亮", "尖锐", "明亮", "清脆"),
        ),
    },
    "pace": {
        "slow": (
            ("slow", "slowly", "unhurried", "leisurely", "measured", "drawling", "deliberate"),
            ("缓慢", "语速慢", "较慢", "偏慢", "稍慢", "舒缓", "从容", "徐缓"),
        ),
        "fast": (
            ("fast", "quick", "quickly", "rapid", "rapidly", "brisk", "hurried", "speedy"),
            ("语速快", "快速", "急促", "飞快", "较快", "偏快", "稍快"),
        ),
    },
    "energy": {
        "calm": (
            ("calm", "steady", "composed", "serene", "soothing", "relaxed", "gentle", "peaceful"),
            ("沉稳", "平静", "温和", "冷静", "平和", "温柔", "安静"),
        ),
        "lively": (
            ("lively", "energetic", "excited", "cheerful", "enthusiastic", "vivid", "animated", "bubbly", "passionate"),
            ("活泼", "热情", "激昂", "兴奋", "欢快", "充满活力", "开朗"),
        ),
    },
    "volume": {
        "soft": (
            ("soft", "softly", "quiet", "quietly", "whisper", "whispering", "hushed", "murmuring"),
            ("轻声", "低声", "耳语", "细声", "小声"),
        ),
        "loud": (
            ("loud", "loudly", "booming", "powerful", "projecting", "shouting", "sonorous"),
            ("洪亮", "响亮", "大声", "高声", "嘹亮"),
        ),
    },
    # The dimensions below do not steer the engine's settings. Timbre and emotion words with
    # an acoustic correlate (breathy, husky, bright, warm, calm, cheerful ...) are judged on
    # voice-quality measures (``analysis.correlates`` maps each to its measure and direction;
    # the simulator renders the main timbre words); the rest are read so that adherence reports
    # list them as "not measurable" rather than silently ignore them.
    "timbre": {
        "warm": (("warm",), ("温暖",)),
        "bright": (("bright",), ("明亮",)),  # also a pitch word: bright voices sound higher
        "husky": (("husky", "raspy", "hoarse", "smoky"), ("沙哑", "嘶哑", "烟嗓")),
        "magnetic": (("magnetic",), ("磁性",)),
        "clear": (("clear", "crystal-clear"), ("清澈", "干净")),
        "breathy": (("breathy", "airy"), ("气声", "气息感", "气音")),
        "rich": (("rich", "full-bodied"), ("饱满",)),
        "smooth": (("smooth", "silky"), ("圆润", "丝滑")),
        "sweet": (("sweet",), ("甜美",)),
        "mellow": (("mellow",), ("柔和", "醇厚")),
        "metallic": (("metallic",), ("金属感",)),
    },
    "emotion": {
        "calm": (("calm",), ("沉稳",)),
        "lively": (("lively",), ("活泼",)),
        "cheerful": (("cheerful",), ("开朗",)),
        "gentle": (("gentle",), ("温柔",)),
        "friendly": (("friendly",), ("亲切",)),
        "serious": (("serious",), ("严肃",)),
        "authoritative": (("authoritative",), ("权威",)),
        "confident": (("confident",), ("自信",)),
        "excited": (("excited",), ("兴奋",)),
        "playful": (("playful",), ("俏皮",)),
        "sad": (("sad", "melancholy"), ("忧伤", "悲伤")),
        "mysterious": (("mysterious",), ("神秘",)),
        "menacing": (("menacing", "sinister"), ("阴险", "阴森")),
        "solemn": (("solemn",), ("庄重",)),
    },
    "articulation": {
        # "clear" alone is a timbre word; articulation needs the fuller phrases.
        "clear": (
            (
                "careful enunciation",
                "distinct enunciation",
                "enunciates clearly",
                "clearly enunciated",
                "clear articulation",
                "clear diction",
            ),
            ("吐字清晰", "口齿清晰", "咬字清晰"),
        ),
        "crisp": (("crisp", "precise diction"), ("字正腔圆",)),
        "conversational": (("conversational", "casual"), ("口语化", "自然随意")),
        "expressive": (("expressive", "dramatic"), ("抑扬顿挫", "富有表现力")),
    },
    "accent": {
        "standard-mandarin": (("standard mandarin", "putonghua"), ("标准普通话", "普通话标准")),
        "beijing": (("beijing accent",), ("北京口音", "京腔", "京片子")),
        "taiwanese": (("taiwanese",), ("台湾腔", "台湾口音")),
        "cantonese": (("cantonese",), ("粤语口音", "广东口音", "港式")),
        "sichuan": (("sichuan accent", "sichuanese"), ("四川口音", "四川话")),
        "northeastern": (("northeastern chinese", "dongbei"), ("东北口音", "东北腔")),
        "american": (("american accent", "american english", "general american"), ("美式英语", "美式口音", "美国口音")),
        "british": (
            ("british accent", "british english", "received pronunciation"),
            ("英式英语", "英式口音", "英国口音"),
        ),
        "australian": (("australian accent", "australian english"), ("澳洲口音", "澳大利亚口音")),
    },
    "scenario": {
        "news": (("news",), ("新闻",)),
        "audiobook": (("audiobook", "audiobooks"), ("有声书", "有声读物")),
        "customer-service": (("customer service",), ("客服",)),
        "storytelling": (
            ("bedtime stories", "bedtime story", "storytelling", "storyteller"),
            ("睡前故事", "讲故事", "故事讲述"),
        ),
        "game": (("video game", "game character"), ("游戏",)),
        "documentary": (("documentary",), ("纪录片",)),
        "advertising": (("advertising", "commercial", "commercials"), ("广告",)),
        "e-learning": (("online course", "online courses", "e-learning", "tutorials"), ("在线课程", "教学")),
        "assistant": (("voice assistant", "voice assistants"), ("语音助手", "智能助手")),
        "podcast": (("podcast", "podcasts"), ("播客",)),
        "meditation": (("meditation",), ("冥想",)),
    },
}


@dataclass(frozen=True)
class Claim:
    """One thing a prompt says about the voice: ``dimension`` = ``value``, from ``words``."""

    dimension: str
    value: str
    words: tuple[str, ...]


@cache
def _english_pattern(word: str) -> re.Pattern:
    return re.compile(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])", re.IGNORECASE)


def _hits(text: str, en: tuple[str, ...], zh: tuple[str, ...]) -> list[str]:
    found = [w for w in en if _english_pattern(w).search(text)]
    found += [w for w in zh if w in text]
    return found


def read_claims(voice_prompt: str) -> dict[str, Claim]:
    """What ``voice_prompt`` claims, one value per dimension.

    When words for two values of one dimension appear ("deep ... bright"), the value with more
    matching words wins; a tie goes to the value listed first in the lexicon.
    """
    claims: dict[str, Claim] = {}
    for dimension, values in LEXICON.items():
        best: Claim | None = None
        for value, (en, zh) in values.items():
            hits = _hits(voice_prompt, en, zh)
            if hits and (best is None or len(hits) > len(best.words)):
                best = Claim(dimension, value, tuple(hits))
        if best is not None:
            claims[dimension] = best
    return claims
