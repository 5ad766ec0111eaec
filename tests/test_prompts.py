"""PromptSpec: rendering, round trip through vocabulary.read_claims, presets, storage."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosyvoice_lab import catalog
from cosyvoice_lab.design import VoiceDesign, foreign_characters
from cosyvoice_lab.prompts.lexicon import LEXICON, read_claims
from cosyvoice_lab.prompts.spec import DIMENSIONS, FIELDS, IMPLIED, PRESETS, PromptSpec, options

LANGUAGES = ("en", "zh")
ZH_PUNCTUATION = set("，、。")
# Free text the property test may append: says nothing the lexicon reads.
NEUTRAL_FREE_TEXT = (None, "", "Keep it natural.", "请自然一些。", "Sounds like a real person on the phone.")


def values(dimension):
    return [v for _, v in options(dimension)]


def expected_claims(spec: PromptSpec) -> dict:
    """What read_claims should find in a rendering: the spec's values plus documented implications."""
    expected = {d: getattr(spec, d) for d in DIMENSIONS}
    for (dimension, value), (implied_dim, implied_value) in IMPLIED.items():
        if getattr(spec, dimension) == value and expected[implied_dim] is None:
            expected[implied_dim] = implied_value
    return expected


def read_back(text: str) -> dict:
    claims = read_claims(text)
    return {d: (claims[d].value if d in claims else None) for d in DIMENSIONS}


def assert_well_formed(text: str, language: str):
    assert 0 < len(text) <= catalog.VOICE_PROMPT_MAX
    # the service may count CJK characters twice: stay within the limit that way too
    assert catalog.billed_characters(text) <= catalog.VOICE_PROMPT_MAX
    assert foreign_characters(text) == {}
    if language == "en":
        assert text.isascii(), text
    else:
        assert all(catalog.is_cjk(c) or c in ZH_PUNCTUATION for c in text), text
        assert text.endswith("。")


specs = st.builds(
    PromptSpec,
    **{d: st.one_of(st.none(), st.sampled_from(values(d))) for d in DIMENSIONS},
    free_text=st.sampled_from(NEUTRAL_FREE_TEXT),
)


# --- the property: every spec renders well and reads back as itself ---------------------------


@settings(max_examples=300, deadline=None)
@given(spec=specs, language=st.sampled_from(LANGUAGES))
def test_random_specs_render_within_limits_and_round_trip(spec, language):
    text = spec.render(language)
    if not spec.free_text:
        assert_well_formed(text, language)
    assert len(text) <= catalog.VOICE_PROMPT_MAX
    assert read_back(text) == expected_claims(spec), text


@settings(max_examples=100, deadline=None)
@given(spec=specs)
def test_random_specs_survive_json(spec):
    assert PromptSpec.from_json(spec.to_json()) == spec
    assert PromptSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_renders_within_limits_and_round_trips(name, language):
    spec = PromptSpec.preset(name)
    text = spec.render(language)
    assert_well_formed(text, language)
    got = read_back(text)
    for dimension in ("gender", "age", "pitch", "pace"):
        assert got[dimension] == expected_claims(spec)[dimension], (dimension, text)
    assert got == expected_claims(spec)


def test_presets_cover_the_common_uses():
    assert len(PRESETS) >= 6
    for name in (
        "news_anchor",
        "audiobook_narrator",
        "customer_service",
        "childrens_storyteller",
        "game_villain",
        "documentary_narrator",
        "ad_voiceover",
    ):
        assert name in PRESETS


# --- what the text looks like --------------------------------------------------------------------


def test_audiobook_narrator_reads_like_a_prompt_a_person_would_write():
    spec = PromptSpec.preset("audiobook_narrator")
    assert spec.render("en") == (
        "A calm middle-aged male narrator with a deep, low-pitched voice and a warm timbre. "
        "He speaks at a slow, unhurried pace, with distinct, careful enunciation. "
        "The voice is well suited to audiobook narration."
    )
    assert spec.render("zh") == "一位沉稳的中年男性朗读者，音色低沉浑厚、温暖，语速缓慢从容，吐字清晰，适合有声书朗读。"


def test_articles_pronouns_and_children_are_grammatical():
    assert PromptSpec(age="elderly").render().startswith("An elderly speaker")
    assert PromptSpec(emotion="excited", gender="male").render().startswith("An excited man")
    assert "They speak at a fast" in PromptSpec(pace="fast").render()
    assert "She speaks" in PromptSpec(gender="female", pace="slow").render()
    child = PromptSpec(age="child", gender="male", scenario="storytelling")
    assert child.render().startswith("A little boy")
    assert child.render("zh").startswith("一位小男孩")


def test_empty_spec_still_renders_a_valid_prompt():
    assert PromptSpec().render() == "A speaker."
    assert PromptSpec().render("zh") == "一位说话人。"


def test_free_text_is_appended_verbatim():
    spec = PromptSpec(gender="female", free_text="Slight smile in the voice.")
    assert spec.render().endswith(". Slight smile in the voice.")
    assert PromptSpec(free_text="带一点笑意。").render("zh") == "一位说话人。带一点笑意。"


def test_bright_timbre_implies_high_pitch_but_an_explicit_pitch_wins():
    assert read_back(PromptSpec(timbre="bright").render())["pitch"] == "high"
    for language in LANGUAGES:
        assert read_back(PromptSpec(timbre="bright", pitch="low").render(language))["pitch"] == "low"


# --- errors name what is allowed --------------------------------------------------------------------


def test_unknown_value_lists_the_allowed_ones():
    with pytest.raises(ValueError) as err:
        PromptSpec(pitch="medium")
    assert "pitch" in str(err.value) and "low" in str(err.value) and "high" in str(err.value)
    with pytest.raises(ValueError, match="warm"):
        PromptSpec(timbre="velvet")


def test_free_text_too_long_is_refused_with_the_overflow():
    qwen_max = catalog.FAMILIES[catalog.QWEN_FAMILY].voice_prompt_max
    with pytest.raises(ValueError, match="free_text is too long"):
        PromptSpec(free_text="x" * qwen_max)


def test_a_description_past_500_is_for_the_qwen_family_only():
    spec = PromptSpec(gender="male", free_text="x" * 600)  # longer than CosyVoice takes, within Qwen's 2048
    prompt = spec.render("en")
    assert [p.field for p in VoiceDesign(prompt, "Hello there.", target_model=catalog.V35_PLUS).problems()] == [
        "voice_prompt"
    ]
    assert VoiceDesign(prompt, "Hello there.", target_model=catalog.QWEN_VD).problems() == []
    with pytest.raises(ValueError, match="free_text must be a string"):
        PromptSpec(free_text=42)


def test_render_rejects_an_unknown_language():
    with pytest.raises(ValueError, match="zh"):
        PromptSpec().render("fr")


def test_unknown_preset_lists_presets():
    with pytest.raises(ValueError, match="audiobook_narrator"):
        PromptSpec.preset("opera_singer")


# --- deriving specs -----------------------------------------------------------------------------


def test_replace_changes_one_field_and_validates():
    base = PromptSpec.preset("news_anchor")
    changed = base.replace(pace="fast", emotion=None)
    assert (changed.pace, changed.emotion, changed.gender) == ("fast", None, base.gender)
    assert base.pace is None  # frozen: the original is untouched
    with pytest.raises(ValueError, match="valid dimensions"):
        base.replace(colour="blue")
    with pytest.raises(ValueError, match="slow"):
        base.replace(pace="glacial")


def test_variants_sweep_one_dimension():
    base = PromptSpec.preset("audiobook_narrator")
    sweep = base.variants("pitch", ["low", None, "high"])
    assert [s.pitch for s in sweep] == ["low", None, "high"]
    assert all(s.replace(pitch=None) == base.replace(pitch=None) for s in sweep)
    assert [s.timbre for s in base.variants("timbre")] == values("timbre")
    assert [s.free_text for s in base.variants("free_text", ["a", "b"])] == ["a", "b"]


def test_variants_errors_name_the_valid_choices():
    base = PromptSpec()
    with pytest.raises(ValueError, match="gender, age, pitch"):
        base.variants("loudness", ["x"])
    with pytest.raises(ValueError, match="low, high"):
        base.variants("pitch", ["low", "medium"])
    with pytest.raises(ValueError, match="values="):
        base.variants("free_text")


# --- storage --------------------------------------------------------------------------------------


def test_to_dict_has_every_field_and_json_keeps_chinese_readable():
    spec = PromptSpec.preset("customer_service").replace(free_text="亲切自然")
    d = spec.to_dict()
    assert tuple(d) == FIELDS
    assert "亲切自然" in spec.to_json()
    assert json.loads(spec.to_json()) == d


def test_from_dict_accepts_partial_and_rejects_unknown_keys():
    assert PromptSpec.from_dict({"gender": "male"}) == PromptSpec(gender="male")
    with pytest.raises(ValueError, match="unknown PromptSpec field"):
        PromptSpec.from_dict({"gender": "male", "seed": 3})
    with pytest.raises(ValueError, match="object"):
        PromptSpec.from_json("[1, 2]")


# --- options for widgets --------------------------------------------------------------------------


@pytest.mark.parametrize("dimension", DIMENSIONS)
def test_options_cover_every_value_in_both_languages(dimension):
    en, zh = options(dimension, "en"), options(dimension, "zh")
    assert [v for _, v in en] == [v for _, v in zh]
    assert all(label.isascii() for label, _ in en)
    assert all(any(catalog.is_cjk(c) for c in label) for label, _ in zh)
    # a dropdown offers exactly the lexicon values a PromptSpec accepts, in lexicon order
    accepted = []
    for value in LEXICON[dimension]:
        try:
            PromptSpec(**{dimension: value})
        except ValueError:
            continue
        accepted.append(value)
    assert [v for _, v in en] == accepted and accepted


def test_options_reuse_the_lexicon_for_the_simulator_dimensions():
    for dimension in ("gender", "age", "pitch", "pace", "volume"):
        assert values(dimension) == list(LEXICON[dimension])
    assert set(values("emotion")) >= set(LEXICON["energy"])  # calm/lively: energy as emotion


def test_options_errors():
    with pytest.raises(ValueError, match="valid dimensions"):
        options("free_text")
    with pytest.raises(ValueError, match="language"):
        options("pitch", "de")


def test_prompts_module_imports_nothing_heavy():
    import subprocess
    import sys

    # Measured against the package itself, whose front door is someone else's concern.
    code = (
        "import sys; import cosyvoice_lab; before = set(sys.modules); import cosyvoice_lab.prompts.spec; "
        "print(sorted(m for m in set(sys.modules) - before "
        "if m.split('.')[0] in ('ipywidgets', 'pandas', 'matplotlib', 'parselmouth', 'scipy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
