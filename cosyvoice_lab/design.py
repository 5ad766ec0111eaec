"""VoiceDesign: one request to design a voice, validated against the catalog's limits.

``validate()`` reports every problem at once, each naming its field and rule; ``to_payload()``
produces the JSON body of contract §2.2. Invalid input never reaches the network: the client
calls ``to_payload()``, which validates first.
"""

from __future__ import annotations

import dataclasses
import unicodedata
import warnings
from dataclasses import dataclass

from cosyvoice_lab import catalog
from cosyvoice_lab.errors import Problem, ValidationError


class LengthWarning(UserWarning):
    """A text is within the code-point limit but over it when CJK characters count double."""


# --- scripts -------------------------------------------------------------------------------


# Invisible or direction-changing characters (zero-width spaces and joiners, U+202E and the other
# bidi controls, line/paragraph separators, private use, unassigned): never part of a description.
_INVISIBLE = frozenset({"Cf", "Cc", "Cs", "Co", "Cn", "Zl", "Zp"})


def _allowed(ch: str) -> bool:
    """Characters a Chinese or English text may hold: ASCII, CJK, their punctuation, Latin-1."""
    o = ord(ch)
    if ch not in "\n\t\r" and unicodedata.category(ch) in _INVISIBLE:
        return False
    if o < 0x80 or catalog.is_cjk(ch):
        return ch.isprintable() or ch in "\n\t\r"
    if 0xA0 <= o <= 0xFF:  # Latin-1: accents of loanwords (café), ·, ×, °
        return True
    if 0x2000 <= o <= 0x206F or 0x3000 <= o <= 0x303F:  # general (… —) and CJK punctuation
        return True
    if 0xFF01 <= o <= 0xFF5E or 0xFFE0 <= o <= 0xFFE6:  # full-width ASCII and symbols
        return True
    return o == 0x2116  # №


def _script_name(ch: str) -> str:
    if unicodedata.category(ch) == "So" or 0x1F000 <= ord(ch) <= 0x1FAFF:
        return "emoji/symbol"
    name = unicodedata.name(ch, "")
    for script in ("HIRAGANA", "KATAKANA", "HANGUL", "CYRILLIC", "ARABIC", "GREEK", "HEBREW", "THAI", "DEVANAGARI"):
        if script in name:
            return {"HIRAGANA": "Japanese kana", "KATAKANA": "Japanese kana"}.get(script, script.title())
    return f"U+{ord(ch):04X}"


def foreign_characters(text: str) -> dict[str, str]:
    """Characters outside Chinese/English, grouped by script: ``{script: "chars"}``."""
    found: dict[str, str] = {}
    for ch in text:
        if not _allowed(ch):
            script = _script_name(ch)
            if ch not in found.get(script, ""):
                found[script] = found.get(script, "") + ch
    return found


def detect_language(text: str) -> str | None:
    """'zh' if the text holds any CJK ideograph, 'en' if it has Latin letters, else None."""
    if any(catalog.is_cjk(c) for c in text):
        return "zh"
    if any(c.isascii() and c.isalpha() for c in text):
        return "en"
    return None


# --- the request ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VoiceDesign:
    """One voice-design request (contract §2.2; the Qwen family §12).

    The target model chooses the design family (``catalog.family_of_model``) and with it the
    limits and the wire shape; the limits below are CosyVoice's, the Qwen family's in brackets.

    Args:
        voice_prompt: the description of the voice (1-500 [2048] characters, Chinese or English).
        preview_text: what the preview reads (1-200 [1024] characters, Chinese or English
            [any of the family's ten languages]).
        target_model: the synthesis model the voice is bound to.
        prefix: lowercase letters/digits, at most 10 [letters, digits, underscores, at most 16:
            sent as ``preferred_name``]; part of the voice id.
        language: 'zh' or 'en' [one of ten]; derived from ``preview_text`` when None.
        sample_rate: preview sample rate (16000, 24000 or 48000 [8000 too]).
        response_format: preview format ('wav', 'mp3' or 'pcm' ['opus' too]).
        region: where the request goes; CosyVoice design exists only in cn-beijing [both regions].
    """

    voice_prompt: str
    preview_text: str
    target_model: str = catalog.DEFAULT_MODEL
    prefix: str = catalog.DEFAULT_PREFIX
    language: str | None = None
    sample_rate: int = catalog.DEFAULT_PREVIEW_SAMPLE_RATE
    response_format: str = catalog.DEFAULT_PREVIEW_FORMAT
    region: str = catalog.DEFAULT_REGION

    @property
    def family(self) -> catalog.DesignFamily:
        """The design family of the target model (CosyVoice's for an unknown model, which
        ``problems`` reports)."""
        return catalog.family_of_model(self.target_model) or catalog.FAMILIES[catalog.COSYVOICE_FAMILY]

    @property
    def language_hint(self) -> str | None:
        """The language sent in ``language_hints``: the given one, else derived."""
        return self.language or detect_language(self.preview_text or "")

    # --- validation ------------------------------------------------------------------
    def problems(self) -> list[Problem]:
        """Every rule this design breaks (empty when valid)."""
        fam = self.family
        out: list[Problem] = []
        out += _prefix_problems(self.prefix, fam)
        out += text_problems("voice_prompt", self.voice_prompt, fam.voice_prompt_max)
        zh_en = fam.languages == catalog.LANGUAGES
        out += text_problems("preview_text", self.preview_text, fam.preview_text_max, zh_en_only=zh_en)
        out += self._language_problems()
        out += self._model_problems()
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, int):
            # 24000.0 == 24000, but the wire field is an integer (contract §2.2)
            out.append(
                Problem(
                    "sample_rate",
                    "type",
                    f"must be an integer, one of {fam.sample_rates}, "
                    f"got {self.sample_rate!r} ({type(self.sample_rate).__name__})",
                )
            )
        elif self.sample_rate not in fam.sample_rates:
            out.append(
                Problem(
                    "sample_rate",
                    "allowed_values",
                    f"must be one of {fam.sample_rates}, got {self.sample_rate!r}",
                )
            )
        if self.response_format not in fam.formats:
            out.append(
                Problem(
                    "response_format",
                    "allowed_values",
                    f"must be one of {fam.formats}, got {self.response_format!r}",
                )
            )
        return out

    def warnings(self) -> list[str]:
        """Soft limits: texts over their limit when each CJK character counts 2 (§3.2)."""
        out = []
        fam = self.family
        for name, limit in (("voice_prompt", fam.voice_prompt_max), ("preview_text", fam.preview_text_max)):
            text = getattr(self, name)
            if isinstance(text, str) and len(text) <= limit < catalog.billed_characters(text):
                out.append(
                    f"{name}: {catalog.billed_characters(text)} characters when CJK counts 2 "
                    f"(limit {limit}); the service may count this way and reject it"
                )
        return out

    def validate(self) -> VoiceDesign:
        """Return self if valid; else raise ``ValidationError`` listing every problem.

        Soft-limit findings are issued as ``LengthWarning``.
        """
        found = self.problems()
        if found:
            raise ValidationError(found, context="invalid VoiceDesign")
        for message in self.warnings():
            warnings.warn(message, LengthWarning, stacklevel=2)
        return self

    def _language_problems(self) -> list[Problem]:
        text = self.preview_text if isinstance(self.preview_text, str) else ""
        detected = detect_language(text)
        languages = self.family.languages
        if self.language is not None and self.language not in languages:
            return [Problem("language", "allowed_values", f"must be one of {languages}, got {self.language!r}")]
        if self.language is None and detected is None and text.strip():
            return [
                Problem(
                    "language",
                    "derivable",
                    "cannot tell the language of preview_text (no Chinese or English letters); "
                    f"pass language= one of {languages}",
                )
            ]
        # only zh and en are told apart here: a Japanese text with kanji reads as 'zh'
        if self.language in catalog.LANGUAGES and detected and self.language != detected:
            return [
                Problem(
                    "language",
                    "matches_preview_text",
                    f"language={self.language!r} but preview_text is {detected!r}; "
                    f"the preview must be read in the language given",
                )
            ]
        return []

    def _model_problems(self) -> list[Problem]:
        if self.region not in catalog.REGIONS:
            return [
                Problem("region", "allowed_values", f"must be one of {tuple(catalog.REGIONS)}, got {self.region!r}")
            ]
        family = catalog.family_of_model(self.target_model)
        if family is not None and self.region not in family.regions:
            return [
                Problem(
                    "region",
                    "design_available",
                    f"{family.label} voice design is not offered in {self.region}; use {' or '.join(family.regions)}",
                )
            ]
        allowed = catalog.design_models(self.region)
        if self.target_model not in allowed:
            return [
                Problem(
                    "target_model",
                    "design_model",
                    f"must be one of {allowed} for design in {self.region}, got {self.target_model!r}",
                )
            ]
        return []

    # --- wire --------------------------------------------------------------------------
    def to_payload(self) -> dict:
        """The create JSON body of the design's family (validates first): CosyVoice's
        ``create_voice`` (contract §2.2) or the Qwen family's ``create`` (§12).

        Raises:
            ValidationError: the design breaks a rule.
        """
        self.validate()
        fam = self.family
        inp: dict[str, object] = {
            "action": fam.verbs["create"],
            "target_model": self.target_model,
            "voice_prompt": self.voice_prompt,
            "preview_text": self.preview_text,
            fam.name_field: self.prefix,
        }
        if fam.name == catalog.QWEN_FAMILY:
            inp["language"] = self.language_hint  # a single code, default zh [QVD]
        else:
            inp["language_hints"] = [self.language_hint]
        return {
            "model": fam.enrollment_model,
            "input": inp,
            "parameters": {"sample_rate": self.sample_rate, "response_format": self.response_format},
        }

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> VoiceDesign:
        """Build from ``to_dict()`` output, ignoring unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def replace(self, **changes) -> VoiceDesign:
        return dataclasses.replace(self, **changes)


def _prefix_problems(prefix, family: catalog.DesignFamily) -> list[Problem]:
    if not isinstance(prefix, str) or not family.name_re.match(prefix):
        hint = ""
        if isinstance(prefix, str):
            keep = (lambda c: c.isascii() and (c.isalnum() or c == "_")) if family.name == catalog.QWEN_FAMILY else None
            fixed = (
                "".join(c for c in prefix if keep(c))[: catalog.QWEN_NAME_MAX]
                if keep
                else "".join(c for c in prefix.lower() if c.isascii() and c.isalnum())[: catalog.PREFIX_MAX]
            )
            if fixed and fixed != prefix:
                hint = f"; try {fixed!r}"
        what = f" ({family.label}: sent as {family.name_field})" if family.name_field != "prefix" else ""
        return [Problem("prefix", "pattern", f"must be {family.name_rule}{what}, got {prefix!r}{hint}")]
    return []


def text_problems(name: str, text, limit: int, *, zh_en_only: bool = True) -> list[Problem]:
    """The rules a description or preview text must keep (contract §3.2): a string, at most
    ``limit`` code points, Chinese or English only, with at least one Chinese character, English
    letter or digit (a text of zero-width spaces or punctuation alone says nothing). The one
    rule: the client checks it before sending, the simulator answers 400 for the same texts.

    ``zh_en_only=False`` (a Qwen preview text, in any of ten languages, §12) drops the script
    rule: the text must still hold a letter or digit and no invisible or control character."""
    if not isinstance(text, str):
        return [Problem(name, "type", f"must be a string, got {type(text).__name__}")]
    if not zh_en_only:
        return _any_language_problems(name, text, limit)
    out = []
    foreign = foreign_characters(text)
    if not text.strip():
        out.append(Problem(name, "non_empty", "must not be empty"))
    elif not foreign and not any(catalog.is_cjk(c) or (c.isascii() and c.isalnum()) for c in text):
        out.append(Problem(name, "has_words", "must hold Chinese characters, English letters or digits"))
    if len(text) > limit:
        out.append(Problem(name, "max_length", f"is {len(text)} characters; the limit is {limit}"))
    if foreign:
        listed = ", ".join(f"{script} ({chars[:10]})" for script, chars in foreign.items())
        out.append(Problem(name, "zh_en_only", f"must be Chinese or English only; found {listed}"))
    return out


def _any_language_problems(name: str, text: str, limit: int) -> list[Problem]:
    out = []
    if not text.strip():
        out.append(Problem(name, "non_empty", "must not be empty"))
    elif not any(c.isalnum() for c in text):
        out.append(Problem(name, "has_words", "must hold letters or digits"))
    if len(text) > limit:
        out.append(Problem(name, "max_length", f"is {len(text)} characters; the limit is {limit}"))
    hidden = sorted({f"U+{ord(c):04X}" for c in text if c not in "\n\t\r" and unicodedata.category(c) in _INVISIBLE})
    if hidden:
        out.append(
            Problem(name, "visible", f"must hold no invisible or control characters; found {', '.join(hidden[:5])}")
        )
    return out
