"""Hostile bundles (issue 12, item 3): every table checked, nothing written unless all is valid.

Each bundle here is a real zip built in the test from a real export, then damaged one way; after
each refused import the receiving log is unchanged and still reads (DataFrame, exports, voices).
"""

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cosyvoice_lab import catalog
from cosyvoice_lab.audio import Audio
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import LogError
from cosyvoice_lab.log.bundle_schema import RowError, check_annotation, check_take, check_utterance
from cosyvoice_lab.log.experiment_log import ExperimentLog
from cosyvoice_lab.take import Take

DESIGN = VoiceDesign("A deep, warm male voice", "Hello, and welcome to the show.")


def voice(i: int) -> str:
    return f"cosyvoice-v3.5-plus-vd-lab-{i:032x}"


def tone(seed: int) -> Audio:
    return Audio.from_numpy(0.2 * np.sin(np.arange(2400) / (4 + seed)), 24000)


def populate(log: ExperimentLog) -> None:
    for i in range(3):
        take = log.table.start(DESIGN, backend="offline", experiment="exp", cell=f"c{i}", repeat=i)
        log.table.finish(take.take_id, voice_id=voice(i), audio=tone(i), metrics={"f0": 100.0 + i})
    first = log.takes()[0].take_id
    log.rate(first, 4)
    log.tag(first, "warm")
    log.utterances.add(first, text="hi", params={"rate": 1.0}, characters=2, cost_cny=0.0001, audio=tone(9))


@pytest.fixture
def bundle(tmp_path) -> Path:
    with ExperimentLog(tmp_path / "source") as source:
        populate(source)
        return source.bundles.export(tmp_path / "share.zip")


@pytest.fixture
def theirs(tmp_path):
    """A receiving log that already holds takes of its own (so 'unchanged' means something)."""
    with ExperimentLog(tmp_path / "theirs") as log:
        take = log.table.start(VoiceDesign("A bright young woman", "Hi there."), backend="offline", experiment="mine")
        log.table.finish(take.take_id, voice_id=voice(77), audio=tone(5))
        log.choose(take.take_id)
        yield log


def rewrite(bundle: Path, out: Path, member: str, change) -> Path:
    """A copy of ``bundle`` with ``member``'s JSON passed through ``change``."""
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == member:
                data = json.dumps(change(json.loads(data))).encode()
            dst.writestr(name, data)
    return out


def each_row(**changes):
    return lambda rows: [{**r, **changes} for r in rows]


def in_design(**changes):
    return lambda rows: [{**r, "design": {**r["design"], **changes}} for r in rows]


def snapshot(log: ExperimentLog, tmp_path: Path) -> tuple:
    """Everything a user reads from the log, read through the public surface (each read must work)."""
    df = log.df
    log.export_csv(tmp_path / "check.csv")
    log.export_html(tmp_path / "check.html")
    log.bundles.export(tmp_path / "check.zip")
    voices = log.voice_ids()
    return (
        df.to_json(date_format="iso"),
        log.annotations().to_json(date_format="iso"),
        log.utterances.to_dataframe().to_json(date_format="iso"),
        voices.to_json(date_format="iso"),
        tuple(log.audio_store.names()),
        [repr(t) for t in log.takes()],
    )


HOSTILE = {
    "repeat not a number": ("takes.json", each_row(repeat="x"), "repeat must be an integer"),
    "string sample rate": ("takes.json", in_design(sample_rate="24000"), "sample_rate must be an integer"),
    "float sample rate": ("takes.json", in_design(sample_rate=24000.0), "sample_rate must be an integer"),
    "string audio sample rate": ("takes.json", each_row(audio_sample_rate="x"), "audio_sample_rate"),
    "audio format exe": ("takes.json", each_row(audio_format="exe"), "audio_format must be one of"),
    "chosen is the text no": ("takes.json", each_row(chosen="no"), "chosen must be true or false"),
    "played is 1": ("takes.json", each_row(played=1), "played must be true or false"),
    "unknown status": ("takes.json", each_row(status="done"), "status must be one of"),
    "unknown backend": ("takes.json", each_row(backend="elsewhere"), "backend must be one of"),
    "unknown model": (
        "takes.json",
        in_design(target_model="gpt-4o"),
        "target_model must be a design family's target model",
    ),
    "html in the take id": ("takes.json", each_row(take_id="<script>alert(1)</script>"), "take_id must be 32"),
    "voice id of another shape": ("takes.json", each_row(voice_id="None"), "voice_id must be a designed voice id"),
    "started_at not a time": ("takes.json", each_row(started_at="yesterday"), "started_at must be an ISO 8601"),
    "started_at missing": (
        "takes.json",
        lambda rows: [{k: v for k, v in r.items() if k != "started_at"} for r in rows],
        "started_at is missing",
    ),
    "rating out of range": ("takes.json", each_row(rating=9), "rating must be from 1 to 5"),
    "rating a bool": ("takes.json", each_row(rating=True), "rating must be an integer"),
    "latency infinite": ("takes.json", each_row(latency_s="inf"), "latency_s must be a finite number"),
    "tags not a list": ("takes.json", each_row(tags="warm"), "tags must be a list"),
    "a bad tag": ("takes.json", each_row(tags=["ok", "\x1b[31m"]), "tags a tag must be"),
    "notes too long": ("takes.json", each_row(notes="x" * (catalog.BUNDLE_MAX_TEXT_CHARS + 1)), "over the limit"),
    "design not an object": ("takes.json", each_row(design="deep voice"), "design must be a JSON object"),
    "a row not an object": ("takes.json", lambda rows: [*rows, 42], "must be a JSON object"),
    "table not a list": ("takes.json", lambda rows: {"rows": rows}, "must be a JSON list"),
    "audio path of another file": (
        "takes.json",
        lambda rows: [{**r, "audio_sha256": "0" * 64} if r["audio_path"] else r for r in rows],
        "is not the name of its audio_sha256",
    ),
    "duplicate take, other content": (
        "takes.json",
        lambda rows: [*rows, {**rows[0], "notes": "changed"}],
        "conflicts with an earlier row",
    ),
    "annotation action unknown": ("annotations.json", each_row(action="delete"), "action must be one of"),
    "annotation rating text": (
        "annotations.json",
        lambda rows: [*rows, {**rows[0], "annotation_id": "e" * 32, "action": "rate", "value": "x"}],
        "a rating must be",
    ),
    "a rating as an annotation event (format 3)": (
        "annotations.json",
        lambda rows: [*rows, {**rows[0], "annotation_id": "e" * 32, "action": "rate", "value": "4"}],
        "is a rating: a rating is a row of ratings.json",
    ),
    "own rating in a round": ("ratings.json", each_row(session_id="s1"), "kind 'own' is a rating outside any round"),
    "hidden repeat outside a round": (
        "ratings.json",
        each_row(kind="preference", hidden_repeat=True),
        "hidden_repeat is a showing in a round",
    ),
    "hidden repeat as text": ("ratings.json", each_row(hidden_repeat="yes"), "hidden_repeat must be true or false"),
    "position negative": ("ratings.json", each_row(position=-1), "position must be from 0"),
    "position a float": ("ratings.json", each_row(position=1.0), "position must be an integer"),
    "rating kind unknown": ("ratings.json", each_row(kind="taste"), "kind must be one of"),
    "annotation of no known take": ("annotations.json", each_row(take_id="f" * 32), "neither the bundle nor this log"),
    "utterance characters text": ("utterances.json", each_row(characters="2"), "characters must be an integer"),
    "utterance params not json": ("utterances.json", each_row(params="{oops"), "params must be the JSON text"),
    "utterance cost negative": ("utterances.json", each_row(cost_cny=-1), "cost_cny must be from 0"),
    "manifest a list": ("manifest.json", lambda m: [m], "not a cosyvoice_lab bundle"),
    "manifest version text": (
        "manifest.json",
        lambda m: {**m, "version": "99"},
        "manifest.json row 0: version must be an integer",
    ),
    "manifest version bool": ("manifest.json", lambda m: {**m, "version": True}, "version must be an integer"),
    "manifest version missing": (
        "manifest.json",
        lambda m: {k: v for k, v in m.items() if k != "version"},
        "version is missing",
    ),
    "manifest counts text": ("manifest.json", lambda m: {**m, "counts": "3"}, "counts must be a JSON object"),
    # issue 23, item 5: values the old schema let in, that then broke every reader of the log
    "started_at in 2263": ("takes.json", each_row(started_at="2263-01-01T00:00:00Z"), "started_at must be a time"),
    "finished_at in 1066": ("takes.json", each_row(finished_at="1066-10-14T09:00:00Z"), "finished_at must be a time"),
    "annotated in 2263": ("annotations.json", each_row(at="2263-01-01T00:00:00Z"), "at must be a time between"),
    "audio sample rate 1": ("takes.json", each_row(audio_sample_rate=1), "audio_sample_rate must be"),
    "design sample rate 7": ("takes.json", in_design(sample_rate=7), "sample_rate must be"),
}


@pytest.mark.parametrize("why", sorted(HOSTILE))
def test_a_hostile_table_is_refused_by_name_and_the_log_is_unchanged(bundle, theirs, tmp_path, why):
    member, change, message = HOSTILE[why]
    hostile = rewrite(bundle, tmp_path / "hostile.zip", member, change)
    before = snapshot(theirs, tmp_path)
    with pytest.raises(LogError) as info:
        theirs.bundles.merge(hostile)
    text = str(info.value)
    assert str(hostile) in text and message in text, why
    if member != "manifest.json" or "row 0" in message:
        assert member in text  # names the table (and the row: "takes.json row 0 (take '...')")
    assert not isinstance(info.value.__cause__, TypeError)
    assert snapshot(theirs, tmp_path) == before  # nothing written, everything still reads
    assert theirs.bundles.merge(bundle)["takes"] == 3  # the intact bundle still merges


def test_a_conflict_with_this_log_is_reported_not_merged(bundle, theirs, tmp_path):
    theirs.bundles.merge(bundle)
    before = snapshot(theirs, tmp_path)
    changed = rewrite(bundle, tmp_path / "c.zip", "takes.json", in_design(voice_prompt="Someone else entirely"))
    with pytest.raises(
        LogError, match=r"takes.json row \d \(take '[0-9a-f]{32}'\) conflicts with this log's take \(voice_prompt\)"
    ):
        theirs.bundles.merge(changed)
    other_voice = rewrite(bundle, tmp_path / "v.zip", "takes.json", each_row(voice_id=voice(55)))
    with pytest.raises(LogError, match=r"conflicts with this log's take \(voice_id\)"):
        theirs.bundles.merge(other_voice)
    renoted = rewrite(bundle, tmp_path / "u.zip", "utterances.json", each_row(text="something else"))
    with pytest.raises(LogError, match=r"utterances.json row 0 .* conflicts with this log's utterance"):
        theirs.bundles.merge(renoted)
    assert snapshot(theirs, tmp_path) == before
    nothing = dict.fromkeys(("takes", "takes_updated", "annotations", "utterances", "ratings", "audio_files"), 0)
    assert theirs.bundles.merge(bundle) == nothing  # the same bundle again: already merged


def _zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def test_zip_level_attacks_are_refused_before_anything_is_read(bundle, theirs, tmp_path):
    with zipfile.ZipFile(bundle) as zf:
        members = [(n, zf.read(n)) for n in zf.namelist()]
    with pytest.warns(UserWarning, match="Duplicate name"):  # zipfile's word as the hostile zip is made
        twice = _zip(tmp_path / "twice.zip", [*members, members[1]])
    cases = {
        "a member given twice": (twice, "more than once"),
        "a stray file": (_zip(tmp_path / "stray.zip", [*members, ("run.py", b"import os")]), "'run.py'"),
        "no takes table": (
            _zip(tmp_path / "none.zip", [m for m in members if m[0] != "takes.json"]),
            "has no takes.json",
        ),
        "a table that is not JSON": (
            _zip(tmp_path / "nojson.zip", [(n, b"{not json" if n == "takes.json" else d) for n, d in members]),
            "takes.json is not valid JSON",
        ),
        # issue 23, item 6: raised a raw RecursionError (the CLI printed a traceback)
        "a table nested 100,000 deep": (
            _zip(tmp_path / "deep.zip", [(n, b"[" * 100_000 if n == "takes.json" else d) for n, d in members]),
            "nested deeper than",
        ),
        "a table nested 500 deep, within the parser's reach": (
            _zip(
                tmp_path / "deep500.zip", [(n, b"[" * 500 + b"]" * 500 if n == "takes.json" else d) for n, d in members]
            ),
            "nested deeper than",
        ),
    }
    bomb = tmp_path / "bomb.zip"  # a table that unpacks past the cap (compresses to a few hundred KB)
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            if name != "takes.json":
                zf.writestr(name, data)
        with zf.open("takes.json", "w", force_zip64=True) as out:
            chunk = b" " * (1 << 22)
            for _ in range(catalog.BUNDLE_MAX_TABLE_BYTES // len(chunk) + 1):
                out.write(chunk)
    cases["a table over its size"] = (bomb, "over the limit of")
    before = snapshot(theirs, tmp_path)
    for why, (path, message) in cases.items():
        with pytest.raises(LogError) as info:
            theirs.bundles.merge(path)
        assert str(path) in str(info.value) and message in str(info.value), why
    assert snapshot(theirs, tmp_path) == before


def test_a_newer_model_of_the_contracts_shape_and_odd_but_valid_values_merge(bundle, theirs, tmp_path):
    fine = rewrite(
        bundle,
        tmp_path / "fine.zip",
        "takes.json",
        lambda rows: [
            {
                **r,
                "design": {**r["design"], "target_model": "cosyvoice-v4-flash"},
                "voice_id": None,
                "notes": "<b>x</b>",
            }
            for r in rows
        ],
    )
    assert theirs.bundles.merge(fine)["takes"] == 3
    df = theirs.df
    assert "cosyvoice-v4-flash" in set(df["target_model"].astype(object)) and df["voice_id"].isna().sum() == 3


def test_a_take_of_every_design_family_is_accepted(bundle, theirs, tmp_path):
    qwen = catalog.FAMILIES[catalog.QWEN_FAMILY]
    voices = ["qwen-tts-vd-warm_1-voice-20251210145409-a1b2", "qwen-tts-vd-x-voice-20250812105009984-838b", None]
    fine = rewrite(
        bundle,
        tmp_path / "qwen.zip",
        "takes.json",
        lambda rows: [
            {**r, "design": {**r["design"], "target_model": model, "language": "de"}, "voice_id": v}
            for r, model, v in zip(rows, qwen.target_models, voices, strict=True)
        ],
    )
    assert theirs.bundles.merge(fine)["takes"] == 3
    df = theirs.df
    assert set(qwen.target_models) <= set(df["target_model"].astype(object))
    assert set(voices[:2]) <= set(df["voice_id"].dropna().astype(object))


# --- the validator on random rows ------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def sample_rows(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rows")
    with ExperimentLog(folder / "source") as source:
        populate(source)
        path = source.bundles.export(folder / "b.zip")
    with zipfile.ZipFile(path) as zf:
        return {n: json.loads(zf.read(n)) for n in ("takes.json", "annotations.json", "utterances.json")}


CHECKS = {"takes.json": check_take, "annotations.json": check_annotation, "utterances.json": check_utterance}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_validator_never_crashes_and_what_it_accepts_loads_back(sample_rows, data):
    table = data.draw(st.sampled_from(sorted(CHECKS)))
    row = dict(data.draw(st.sampled_from(sample_rows[table])))
    for _ in range(data.draw(st.integers(1, 3))):  # mutate a field: a random value, or drop it
        key = data.draw(st.sampled_from([*sorted(row), "design"]))
        if data.draw(st.booleans()) and key in row:
            del row[key]
        else:
            row[key] = data.draw(_json)
    try:
        clean = CHECKS[table](0, row)
    except RowError as exc:
        assert table in str(exc)
        return
    json.dumps(clean)  # accepted rows are plain JSON
    if table == "takes.json":
        take = Take.from_dict(clean)
        assert take.take_id == clean["take_id"] and isinstance(take.chosen, bool)
        pd.Timestamp(clean["started_at"])  # the frame's time parser reads it


def test_one_bad_metric_or_an_unholdable_time_in_the_log_does_not_stop_its_readers(bundle, theirs, tmp_path):
    """Issue 23, item 5: a metric holding text where others hold numbers, or a time pandas cannot
    hold (written by an older version, or by hand), made log.df, the report and evidence fail for
    the whole log. The bad value is missing; every other value reads."""
    theirs.bundles.merge(bundle)
    take = theirs.takes(experiment="exp")[0]
    theirs.db.query("UPDATE takes SET metrics = :m WHERE take_id = :id", {"m": '{"f0": "high"}', "id": take.take_id})
    theirs.db.query(
        "UPDATE takes SET finished_at = '2263-01-01T00:00:00.000000Z' WHERE take_id = :id", {"id": take.take_id}
    )
    df = theirs.df
    assert df["m_f0"].dtype == "float64"
    assert df.loc[df.take_id == take.take_id, "m_f0"].isna().all()
    assert df["m_f0"].notna().sum() == 2, "the other takes' measures still read"
    assert df.loc[df.take_id == take.take_id, "finished_at"].isna().all()
    from cosyvoice_lab.views.report import write_report

    page = write_report(theirs, tmp_path / "report.html").read_text()
    assert all(t.take_id[:8] in page for t in theirs.takes(experiment="exp")), "every take is in the report"


def test_audio_no_row_names_is_never_unpacked_nor_stored(bundle, theirs, tmp_path):
    """Issue 23, item 7: 150,000 tiny members no row names held the write lock for 201 s, and a
    1 GiB member with a matching sha256 landed in the store although no row named it."""
    import hashlib

    extra = {}
    for i in range(2000):  # stray audio, each a valid store name with a matching sha256
        data = f"stray {i}".encode()
        extra[f"audio/{hashlib.sha256(data).hexdigest()}.wav"] = data
    with zipfile.ZipFile(bundle) as zf:
        members = [(n, zf.read(n)) for n in zf.namelist()]
    stray = _zip(tmp_path / "stray-audio.zip", [*members, *extra.items()])
    counts = theirs.bundles.merge(stray)
    assert counts["takes"] == 3 and counts["audio_files"] == 4, "only the audio its rows name"
    store = tmp_path / "theirs" / "audio"
    assert not any((store / name.split("/")[1]).exists() for name in extra)


def test_an_audio_member_over_its_size_is_refused_from_the_zip_directory(bundle, theirs, tmp_path):
    with zipfile.ZipFile(bundle) as zf:
        members = [(n, zf.read(n)) for n in zf.namelist()]
    bomb = tmp_path / "audio-bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
        with zf.open("audio/" + "0" * 64 + ".wav", "w", force_zip64=True) as out:
            chunk = bytes(1 << 22)
            for _ in range(catalog.BUNDLE_MAX_AUDIO_BYTES // len(chunk) + 1):
                out.write(chunk)
    assert bomb.stat().st_size < catalog.BUNDLE_MAX_AUDIO_BYTES // 100, "a small zip that unpacks huge"
    before = snapshot(theirs, tmp_path)
    with pytest.raises(LogError, match=r"over the limit of \d+ for one audio file"):
        theirs.bundles.merge(bomb)
    assert snapshot(theirs, tmp_path) == before
