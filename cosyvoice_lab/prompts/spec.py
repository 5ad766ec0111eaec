"""PromptSpec: a structured voice description that renders to a concrete zh or en voice prompt.

CosyVoice voice design works best with concrete descriptions that name gender, age, pitch,
pace, timbre, emotion and use ("a calm, deep middle-aged male narrator ..."). A PromptSpec
holds one value per dimension, each drawn from :data:`vocabulary.LEXICON`, and ``render``
writes a fluent sentence from them. Rendered prompts are built so that
``vocabulary.read_claims`` reads back exactly the values they were made from, which is what
lets the offline simulator follow them and ``analysis.checks`` check them.

One implication is deliberate: a ``bright`` timbre is also a high-pitch word in the lexicon
(bright voices sound higher), so a spec with ``timbre="bright"`` and no pitch reads as
high-pitched. An explicit pitch always wins, because it is rendered with two pitch words.

Usage::

    spec = PromptSpec.preset("audiobook_narrator").replace(pace="fast")
    spec.render("zh")
    [s.render() for s in spec.variants("pitch")]
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from cosyvoice_lab import catalog, jsontext
from cosyvoice_lab.prompts.lexicon import LEXICON
from cosyvoice_lab.prompts.presets import PRESET_FIELDS

DIMENSIONS = ("gender", "age", "pitch", "pace", "volume", "timbre", "emotion", "articulation", "accent", "scenario")
FIELDS = (*DIMENSIONS, "free_text")

# Dimension values whose words also claim another dimension (see the module docstring).
IMPLIED = {("timbre", "bright"): ("pitch", "high")}

# --- phrases: value -> (English, Chinese), each shaped for the slot it fills in ``render`` ---
# Pitch, pace and volume use two lexicon words where another dimension could contribute a
# competing word (a "bright" timbre), so the stated value always outvotes it in read_claims.
_PITCH = {"low": ("deep, low-pitched", "低沉浑厚"), "high": ("high-pitched", "高亢清亮")}
_PACE = {"slow": ("at a slow, unhurried pace", "语速缓慢从容"), "fast": ("at a fast, brisk pace", "语速较快")}
_VOLUME = {"soft": ("in a soft, hushed voice", "说话轻声细语"), "loud": ("in a loud, projecting voice", "声音洪亮")}
_TIMBRE = {
    "warm": ("warm", "温暖"),
    "bright": ("bright", "明亮"),
    "husky": ("husky", "沙哑"),
    "magnetic": ("magnetic", "富有磁性"),
    "clear": ("clear", "清澈"),
    "breathy": ("breathy", "带着气声"),
    "rich": ("rich", "饱满"),
    "smooth": ("smooth", "圆润"),
    "sweet": ("sweet", "甜美"),
    "mellow": ("mellow", "柔和"),
    "metallic": ("metallic", "带有金属感"),
}
_EMOTION = {
    "calm": ("calm", "沉稳"),
    "lively": ("lively", "活泼"),
    "cheerful": ("cheerful", "开朗"),
    "gentle": ("gentle", "温柔"),
    "friendly": ("friendly", "亲切"),
    "serious": ("serious", "严肃"),
    "authoritative": ("authoritative", "有权威感"),
    "confident": ("confident", "自信"),
    "excited": ("excited", "兴奋"),
    "playful": ("playful", "俏皮"),
    "sad": ("melancholy", "忧伤"),
    "mysterious": ("mysterious", "神秘"),
    "menacing": ("menacing", "阴险"),
    "solemn": ("solemn", "庄重"),
}
_ARTICULATION = {
    "clear": ("with distinct, careful enunciation", "吐字清晰"),
    "crisp": ("with crisp, precise diction", "字正腔圆"),
    "conversational": ("in a casual, conversational way", "表达口语化、自然随意"),
    "expressive": ("with expressive, dramatic delivery", "抑扬顿挫、富有表现力"),
}
_ACCENT = {
    "standard-mandarin": ("with standard Mandarin pronunciation", "说一口标准普通话"),
    "beijing": ("with a Beijing accent", "带有北京口音"),
    "taiwanese": ("with a Taiwanese Mandarin accent", "带有台湾腔"),
    "cantonese": ("with a Cantonese accent", "带有粤语口音"),
    "sichuan": ("with a Sichuan accent", "带有四川口音"),
    "northeastern": ("with a Northeastern Chinese accent", "带有东北口音"),
    "american": ("with an American English accent", "带有美式英语口音"),
    "british": ("with a British English accent", "带有英式英语口音"),
    "australian": ("with an Australian accent", "带有澳洲口音"),
}
# scenario -> (English use, Chinese use, English role noun, Chinese role noun)
_SCENARIO = {
    "news": ("news broadcasts", "新闻播报", "news anchor", "新闻主播"),
    "audiobook": ("audiobook narration", "有声书朗读", "narrator", "朗读者"),
    "customer-service": ("customer service calls", "客服热线", "customer service agent", "客服代表"),
    "storytelling": ("bedtime stories", "讲睡前故事", "storyteller", "故事讲述者"),
    "game": ("video game characters", "游戏角色配音", "video game character", "游戏角色"),
    "documentary": ("documentary narration", "纪录片解说", "documentary narrator", "纪录片解说员"),
    "advertising": ("advertising voice-overs", "广告配音", "voice-over artist", "广告配音员"),
    "e-learning": ("online courses and tutorials", "在线课程讲解", "instructor", "讲师"),
    "assistant": ("voice assistants", "语音助手", "voice assistant", "语音助手"),
    "podcast": ("podcasts", "播客节目", "podcast host", "播客主播"),
    "meditation": ("guided meditation", "冥想引导", "meditation guide", "冥想引导师"),
}
_GENDER = {"male": ("male", "男性"), "female": ("female", "女性")}
_PERSON = {"male": "man", "female": "woman", None: "speaker"}
_CHILD = {"male": ("little boy", "小男孩"), "female": ("little girl", "小女孩"), None: ("child", "孩子")}
_AGE = {"young": ("young", "年轻"), "middle-aged": ("middle-aged", "中年"), "elderly": ("elderly", "老年")}
_SUBJECT = {"male": "He speaks", "female": "She speaks", None: "They speak"}

_PHRASES: dict[str, dict] = {
    "pitch": _PITCH,
    "pace": _PACE,
    "volume": _VOLUME,
    "timbre": _TIMBRE,
    "emotion": _EMOTION,
    "articulation": _ARTICULATION,
    "accent": _ACCENT,
    "scenario": _SCENARIO,
    "gender": _GENDER,
    "age": {**_AGE, "child": _CHILD[None]},
}


def _allowed(dimension: str) -> tuple[str, ...]:
    # Only values that have both lexicon words and phrases: the round trip needs both.
    return tuple(v for v in LEXICON[dimension] if v in _PHRASES[dimension])


def _check_dimension(dimension: str, *, free: bool = True) -> None:
    names = FIELDS if free else DIMENSIONS
    if dimension not in names:
        raise ValueError(f"unknown dimension {dimension!r}; valid dimensions: {', '.join(names)}")


def _check_language(language: str) -> None:
    if language not in catalog.LANGUAGES:
        raise ValueError(f"language must be one of {catalog.LANGUAGES}, got {language!r}")


def options(dimension: str, language: str = "en") -> list[tuple[str, str]]:
    """The values a dimension offers, as ``(label, value)`` pairs for a dropdown.

    Args:
        dimension: one of :data:`DIMENSIONS`.
        language: 'en' or 'zh', the language of the labels.

    Returns:
        ``[(label, value), ...]`` in lexicon order; ``value`` is what PromptSpec takes.

    Raises:
        ValueError: for an unknown dimension (including ``free_text``, which is free) or language.
    """
    _check_dimension(dimension, free=False)
    _check_language(language)
    if language == "zh":  # the first Chinese lexicon word: short, and understood by read_claims
        return [(LEXICON[dimension][v][1][0], v) for v in _allowed(dimension)]
    return [(v if v in LEXICON[dimension][v][0] else v.replace("-", " "), v) for v in _allowed(dimension)]


def _article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def _with_free_text(text: str, free_text: str | None, language: str) -> str:
    """A rendered description with the free text after it, joined as the language reads."""
    extra = (free_text or "").strip()
    if not extra:
        return text
    if language == "zh":
        return text + extra
    if extra[0].islower() and text.endswith("."):  # "with a slight rasp" continues the last sentence
        return f"{text[:-1]}, {extra}" + ("" if extra[-1] in ".!?" else ".")
    return f"{text} {extra}"


@dataclass(frozen=True)
class PromptSpec:
    """A structured voice description; every dimension optional (None = unspecified).

    Args:
        gender, age, pitch, pace, volume, timbre, emotion, articulation, accent, scenario:
            one value each from :func:`options` (``age`` ∈ child/young/middle-aged/elderly, ...).
        free_text: anything else, appended verbatim to the rendered prompt (the service takes
            Chinese or English only; ``VoiceDesign`` checks that when the prompt is sent).

    Raises:
        ValueError: for a value a dimension does not offer (the message lists the allowed
            ones), or a ``free_text`` so long that a rendered prompt would exceed the longest
            description any design family takes (the Qwen family's 2048; ``VoiceDesign`` holds a
            prompt to its model's own limit, CosyVoice's 500, when it is sent).
    """

    gender: str | None = None
    age: str | None = None
    pitch: str | None = None
    pace: str | None = None
    volume: str | None = None
    timbre: str | None = None
    emotion: str | None = None
    articulation: str | None = None
    accent: str | None = None
    scenario: str | None = None
    free_text: str | None = None

    def __post_init__(self):
        for dimension in DIMENSIONS:
            value = getattr(self, dimension)
            if value is not None and value not in _allowed(dimension):
                raise ValueError(
                    f"{dimension} must be one of {', '.join(_allowed(dimension))} (or None), got {value!r}"
                )
        if self.free_text is not None and not isinstance(self.free_text, str):
            raise ValueError(f"free_text must be a string or None, got {type(self.free_text).__name__}")
        limit = max(f.voice_prompt_max for f in catalog.FAMILIES.values())
        for language in catalog.LANGUAGES:
            n = len(self.render(language))
            if n > limit:
                raise ValueError(
                    f"free_text is too long: the {language} prompt would be {n} characters "
                    f"(limit {limit}); shorten it by {n - limit}"
                )

    # --- rendering ---------------------------------------------------------------------
    def render(self, language: str = "en") -> str:
        """The voice prompt: fluent, concrete sentences in ``language``.

        Args:
            language: 'en' or 'zh'.

        Returns:
            The description, at most the longest any design family takes (guaranteed at
            construction; without ``free_text`` always within CosyVoice's 500).

        Raises:
            ValueError: for a language other than 'en' or 'zh'.
        """
        _check_language(language)
        return _with_free_text(self._render_en() if language == "en" else self._render_zh(), self.free_text, language)

    @classmethod
    def draft(cls, language: str, *, free_text: str | None = None, **choices: str | None) -> str:
        """What ``PromptSpec(**choices, free_text=free_text).render(language)`` would be, even
        when the free text makes it (in this language or the other) longer than the limit: for
        a prompt builder that shows the text and its count as one types.

        Raises:
            ValueError: a choice is not one of its dimension's words, or an unknown language.
        """
        _check_language(language)
        return _with_free_text(cls(**choices).render(language), free_text, language)

    def _who_en(self) -> str:
        if self.age == "child":  # a child is "a little girl", never "a child narrator"
            noun = _CHILD[self.gender][0]
        else:
            role = _SCENARIO[self.scenario][2] if self.scenario else None
            age = _AGE[self.age][0] if self.age else None
            if role:
                gender = _GENDER[self.gender][0] if self.gender else None
                noun = " ".join(w for w in (age, gender, role) if w)
            else:
                noun = " ".join(w for w in (age, _PERSON[self.gender]) if w)
        phrase = f"{_EMOTION[self.emotion][0]} {noun}" if self.emotion else noun
        return f"{_article(phrase)} {phrase}"

    def _render_en(self) -> str:
        voice = []
        if self.pitch:
            voice.append(f"a {_PITCH[self.pitch][0]} voice")
        if self.timbre:
            word = _TIMBRE[self.timbre][0]
            voice.append(f"{_article(word)} {word} timbre")
        first = self._who_en() + (" with " + " and ".join(voice) if voice else "")
        sentences = [first[0].upper() + first[1:] + "."]
        how = [
            table[value][0]
            for table, value in (
                (_VOLUME, self.volume),
                (_PACE, self.pace),
                (_ARTICULATION, self.articulation),
                (_ACCENT, self.accent),
            )
            if value
        ]
        if how:
            sentences.append(f"{_SUBJECT[self.gender]} {', '.join(how)}.")
        if self.scenario:
            sentences.append(f"The voice is well suited to {_SCENARIO[self.scenario][0]}.")
        return " ".join(sentences)

    def _who_zh(self) -> str:
        if self.age == "child":
            return _CHILD[self.gender][1]
        age = _AGE[self.age][1] if self.age else ""
        gender = _GENDER[self.gender][1] if self.gender else ""
        if self.scenario:
            return age + gender + _SCENARIO[self.scenario][3]
        if gender:
            return age + gender
        return age + "人" if age else "说话人"

    def _render_zh(self) -> str:
        head = "一位" + (_EMOTION[self.emotion][1] + "的" if self.emotion else "") + self._who_zh()
        sound = [t[v][1] for t, v in ((_PITCH, self.pitch), (_TIMBRE, self.timbre)) if v]
        clauses = [head] + (["音色" + "、".join(sound)] if sound else [])
        clauses += [
            t[v][1]
            for t, v in (
                (_VOLUME, self.volume),
                (_PACE, self.pace),
                (_ARTICULATION, self.articulation),
                (_ACCENT, self.accent),
            )
            if v
        ]
        if self.scenario:
            clauses.append("适合" + _SCENARIO[self.scenario][1])
        return "，".join(clauses) + "。"

    # --- deriving specs -----------------------------------------------------------------
    @classmethod
    def preset(cls, name: str) -> PromptSpec:
        """A ready-made spec from :data:`PRESETS`.

        Raises:
            ValueError: for an unknown name (the message lists the presets).
        """
        try:
            return PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}") from None

    def replace(self, **changes) -> PromptSpec:
        """A copy with ``changes`` applied (``None`` clears a dimension).

        Raises:
            ValueError: for an unknown field or a value its dimension does not offer.
        """
        for name in changes:
            _check_dimension(name)
        return dataclasses.replace(self, **changes)

    def variants(self, dimension: str, values=None) -> list[PromptSpec]:
        """Copies of this spec sweeping one dimension, everything else held fixed.

        Args:
            dimension: the field to vary (any of :data:`FIELDS`).
            values: the values to try; default every value of the dimension (required for
                ``free_text``). ``None`` in the list means "unspecified".

        Returns:
            One spec per value, in order.

        Raises:
            ValueError: for an unknown dimension or value (the message lists the valid ones).
        """
        _check_dimension(dimension)
        if values is None:
            if dimension == "free_text":
                raise ValueError("free_text has no fixed values; pass values=[...]")
            values = _allowed(dimension)
        return [self.replace(**{dimension: v}) for v in values]

    # --- storage ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Every field, None included, so stored specs have one shape."""
        return {name: getattr(self, name) for name in FIELDS}

    @classmethod
    def from_dict(cls, data: dict) -> PromptSpec:
        """Inverse of :meth:`to_dict`; missing fields are None.

        Raises:
            ValueError: for an unknown key or an invalid value.
        """
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown PromptSpec field(s) {unknown}; fields: {', '.join(FIELDS)}")
        return cls(**data)

    def to_json(self) -> str:
        """Compact JSON (UTF-8 text kept readable), as stored with a take."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PromptSpec:
        """Inverse of :meth:`to_json`.

        Raises:
            ValueError: for malformed JSON, an unknown key or an invalid value.
        """
        data = jsontext.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"a PromptSpec JSON must be an object, got {type(data).__name__}")
        return cls.from_dict(data)


# Ready-made specs by name (``PromptSpec.preset``, the builder's dropdown), from ``presets.py``'s fields.
PRESETS: dict[str, PromptSpec] = {name: PromptSpec(**fields) for name, fields in PRESET_FIELDS.items()}
