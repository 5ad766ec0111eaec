"""The listening panel end to end: a real panel on loopback over a log the offline simulator
filled (2 prompts × 2 models × 2 repeats), driven through its JSON API with real HTTP (also over a
team's log on PostgreSQL); the CLI as a real process; hypothesis for the request validators."""

import json
import os
import re
import signal
import subprocess
import sys
import unicodedata
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from labs import compared_lab

from cosyvoice_lab import html
from cosyvoice_lab.panel import Panel, start
from cosyvoice_lab.panel.rounds import parse_rater, parse_rating_request, token_ok

PROMPTS = ["A calm middle-aged man with a warm, deep voice.", "A bright young woman who speaks quickly and cheerfully."]
PREVIEW = "Hello, how are you today?"
PLUS, FLASH = "cosyvoice-v3.5-plus", "cosyvoice-v3.5-flash"
EXPERIMENT = "panel-test"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A lab whose log holds one compare: 8 ok takes with previews."""
    lab = compared_lab(tmp_path_factory.mktemp("lab"), PROMPTS, preview_text=PREVIEW, experiment=EXPERIMENT)
    assert sum(t.ok for t in lab.log.takes(experiment=EXPERIMENT)) == 8
    return lab


@pytest.fixture
def panel(lab):
    with start(lab.log, EXPERIMENT, port=0) as p:
        yield p


def base(panel: Panel) -> str:
    return f"http://127.0.0.1:{panel.port}"


def join(panel: Panel, rater: str, token: str | None = None) -> dict:
    params = {"rater": rater, **({"token": token} if token else {})}
    r = requests.get(base(panel) + "/api/session", params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def join_link(link: str) -> dict:
    """The session a personal invite link opens (the page's own request: its query, on the API)."""
    query = dict(parse_qsl(urlsplit(link).query))
    r = requests.get(link.split("?")[0] + "api/session", params=query, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def rate(panel: Panel, session: str, item: str, rating, token: str | None = None) -> requests.Response:
    params = {"token": token} if token else {}
    body = {"session": session, "item": item, "rating": rating}
    return requests.post(base(panel) + "/api/rating", json=body, params=params, timeout=10)


def test_a_rater_hears_every_take_rates_them_and_the_log_holds_each_rating(lab, panel):
    takes = {t.take_id: t for t in lab.log.takes(experiment=EXPERIMENT)}
    page = requests.get(panel.url, timeout=10)
    assert page.status_code == 200 and "Listening panel" in page.text and "/static/panel.js" in page.text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    session = join(panel, "ana")
    items = session["items"]
    assert [i["label"] for i in items] == list("ABCDEFGH") and all(i["rating"] is None for i in items)
    assert all("description" not in i for i in items)
    heard = {requests.get(base(panel) + i["audio_url"], timeout=10).content for i in items}
    assert heard == {t.audio.data for t in takes.values()}  # every preview, once each
    for n, item in enumerate(items):
        r = rate(panel, session["session"], item["id"], 1 + n % 5)
        assert r.status_code == 200 and r.json()["rated"] == n + 1
    frame = lab.log.ratings.to_dataframe(EXPERIMENT)
    mine = frame[frame["rater"] == "ana"]
    assert len(mine) == 8 and set(mine["take_id"]) == set(takes) and set(mine["kind"]) == {"preference"}
    assert sorted(mine["rating"]) == sorted(1 + n % 5 for n in range(8))
    progress = panel.progress()
    assert progress[["rater", "rated", "total"]].to_dict("records") == [{"rater": "ana", "rated": 8, "total": 8}]


def test_the_same_name_resumes_the_session_with_its_ratings_and_a_new_name_gets_its_own_order(panel):
    first = join(panel, "Bo")
    rate(panel, first["session"], first["items"][2]["id"], 4).raise_for_status()
    rate(panel, first["session"], first["items"][2]["id"], 2).raise_for_status()  # changed their mind
    again = join(panel, "  Bo ")  # the tab was closed: same name (stripped)
    assert again["items"] == [{**i, "rating": 2 if n == 2 else None} for n, i in enumerate(first["items"])]
    assert again["session"] == first["session"]
    other_case = join(panel, "bo")  # names are exact: "bo" is another rater
    assert other_case["session"] != first["session"]
    assert [i["id"] for i in again["items"]] == [i["id"] for i in first["items"]]
    assert [i["rating"] for i in again["items"]] == [None, None, 2, None, None, None, None, None]
    other = join(panel, "cy")
    assert other["session"] != first["session"]
    assert not {i["id"] for i in other["items"]} & {i["id"] for i in first["items"]}
    assert not {i["audio_url"] for i in other["items"]} & {i["audio_url"] for i in first["items"]}
    assert panel.ratings()["rating"].tolist() == [2]  # the latest rating of Bo's session only


def test_a_preference_round_reveals_no_model_voice_take_or_prompt(lab, panel):
    takes = lab.log.takes(experiment=EXPERIMENT)
    secrets_ = {PLUS, FLASH, html.short_model(PLUS), html.short_model(FLASH), EXPERIMENT}
    for t in takes:
        secrets_ |= {t.take_id, t.take_id[:8], t.voice_id, t.prompt, t.audio.sha256, t.audio.sha256[:16]}
        secrets_ |= set(re.findall(r"[a-z]{6,}", t.prompt.lower()))  # "middle", "quickly", ...
    seen = [requests.get(panel.url, timeout=10).text, requests.get(base(panel) + "/static/panel.js", timeout=10).text]
    for rater in ("dee", "eve"):
        session = join(panel, rater)
        seen.append(json.dumps(session))
        seen += [i["audio_url"] for i in session["items"]]
        seen.append(rate(panel, session["session"], session["items"][0]["id"], 5).text)
        audio = requests.get(base(panel) + session["items"][0]["audio_url"], timeout=10)
        seen.append(json.dumps(dict(audio.headers)))
    text = "\n".join(seen).lower()
    leaked = sorted(s for s in secrets_ if s.lower() in text)
    assert not leaked


def test_an_adherence_round_shows_each_description_and_records_the_kind(lab):
    prompts_of = {t.take_id: t.prompt for t in lab.log.takes(experiment=EXPERIMENT)}
    with start(lab.log, EXPERIMENT, kind="adherence", port=0) as panel:
        assert "how well it matches its description" in requests.get(panel.url, timeout=10).text
        session = join(panel, "fay")
        assert {i["description"] for i in session["items"]} == set(PROMPTS)
        rate(panel, session["session"], session["items"][0]["id"], 3).raise_for_status()
        frame = panel.ratings()
    assert frame["kind"].tolist() == ["adherence"] and frame["rater"].tolist() == ["fay"]
    assert prompts_of[frame["take_id"][0]] == session["items"][0]["description"]


def test_every_bad_request_is_refused_with_its_reason(panel):
    session = join(panel, "gus")
    sid, item = session["session"], session["items"][0]["id"]
    other_item = join(panel, "hal")["items"][0]["id"]
    for bad in (0, 6, -1, "3", 3.0, True, None, [3], {"v": 3}):
        assert rate(panel, sid, item, bad).status_code == 400, bad
    assert rate(panel, "no-such-session", item, 3).status_code == 404
    assert rate(panel, sid, "no-such-item", 3).status_code == 404
    assert rate(panel, sid, other_item, 3).status_code == 404  # an item of another rater's session
    url = base(panel) + "/api/rating"
    assert requests.post(url, data=b"{not json", timeout=10).status_code == 400
    assert requests.post(url, data=b"\xff\xfe", timeout=10).status_code == 400
    assert requests.post(url, json=[sid, item, 3], timeout=10).status_code == 400
    assert requests.post(url, data=b"[" * 4000, timeout=10).status_code == 400  # nested too deep for json
    assert requests.post(url, json={"session": sid, "item": item, "rating": 3, "x": 1}, timeout=10).status_code == 400
    huge = json.dumps({"session": sid, "item": item, "rating": 3, "pad": "x" * 100_000}).encode()
    assert requests.post(url, data=huge, timeout=10).status_code == 413
    for rater in ("", "   ", "x" * 65, "tab\there"):
        assert requests.get(base(panel) + "/api/session", params={"rater": rater}, timeout=10).status_code == 400
    assert requests.get(base(panel) + "/api/session", timeout=10).status_code == 400
    assert requests.get(base(panel) + "/audio/no-such-audio", timeout=10).status_code == 404
    assert requests.get(base(panel) + "/audio/../log.sqlite3", timeout=10).status_code == 404
    missing = requests.get(base(panel) + "/nothing-here", timeout=10)
    assert missing.status_code == 404 and "error" in missing.json()
    assert panel.ratings().empty  # nothing refused was written


def test_off_loopback_every_request_needs_the_join_token(lab):
    with Panel(lab.log, EXPERIMENT, host="0.0.0.0", port=0) as panel:
        token = panel.token
        assert token and panel.url.endswith(f"?token={token}") and token not in repr(panel)
        for path in ("/", "/api/session?rater=ivy", "/audio/anything"):
            assert requests.get(base(panel) + path, timeout=10).status_code == 403
            sep = "&" if "?" in path else "?"
            assert requests.get(f"{base(panel)}{path}{sep}token=wrong{token}", timeout=10).status_code == 403
        assert requests.post(base(panel) + "/api/rating", json={}, timeout=10).status_code == 403
        bare = requests.get(base(panel) + "/", timeout=10)  # a person who opened the link without its token
        assert bare.status_code == 403 and bare.headers["Content-Type"].startswith("text/html")
        assert "Ask them for it" in bare.text and "<script" not in bare.text
        api = requests.get(base(panel) + "/api/session", params={"rater": "x"}, timeout=10)
        assert api.status_code == 403 and "join token" in api.json()["error"], "the API still answers JSON"
        assert requests.get(base(panel) + "/", params={"token": token}, timeout=10).status_code == 200
        named = requests.get(base(panel) + "/api/session", params={"rater": "ivy", "token": token}, timeout=10)
        assert named.status_code == 403 and "invited raters only" in named.json()["error"]  # no open enrolment here
        link = panel.invite("ivy")
        assert f"token={token}" in link and "invite=" in link and link.startswith(panel.url.split("?")[0])
        bad = requests.get(base(panel) + "/api/session", params={"invite": "forged", "token": token}, timeout=10)
        assert bad.status_code == 403
        session = join_link(link)
        audio_url = session["items"][0]["audio_url"]
        assert audio_url.endswith(f"?token={token}")
        assert requests.get(base(panel) + audio_url, timeout=10).status_code == 200
        assert requests.get(base(panel) + audio_url.split("?")[0], timeout=10).status_code == 403
        assert rate(panel, session["session"], session["items"][0]["id"], 4).status_code == 403
        assert rate(panel, session["session"], session["items"][0]["id"], 4, token).status_code == 200
        assert panel.progress()[["rater", "rated", "total"]].to_dict("records") == [
            {"rater": "ivy", "rated": 1, "total": 8}
        ]
    with Panel(lab.log, EXPERIMENT, port=0) as loopback:
        assert loopback.token is None and "token" not in loopback.url


def model_of(lab, panel: Panel, session: dict, item_id: str) -> str:
    """What the organiser knows and the page never says: the model behind an item."""
    item = panel.round.item(panel.round.session(session["session"]), item_id)
    return lab.log.get(item.take_id).target_model


def test_the_evidence_holds_every_raters_ratings(lab, panel):
    # jo likes plus by 4 points, kim by 2: each rater centred, averaged per take, flash - plus = -3
    for rater, plus, flash in (("jo", 5, 1), ("kim", 4, 2)):
        session = join(panel, rater)
        for item in session["items"]:
            stars = plus if model_of(lab, panel, session, item["id"]) == PLUS else flash
            rate(panel, session["session"], item["id"], stars).raise_for_status()
    frame = panel.ratings()
    assert frame.groupby("rater").size().to_dict() == {"jo": 8, "kim": 8}
    ev = panel.evidence(variability=False)
    rows = ev.table[ev.table["measure"] == "blind preference rating"]
    assert len(rows) == 1 and rows.iloc[0]["n"] == 8  # one score per take
    assert rows.iloc[0]["estimate"] == pytest.approx(-3)  # only jo's: -4; only kim's: -2


def test_a_panel_needs_takes_to_rate_and_a_known_kind(lab):
    with pytest.raises(ValueError, match="no ok take"):
        Panel(lab.log, "no-such-experiment", port=0)
    with pytest.raises(ValueError, match="listening round"):
        Panel(lab.log, EXPERIMENT, kind="loudness", port=0)


def test_a_panel_over_a_teams_log_on_postgresql_serves_its_audio_and_records_there(lab, pg_log_url):
    from cosyvoice_lab.log import ExperimentLog
    from cosyvoice_lab.log.copy import copy_log

    copy_log(lab.log, pg_log_url)
    previews = {t.audio.data for t in lab.log.takes(experiment=EXPERIMENT)}
    with ExperimentLog(pg_log_url) as team, Panel(team, EXPERIMENT, port=0) as panel:
        session = join(panel, "max")
        assert {requests.get(base(panel) + i["audio_url"], timeout=10).content for i in session["items"]} == previews
        rate(panel, session["session"], session["items"][0]["id"], 4).raise_for_status()
        assert panel.progress()[["rater", "rated", "total"]].to_dict("records") == [
            {"rater": "max", "rated": 1, "total": 8}
        ]
        assert team.ratings.to_dataframe(EXPERIMENT).query("rater == 'max'")["rating"].tolist() == [4]


# --- the command line -----------------------------------------------------------------------------
def test_cosyvoice_lab_panel_serves_until_ctrl_c_and_prints_the_progress(lab):
    cli = Path(sys.executable).parent / "cosyvoice-lab"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [str(cli), "panel", "--folder", str(lab.log.folder), "--experiment", EXPERIMENT, "--port", "0"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        url = re.search(r"open (http://\S+)", line)[1]
        assert url.startswith("http://127.0.0.1:")
        session = requests.get(url + "api/session", params={"rater": "lee"}, timeout=10).json()
        body = {"session": session["session"], "item": session["items"][0]["id"], "rating": 5}
        requests.post(url + "api/rating", json=body, timeout=10).raise_for_status()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert re.search(r"lee\s+1\s+8", out)
    missing = subprocess.run([*args[:5], "nothing", "--port", "0"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no ok take" in missing.stderr


def test_lab_panel_returns_a_running_panel(lab):
    panel = start(lab.log, EXPERIMENT, port=0)
    url = panel.url
    try:
        assert requests.get(url, timeout=10).status_code == 200
        assert "preference round" in repr(panel) and url in repr(panel)  # loopback: no token to hide
    finally:
        panel.stop()
        panel.stop()  # twice is fine
    assert panel.wait(0)
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=2)


# --- the validators ---------------------------------------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(body=JSON | st.fixed_dictionaries({"session": JSON, "item": JSON, "rating": JSON}))
def test_a_rating_request_is_either_clean_or_refused(body):
    try:
        session, item, rating = parse_rating_request(body)
    except ValueError:
        return
    assert body == {"session": session, "item": item, "rating": rating}
    assert isinstance(rating, int) and not isinstance(rating, bool) and 1 <= rating <= 5
    assert isinstance(session, str) and isinstance(item, str) and 0 < len(session) <= 64 and 0 < len(item) <= 64


@settings(max_examples=300, deadline=None)
@given(session=st.text(min_size=1, max_size=64), item=st.text(min_size=1, max_size=64), rating=st.integers(1, 5))
def test_every_well_formed_rating_request_is_accepted(session, item, rating):
    assert parse_rating_request({"session": session, "item": item, "rating": rating}) == (session, item, rating)


@settings(max_examples=300, deadline=None)
@given(name=st.none() | st.text(max_size=80) | st.integers())
def test_a_rater_name_is_clean_or_refused(name):
    try:
        clean = parse_rater(name)
    except ValueError:
        return
    assert clean == unicodedata.normalize("NFC", name).strip() and 0 < len(clean) <= 64 and clean.isprintable()


@settings(max_examples=300, deadline=None)
@given(given_=st.none() | st.text(max_size=40) | st.integers())
def test_the_token_check_accepts_only_the_token(given_):
    expected = "Zm9vYmFyLXRva2VuLTEyMzQ1Njc4OTAxMjM0NQ"
    assert token_ok(expected, given_) is (given_ == expected)
    assert token_ok(expected, expected) and token_ok(None, given_)
