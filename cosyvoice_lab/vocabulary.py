"""The descriptive words of voice prompts, in English and Chinese, and what they claim.

One lexicon serves three readers: ``prompts.PromptSpec`` renders descriptions from it, the
offline simulator turns a prompt's claims into engine settings, and ``analysis`` checks a
recording against the claims of its prompt. Negation ("not too fast") is not understood: a
claim is read from the words present, which is also why adherence reports say "consistent",
"inconsistent" or "not measurable" rather than pass/fail.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

# dimension -> value -> (English words, Chinese words). English words match on word
# boundaries, case-insensitively; Chinese words match as substrings.
LEXICON: dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "gender": {
        "male": (("male", "man", "men", "boy", "gentleman", "masculine", "father", "grandfather",
                  "grandpa", "guy", "he", "his"),
                 ("男", "大叔", "爷爷", "先生", "父亲")),
        "female": (("female", "woman", "women", "girl", "lady", "feminine", "mother", "grandmother",
                    "grandma", "she", "her"),
                   ("女", "阿姨", "奶奶", "妈妈", "姐姐", "母亲")),
    },
    "age": {
        "child": (("child", "children", "kid", "little boy", "little girl", "childlike", "toddler"),
                  ("儿童", "小孩", "孩子", "童声", "小男孩", "小女孩", "孩童")),
        "young": (("young", "youthful", "teenage", "teenager", "twenties", "in her 20s", "in his 20s"),
                  ("年轻", "青年", "少女", "少年", "青春")),
        "middle-aged": (("middle-aged", "middle aged", "forties", "fifties", "in his 40s", "in her 40s",
                         "in his 50s", "in her 50s", "mature"),
                        ("中年", "成熟")),
        "elderly": (("elderly", "old", "older", "aged", "senior", "seventies", "eighties", "grandfather",
                     "grandmother", "grandpa", "grandma"),
                    ("老年", "老人", "年迈", "苍老", "爷爷", "奶奶", "老者")),
    },
    "pitch": {
        "low": (("deep", "low", "low-pitched", "bass", "baritone", "booming", "resonant", "gravelly"),
                ("低沉", "浑厚", "低音", "深沉", "厚重", "低哑")),
        "high": (("high-pitched", "high pitched", "high pitch", "high voice", "shrill", "squeaky",
                  "piping", "soprano", "bright"),
                 ("高亢", "尖细", "高音", "清亮", "尖锐", "明亮", "清脆")),
    },
    "pace": {
        "slow": (("slow", "slowly", "unhurried", "leisurely", "measured", "drawling", "deliberate"),
                 ("缓慢", "语速慢", "较慢", "偏慢", "稍慢", "舒缓", "从容", "徐缓")),
        "fast": (("fast", "quick", "quickly", "rapid", "rapidly", "brisk", "hurried", "speedy"),
                 ("语速快", "快速", "急促", "飞快", "较快", "偏快", "稍快")),
    },
    "energy": {
        "calm": (("calm", "steady", "composed", "serene", "soothing", "relaxed", "gentle", "peaceful"),
                 ("沉稳", "平静", "温和", "冷静", "平和", "温柔", "安静")),
        "lively": (("lively", "energetic", "excited", "cheerful", "enthusiastic", "vivid", "animated",
                    "bubbly", "passionate"),
                   ("活泼", "热情", "激昂", "兴奋", "欢快", "充满活力", "开朗")),
    },
    "volume": {
        "soft": (("soft", "softly", "quiet", "quietly", "whisper", "whispering", "hushed", "murmuring"),
                 ("轻声", "低声", "耳语", "细声", "小声")),
        "loud": (("loud", "loudly", "booming", "powerful", "projecting", "shouting", "sonorous"),
                 ("洪亮", "响亮", "大声", "高声", "嘹亮")),
    },
}

# Dimensions an offline measurement can check (see analysis.adherence).
MEASURABLE = ("pitch", "pace", "volume", "gender", "age")


@dataclass(frozen=True)
class Claim:
    """One thing a prompt says about the voice: ``dimension`` = ``value``, from ``words``."""

    dimension: str
    value: str
    words: tuple[str, ...]


@lru_cache(maxsize=None)
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
