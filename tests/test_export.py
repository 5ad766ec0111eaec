"""Export and import: CSV, Parquet, the HTML report (in headless chromium), bundles."""

import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import CHROMIUM, launch

from cosyvoice_lab.audio import Audio
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import LogError
from cosyvoice_lab.log.experiment_log import ExperimentLog
from cosyvoice_lab.log.export import read_parquet

DESIGN = VoiceDesign("一位低沉温暖的男声，语速缓慢", "你好，欢迎收听今天的节目。")
EN = VoiceDesign("A bright <i>cheerful</i> young woman", "Hello there, welcome.", target_model="cosyvoice-v3.5-flash")


def tone(seed: int, fmt: str = "wav") -> Audio:
    return Audio.from_numpy(0.2 * np.sin(np.arange(4800) / (4 + seed)), 24000, fmt)


def voice(i: int) -> str:
    return f"cosyvoice-v3.5-plus-vd-lab-{i:032x}"


def populate(log: ExperimentLog) -> dict:
    """Three takes with previews (one PCM), a failure, a reconciled take; annotations, metrics, an utterance."""
    takes = {}
    for i, (design, audio) in enumerate([(DESIGN, tone(1)), (EN, tone(2)), (DESIGN, tone(3, "pcm"))]):
        pending = log.table.start(
            design, backend="offline", experiment="exp", prompt_spec={"i": i}, cell=f"p{i}", repeat=0
        )
        takes[f"ok{i}"] = log.table.finish(
            pending.take_id,
            voice_id=voice(i),
            audio=audio,
            request_id=f"r{i}",
            metrics={"f0_mean_hz": 100.0 + i, "label": f"l{i}"},
        )
    failed = log.table.start(EN, backend="dashscope", experiment="other")
    takes["failed"] = log.table.fail(failed.take_id, error_code="InvalidParameter", error_message="bad & <worse>")
    unknown = log.table.start(DESIGN, backend="offline", experiment="exp")
    log.table.fail(unknown.take_id, error_code="OutcomeUnknown", error_message="timeout", status="unknown")
    takes["reconciled"] = log.table.reconcile(unknown.take_id, voice_id=voice(9))
    log.rate(takes["ok0"].take_id, 5)
    log.tag(takes["ok0"].take_id, "warm", "keeper")
    log.choose(takes["ok0"].take_id)
    log.note(takes["ok1"].take_id, "too fast")
    log.mark_played(takes["ok0"].take_id, takes["ok1"].take_id)
    log.utterances.add(
        takes["ok0"].take_id, text="你好", params={"rate": 1.0}, characters=4, cost_cny=0.0006, audio=tone(7)
    )
    return takes


@pytest.fixture
def log(tmp_path):
    with ExperimentLog(tmp_path / "mine") as opened:
        populate(opened)
        yield opened


# --- tables ----------------------------------------------------------------------------------


def test_csv_has_every_take_and_json_tags(log, tmp_path):
    path = log.export_csv(tmp_path / "out" / "takes.csv")
    frame = pd.read_csv(path)
    assert len(frame) == 5 and list(frame.columns) == list(log.df.columns)
    assert json.loads(frame.loc[0, "tags"]) == ["warm", "keeper"]
    assert len(pd.read_csv(log.export_csv(tmp_path / "exp.csv", experiment="exp"))) == 4
    assert not list((tmp_path / "out").glob(".tmp-*"))


def test_parquet_round_trips_the_dataframe(log, tmp_path):
    path = log.export_parquet(tmp_path / "takes.parquet")
    pd.testing.assert_frame_equal(read_parquet(path), log.df)
    assert len(read_parquet(log.export_parquet(tmp_path / "some.parquet", min_rating=4))) == 1


# --- the HTML report -----------------------------------------------------------------------------


def test_html_report_is_self_contained_and_escaped(log, tmp_path):
    page = log.export_html(tmp_path / "report.html").read_text()
    assert page.count("<audio") == 3 and page.count('src="data:audio/ogg;base64,') == 3  # compressed: Opus
    assert "&lt;i&gt;cheerful" in page and "<i>cheerful" not in page and "bad &amp; &lt;worse&gt;" in page
    assert "http://" not in page and "https://" not in page
    assert "no preview" in page  # the reconciled take


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM}")
def test_exporting_the_report_again_encodes_only_previews_it_has_not_encoded_before(log, tmp_path, monkeypatch):
    encoded, real = [], Audio.compressed
    monkeypatch.setattr(Audio, "compressed", lambda self, kbps: encoded.append(self.sha256) or real(self, kbps))
    fresh = Audio.from_numpy(np.random.default_rng().uniform(-0.2, 0.2, 12000), 24000, "wav")  # new to this process
    take = log.table.start(EN, backend="offline", experiment="new")
    log.table.finish(take.take_id, voice_id=voice(5), audio=fresh, request_id="r5")
    first = log.export_html(tmp_path / "a.html")
    assert fresh.sha256 in encoded
    log.rate(take.take_id, 4)  # a little later: one more rating, the report sent again
    again = len(encoded)
    second = log.export_html(tmp_path / "b.html")
    assert len(encoded) == again  # nothing encoded again
    players = [re.findall(r'src="(data:audio/ogg;base64,[^"]+)"', p.read_text()) for p in (first, second)]
    assert len(players[0]) == 4 and players[0] == players[1]  # the same players, the rating changed


def test_html_report_opens_in_headless_chromium_with_one_player_per_take_with_audio(log, tmp_path):
    from playwright.sync_api import sync_playwright

    path = log.export_html(tmp_path / "report.html")
    with_audio = sum(1 for t in log.takes() if t.audio_path)
    requests = []
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.as_uri())
            assert page.locator("table tbody tr").count() == len(log)
            assert page.locator("audio").count() == with_audio == 3
            durations = page.evaluate("""() => Promise.all([...document.querySelectorAll('audio')].map(a =>
                new Promise((ok, no) => { a.onloadedmetadata = () => ok(a.duration);
                                          a.onerror = () => no(a.src.slice(0, 40)); a.load(); })))""")
        finally:
            browser.close()
    assert durations == pytest.approx([0.2, 0.2, 0.2], abs=0.01)  # each embedded preview decodes
    assert all(url.startswith(("file:", "data:")) for url in requests), requests  # no server, no network


# --- bundles ---------------------------------------------------------------------------------------


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["audio_path"])


def test_bundle_merges_into_another_log_without_duplicates(log, tmp_path):
    bundle = log.bundles.export(tmp_path / "share.zip")
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read("manifest.json"))
    assert {"manifest.json", "takes.json", "annotations.json", "utterances.json"} <= names
    assert manifest["counts"] == {"takes": 5, "annotations": 6, "utterances": 1, "ratings": 1, "audio_files": 4}
    with ExperimentLog(tmp_path / "theirs") as theirs:
        first = theirs.bundles.merge(bundle)
        assert first == {
            "takes": 5, "takes_updated": 0, "annotations": 6, "utterances": 1, "ratings": 1, "audio_files": 4
        }  # fmt: skip
        assert theirs.bundles.merge(bundle) == dict.fromkeys(first, 0)  # twice adds nothing
        pd.testing.assert_frame_equal(comparable(theirs.df), comparable(log.df))
        pd.testing.assert_frame_equal(theirs.annotations(), log.annotations())
        pd.testing.assert_frame_equal(
            theirs.utterances.to_dataframe().drop(columns="audio_path"),
            log.utterances.to_dataframe().drop(columns="audio_path"),
        )
        for take in theirs.takes():
            if take.audio_path:
                assert take.audio == log.get(take.take_id).audio
        uid = theirs.utterances.to_dataframe()["utterance_id"][0]
        assert theirs.utterances.audio(uid) == log.utterances.audio(uid)
    assert log.bundles.merge(bundle) == dict.fromkeys(first, 0)  # into itself: nothing new


def test_bundle_of_one_experiment(log, tmp_path):
    bundle = log.bundles.export(tmp_path / "exp.zip", experiment="exp")
    with ExperimentLog(tmp_path / "theirs") as theirs:
        assert theirs.bundles.merge(bundle)["takes"] == 4
        assert set(theirs.df["experiment"]) == {"exp"}


def test_annotations_from_a_teammate_merge_both_ways(log, tmp_path):
    ok0 = log.takes(min_rating=5)[0]
    with ExperimentLog(tmp_path / "theirs") as theirs:
        theirs.bundles.merge(log.bundles.export(tmp_path / "a.zip"))
        theirs.rate(ok0.take_id, 2)  # a later opinion
        theirs.untag(ok0.take_id, "keeper")
        theirs.tag(ok0.take_id, "noisy")
        counts = log.bundles.merge(theirs.bundles.export(tmp_path / "b.zip"))
        assert counts["takes"] == 0 and counts["annotations"] == 2 and counts["ratings"] == 1
        merged = log.get(ok0.take_id)
        assert (merged.rating, merged.tags, merged.chosen) == (2, ("warm", "noisy"), True)
        assert log.annotations(ok0.take_id)["action"].tolist() == [
            "rate",
            "tag",
            "tag",
            "choose",
            "played",
            "rate",
            "untag",
            "tag",
        ]
        # and back again: both logs now agree, and nothing is duplicated
        theirs.bundles.merge(log.bundles.export(tmp_path / "c.zip"))
        pd.testing.assert_frame_equal(comparable(theirs.df), comparable(log.df))
        assert len(theirs.annotations()) == len(log.annotations()) == 10


def test_a_pending_take_arrives_interrupted_and_its_outcome_follows(tmp_path):
    with ExperimentLog(tmp_path / "a") as a, ExperimentLog(tmp_path / "b") as b:
        pending = a.table.start(DESIGN, backend="offline")
        b.bundles.merge(a.bundles.export(tmp_path / "1.zip"))
        assert b.get(pending.take_id).status == "interrupted"
        a.table.finish(pending.take_id, voice_id=voice(1), audio=tone(1))
        counts = b.bundles.merge(a.bundles.export(tmp_path / "2.zip"))
        assert counts["takes_updated"] == 1 and counts["audio_files"] == 1
        assert b.get(pending.take_id).ok and b.get(pending.take_id).audio == tone(1)


def _rewrite(bundle: Path, out: Path, change) -> Path:
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = change(name, src.read(name))
            if data is not None:
                dst.writestr(name, data)
    return out


def test_damaged_or_foreign_bundles_are_refused_and_nothing_merges(log, tmp_path):
    bundle = log.bundles.export(tmp_path / "share.zip")
    audio_name = next(n for n in zipfile.ZipFile(bundle).namelist() if n.startswith("audio/"))
    bad = {
        "not a zip": tmp_path / "junk.zip",
        "tampered audio": _rewrite(bundle, tmp_path / "t.zip", lambda n, d: d[:-1] + b"!" if n == audio_name else d),
        "missing audio": _rewrite(bundle, tmp_path / "m.zip", lambda n, d: None if n == audio_name else d),
        "newer format": _rewrite(
            bundle,
            tmp_path / "v.zip",
            lambda n, d: json.dumps({**json.loads(d), "version": 99}).encode() if n == "manifest.json" else d,
        ),
        "foreign zip": _rewrite(bundle, tmp_path / "f.zip", lambda n, d: None if n == "manifest.json" else d),
        "bad rating": _rewrite(
            bundle,
            tmp_path / "r.zip",
            lambda n, d: json.dumps([{**t, "rating": 9} for t in json.loads(d)]).encode() if n == "takes.json" else d,
        ),
        "bad metric": _rewrite(
            bundle,
            tmp_path / "x.zip",
            lambda n, d: (
                json.dumps([{**t, "metrics": {"no good": 1}} for t in json.loads(d)]).encode()
                if n == "takes.json"
                else d
            ),
        ),
    }
    bad["not a zip"].write_text("hello")
    with ExperimentLog(tmp_path / "theirs") as theirs:
        for why, path in bad.items():
            with pytest.raises(LogError) as info:
                theirs.bundles.merge(path)
            assert str(path) in str(info.value), why
        assert len(theirs) == 0 and theirs.annotations().empty


def test_export_refuses_a_bundle_with_missing_audio(log, tmp_path):
    take = log.takes(min_rating=5)[0]
    Path(take.audio_path).unlink()
    with pytest.raises(LogError, match="missing") as info:
        log.bundles.export(tmp_path / "share.zip")
    assert info.value.path == Path(take.audio_path)
    assert not (tmp_path / "share.zip").exists()


def test_a_key_quoted_in_a_bundle_is_not_stored_on_import(log, tmp_path):
    key = "sk-cosyvoicelabFAKE0123456789abcdefKEY"
    bundle = _rewrite(
        log.bundles.export(tmp_path / "share.zip"),
        tmp_path / "k.zip",
        lambda n, d: (
            json.dumps([{**t, "error_message": f"Invalid API-key provided: {key}"} for t in json.loads(d)]).encode()
            if n == "takes.json"
            else d
        ),
    )
    with ExperimentLog(tmp_path / "theirs") as theirs:
        theirs.bundles.merge(bundle)
        assert all(key not in (t.error_message or "") for t in theirs.takes()) and len(theirs) == 5
    assert key.encode() not in (tmp_path / "theirs" / "log.sqlite3").read_bytes()


def _names_audio(key: str, value: str):
    """A rewrite that makes every row of takes.json or utterances.json name ``value`` as its audio."""
    file, column = {"take": ("takes.json", "audio_path"), "utterance": ("utterances.json", "audio_file")}[key]
    return lambda n, d: json.dumps([{**r, column: value} for r in json.loads(d)]).encode() if n == file else d


@pytest.mark.parametrize("key", ["take", "utterance"])
@pytest.mark.parametrize("hostile", ["/etc/passwd", "../x", "audio/../../etc/passwd", "audio/x.wav"])
def test_a_bundle_naming_audio_outside_the_store_is_refused_and_nothing_merges(log, tmp_path, key, hostile):
    bundle = _rewrite(log.bundles.export(tmp_path / "share.zip"), tmp_path / "h.zip", _names_audio(key, hostile))
    with ExperimentLog(tmp_path / "theirs") as theirs:
        with pytest.raises(LogError, match="not an audio store name") as info:
            theirs.bundles.merge(bundle)
        assert str(bundle) in str(info.value) and repr(hostile) in str(info.value)
        assert f"{key} " in str(info.value)  # names the row
        assert len(theirs) == 0 and theirs.annotations().empty and theirs.utterances.to_dataframe().empty
        assert theirs.audio_store.names() == []


def test_a_bundle_holding_a_file_outside_the_audio_folder_is_refused(log, tmp_path):
    bundle = log.bundles.export(tmp_path / "share.zip")
    with zipfile.ZipFile(bundle, "a") as zf:
        zf.writestr("audio/../../escaped.wav", b"RIFF")
    with ExperimentLog(tmp_path / "theirs") as theirs:
        with pytest.raises(LogError, match="not an audio store name") as info:
            theirs.bundles.merge(bundle)
        assert str(bundle) in str(info.value)
        assert len(theirs) == 0 and theirs.audio_store.names() == []
    assert not (tmp_path / "escaped.wav").exists()


HOSTILE = '<script>window.__pwned = 1</script>"\'><img src=x onerror="window.__pwned = 2">'


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM}")
def test_report_of_a_hostile_bundle_runs_no_script_in_headless_chromium(tmp_path):
    """A teammate's bundle with HTML in every text field it may carry: merged, reported, opened — nothing runs."""
    from playwright.sync_api import sync_playwright

    design = VoiceDesign("A calm voice " + HOSTILE, "Hello " + HOSTILE)
    with ExperimentLog(tmp_path / "teammate") as theirs:
        ok = theirs.table.start(design, backend="offline", experiment="exp " + HOSTILE, cell="c " + HOSTILE, repeat=0)
        theirs.table.finish(ok.take_id, voice_id=voice(7), audio=tone(7), metrics={"median_f0_hz": 120.0})
        theirs.note(ok.take_id, "note " + HOSTILE)
        theirs.tag(ok.take_id, "tag<b>x</b>")
        bad = theirs.table.start(design, backend="offline", experiment="exp " + HOSTILE)
        theirs.table.fail(bad.take_id, error_code="Code" + HOSTILE, error_message="message " + HOSTILE)
        bundle = theirs.bundles.export(tmp_path / "share.zip")
    with ExperimentLog(tmp_path / "mine") as mine:
        mine.bundles.merge(bundle)
        report = mine.export_html(tmp_path / "report.html")
    dialogs = []
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(report.as_uri())
            page.wait_for_timeout(300)  # give an injected onerror handler the time to fire
            pwned = page.evaluate("() => window.__pwned === undefined ? null : window.__pwned")
            injected = page.locator("body script, body img[src='x']").count()
            shown = page.inner_text("body")
        finally:
            browser.close()
    assert pwned is None and not dialogs and injected == 0
    assert "<script>window.__pwned = 1</script>" in shown  # shown as text, not run
