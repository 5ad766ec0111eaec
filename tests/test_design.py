"""VoiceDesign validation: every rule, all problems at once, and the wire payload."""

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosyvoice_lab import catalog
from cosyvoice_lab.design import LengthWarning, VoiceDesign, detect_language
from cosyvoice_lab.errors import ValidationError

OK = {"voice_prompt": "A calm, deep male narrator in his fifties", "preview_text": "Good evening, and welcome."}


def fields(design):
    return [p.field for p in design.problems()]


def test_valid_english_design_makes_the_documented_payload():
    payload = VoiceDesign(**OK, prefix="narrator").to_payload()
    assert payload == {
        "model": "voice-enrollment",
        "input": {
            "action": "create_voice",
            "target_model": "cosyvoice-v3.5-plus",
            "voice_prompt": OK["voice_prompt"],
            "preview_text": OK["preview_text"],
            "prefix": "narrator",
            "language_hints": ["en"],
        },
        "parameters": {"sample_rate": 24000, "response_format": "wav"},
    }


def test_chinese_preview_derives_zh():
    d = VoiceDesign("沉稳的中年男性，音色低沉浑厚", "各位听众朋友，大家好")
    assert d.to_payload()["input"]["language_hints"] == ["zh"]


def test_english_words_inside_chinese_text_are_still_chinese():
    assert detect_language("欢迎收听 CosyVoice 节目") == "zh"


@pytest.mark.parametrize("prefix", ["", "abcdefghijk", "my_voice", "voice-1", "名字"])
def test_bad_prefixes(prefix):
    assert fields(VoiceDesign(**OK, prefix=prefix)) == ["prefix"]


def test_capital_prefix_suggests_lowercase():
    [problem] = VoiceDesign(**OK, prefix="Announcer").problems()
    assert "'announcer'" in problem.message


@pytest.mark.parametrize(
    "name,limit", [("voice_prompt", catalog.VOICE_PROMPT_MAX), ("preview_text", catalog.PREVIEW_TEXT_MAX)]
)
def test_length_limits_in_code_points(name, limit):
    at_limit = VoiceDesign(**{**OK, name: "a" * limit})
    over = VoiceDesign(**{**OK, name: "a" * (limit + 1)})
    assert at_limit.problems() == []
    assert [(p.field, p.rule) for p in over.problems()] == [(name, "max_length")]


@pytest.mark.parametrize("name", ["voice_prompt", "preview_text"])
def test_empty_texts(name):
    assert (name, "non_empty") in [(p.field, p.rule) for p in VoiceDesign(**{**OK, name: "   "}).problems()]


@pytest.mark.parametrize(
    "text,script",
    [
        ("こんにちは", "kana"),
        ("안녕하세요", "Hangul"),
        ("Привет", "Cyrillic"),
        ("مرحبا", "Arabic"),
        ("Hello 😀", "emoji"),
    ],
)
def test_other_scripts_rejected_with_their_name(text, script):
    problems = VoiceDesign(**{**OK, "voice_prompt": text}).problems()
    assert [p.field for p in problems] == ["voice_prompt"]
    assert script in problems[0].message


def test_language_disagreeing_with_preview_is_an_error():
    assert fields(VoiceDesign(**OK, language="zh")) == ["language"]
    assert fields(VoiceDesign("温暖的女声", "大家好", language="en")) == ["language"]


def test_language_must_be_zh_or_en():
    assert fields(VoiceDesign(**OK, language="fr")) == ["language"]


def test_language_underivable_from_digits_only_preview():
    assert fields(VoiceDesign(OK["voice_prompt"], "12345 !!")) == ["language"]
    assert VoiceDesign(OK["voice_prompt"], "12345 !!", language="en").problems() == []


def test_model_and_region_must_allow_design():
    assert fields(VoiceDesign(**OK, target_model="cosyvoice-v2")) == ["target_model"]
    assert fields(VoiceDesign(**OK, region="ap-southeast-1")) == ["region"]
    for model in catalog.design_models("cn-beijing"):
        assert VoiceDesign(**OK, target_model=model).problems() == []


def test_sample_rate_and_format():
    assert fields(VoiceDesign(**OK, sample_rate=22050, response_format="ogg")) == ["sample_rate", "response_format"]


def test_every_problem_reported_at_once():
    d = VoiceDesign("", "x" * 201, prefix="BAD!", target_model="nope", sample_rate=1, response_format="flac")
    with pytest.raises(ValidationError) as info:
        d.validate()
    assert {p.field for p in info.value.problems} == {
        "prefix",
        "voice_prompt",
        "preview_text",
        "target_model",
        "sample_rate",
        "response_format",
    }
    assert "prefix" in str(info.value) and "sample_rate" in str(info.value)


def test_cjk_weighted_length_warns_but_passes():
    d = VoiceDesign("温" * 300, "大家好")
    with pytest.warns(LengthWarning, match="voice_prompt"):
        d.validate()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VoiceDesign(**OK).validate()


def test_round_trip_dict():
    d = VoiceDesign(**OK, prefix="abc", target_model="cosyvoice-v3.5-flash", sample_rate=48000)
    assert VoiceDesign.from_dict({**d.to_dict(), "unknown": 1}) == d


# --- property tests ---------------------------------------------------------------------

zh_text = st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), min_size=1, max_size=60)
en_text = st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz ,.ABC"), min_size=1, max_size=60).filter(
    lambda s: any(c.isalpha() for c in s)
)


@settings(max_examples=200, deadline=None)
@given(
    prompt=st.text(max_size=600),
    preview=st.text(max_size=250),
    prefix=st.text(max_size=12),
    rate=st.sampled_from([8000, 16000, 24000, 48000]),
    fmt=st.sampled_from(["wav", "mp3", "pcm", "ogg"]),
)
def test_validation_never_crashes_and_payload_only_when_valid(prompt, preview, prefix, rate, fmt):
    d = VoiceDesign(prompt, preview, prefix=prefix, sample_rate=rate, response_format=fmt)
    problems = d.problems()
    if problems:
        with pytest.raises(ValidationError):
            d.to_payload()
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LengthWarning)
            body = d.to_payload()
        assert len(body["input"]["voice_prompt"]) <= catalog.VOICE_PROMPT_MAX
        assert catalog.PREFIX_RE.match(body["input"]["prefix"])


@settings(max_examples=100, deadline=None)
@given(text=st.one_of(zh_text, en_text))
def test_derived_language_matches_script(text):
    lang = detect_language(text)
    assert lang == ("zh" if any(catalog.is_cjk(c) for c in text) else "en")


@settings(max_examples=100, deadline=None)
@given(
    rate=st.one_of(
        st.sampled_from(catalog.PREVIEW_SAMPLE_RATES).map(float),
        st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(catalog.PREVIEW_SAMPLE_RATES).map(str),
        st.none(),
    )
)
def test_sample_rate_must_be_an_int_not_an_equal_float_bool_or_string(rate):
    """24000.0 == 24000 in Python, but the wire field is an int: it is refused before sending."""
    design = VoiceDesign(**OK, sample_rate=rate)
    [problem] = design.problems()
    assert problem.field == "sample_rate" and "integer" in problem.message
    with pytest.raises(ValidationError):
        design.to_payload()


@given(rate=st.sampled_from(catalog.PREVIEW_SAMPLE_RATES))
def test_allowed_int_sample_rates_are_sent_as_ints(rate):
    sent = VoiceDesign(**OK, sample_rate=rate).to_payload()["parameters"]["sample_rate"]
    assert sent == rate and type(sent) is int
