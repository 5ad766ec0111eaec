"""Take: a frozen record of one attempt; its conveniences, display and serialisation."""

import dataclasses
import pickle
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosyvoice_lab.audio import Audio
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import LogError
from cosyvoice_lab.take import STATUSES, Take, iso, parse_iso, redact

DESIGN = VoiceDesign("A calm, deep male narrator <b>& friends</b>", "Hello there, welcome.")
T0 = datetime(2025, 3, 1, 8, 30, 0, 123456, tzinfo=timezone.utc)


def tone() -> Audio:
    return Audio.from_numpy(0.2 * np.sin(np.arange(2400) / 8), 24000)


def make(**changes) -> Take:
    base = Take(
        take_id="0123456789abcdef0123456789abcdef",
        design=DESIGN,
        status="ok",
        backend="offline",
        voice_id="cosyvoice-v3.5-plus-vd-lab-" + "a" * 32,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=3),
        latency_s=3.0,
        rating=4,
        chosen=True,
        tags=("warm",),
    )
    return dataclasses.replace(base, **changes)


def test_conveniences_read_the_design():
    take = make()
    assert take.target_model == "cosyvoice-v3.5-plus"
    assert take.prompt == DESIGN.voice_prompt
    assert take.ok and not make(status="failed").ok
    assert take.design == DESIGN  # the exact request to send again


def test_is_frozen_and_replace_makes_a_copy():
    take = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        take.rating = 1
    assert take.replace(rating=2).rating == 2 and take.rating == 4
    assert hash(take) == hash(take.replace(notes="x"))  # hashable despite the metrics dict


def test_from_fields_is_the_take_its_fields_make_and_needs_every_one():
    take = make()
    fields = {f.name: getattr(take, f.name) for f in dataclasses.fields(Take)}
    built = Take.from_fields(fields)
    assert built == take and repr(built) == repr(take) and hash(built) == hash(take)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.rating = 1
    assert built.replace(rating=2).rating == 2
    with pytest.raises(TypeError, match="missing \\['notes'\\]"):
        Take.from_fields({k: v for k, v in fields.items() if k != "notes"})
    with pytest.raises(TypeError, match="unknown \\['model'\\]"):
        Take.from_fields({**fields, "model": "x"})


def test_audio_loads_from_its_path(tmp_path):
    audio = tone()
    path = audio.save(tmp_path)
    take = make(audio_path=str(path), audio_format="wav", audio_sample_rate=24000, audio_sha256=audio.sha256)
    assert take.audio == audio
    assert make().audio is None


def test_missing_audio_is_a_clear_error_naming_the_path(tmp_path):
    missing = tmp_path / "audio" / ("f" * 64 + ".wav")
    take = make(audio_path=str(missing), audio_format="wav", audio_sample_rate=24000)
    with pytest.raises(LogError) as info:
        _ = take.audio
    assert str(missing) in str(info.value) and info.value.path == missing
    assert "missing" in take._repr_html_()  # the notebook display says so instead of raising


def test_repr_is_short_and_one_line():
    text = repr(make(design=DESIGN.replace(voice_prompt="x" * 400)))
    assert "\n" not in text and len(text) < 200
    assert "0123456" in text and "ok" in text and "cosyvoice-v3.5-plus" in text and "chosen" in text


def test_html_shows_prompt_ids_status_rating_and_a_player(tmp_path):
    audio = tone()
    take = make(audio_path=str(audio.save(tmp_path)), audio_format="wav", audio_sample_rate=24000)
    page = take._repr_html_()
    assert "&lt;b&gt;&amp; friends" in page and "<b>&" not in page  # escaped
    assert "Hello there, welcome." in page and take.voice_id in page and "cosyvoice-v3.5-plus" in page
    assert "★★★★" in page and "chosen" in page
    assert page.count("<audio") == 1 and "data:audio/wav;base64," in page
    failed = make(status="failed", error_code="InvalidParameter", error_message="bad prompt", rating=None)
    assert "InvalidParameter" in failed._repr_html_() and "<audio" not in failed._repr_html_()
    reconciled = make(preview_missing=True)
    assert "no preview" in reconciled._repr_html_()


def test_no_field_could_hold_an_api_key():
    names = {f.name for f in dataclasses.fields(Take)}
    for word in ("key", "secret", "token", "authoriz", "password", "credential", "header"):
        assert not [n for n in names if word in n], word


# --- serialisation ---------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
_times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc))


@settings(max_examples=150, deadline=None)
@given(
    status=st.sampled_from(STATUSES),
    experiment=st.none() | _text,
    rating=st.none() | st.integers(1, 5),
    tags=st.lists(_text, max_size=4).map(tuple),
    notes=_text,
    started=_times,
    metrics=st.dictionaries(
        st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True),
        st.none() | st.floats(allow_nan=False) | st.integers() | _text,
        max_size=4,
    ),
    prompt_spec=st.none() | st.dictionaries(_text, _text, max_size=3),
    repeat=st.none() | st.integers(0, 99),
)
def test_to_dict_from_dict_round_trips(status, experiment, rating, tags, notes, started, metrics, prompt_spec, repeat):
    take = make(
        status=status,
        experiment=experiment,
        rating=rating,
        tags=tags,
        notes=notes,
        started_at=started,
        metrics=metrics,
        prompt_spec=prompt_spec,
        repeat=repeat,
    )
    assert Take.from_dict(take.to_dict()) == take


def test_from_dict_rejects_an_unknown_status():
    data = make().to_dict()
    data["status"] = "exploded"
    with pytest.raises(ValueError, match="status"):
        Take.from_dict(data)


@given(_times)
def test_iso_round_trips_and_sorts_as_time(when):
    assert parse_iso(iso(when)) == when
    assert len(iso(when)) == 27 and iso(when).endswith("Z")
    later = when + timedelta(microseconds=1)
    assert iso(when) < iso(later)


def test_naive_times_are_taken_as_utc():
    assert iso(datetime(2025, 1, 2, 3, 4, 5)) == "2025-01-02T03:04:05.000000Z"
    east = timezone(timedelta(hours=8))
    assert iso(datetime(2025, 1, 2, 11, 4, 5, tzinfo=east)) == "2025-01-02T03:04:05.000000Z"


# --- redaction -------------------------------------------------------------------------

_key_chars = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=16, max_size=64)


@given(before=st.text(max_size=20), key=_key_chars, after=st.text(max_size=20))
def test_redact_removes_anything_shaped_like_a_key(before, key, after):
    secret = "sk-" + key
    assert secret not in redact(f"{before} {secret} {after}")


@given(st.text(st.characters(blacklist_characters="-"), max_size=60))
def test_redact_leaves_other_text_alone(text):
    assert redact(text) == text


def test_a_loader_given_by_the_log_reads_the_audio_and_is_not_part_of_the_value(tmp_path):
    audio = tone()
    asked = []

    def loader(take):
        asked.append(take.take_id)
        return audio

    take = make(
        audio_path="audio/" + "0" * 64 + ".wav", audio_format="wav", audio_sample_rate=24000, audio_loader=loader
    )
    assert take.audio == audio and asked == [take.take_id]
    assert take == take.replace(audio_loader=None) and hash(take) == hash(take.replace(audio_loader=None))
    assert "audio_loader" not in take.to_dict() and "loader" not in repr(take)
    assert Take.from_dict({**take.to_dict(), "audio_loader": "ignored"}).audio_loader is None
    assert make(audio_loader=loader).audio is None and len(asked) == 1  # no audio: the loader is not asked


def test_a_hand_built_take_pickles(tmp_path):
    audio = tone()
    take = make(audio_path=str(audio.save(tmp_path)), audio_format="wav", audio_sample_rate=24000)
    again = pickle.loads(pickle.dumps(take))
    assert again == take and again.audio == audio
