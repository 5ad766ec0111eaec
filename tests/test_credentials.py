"""Where the key comes from, and that it never shows."""

import pickle

import pytest

from cosyvoice_lab.credentials import Secret, find_api_key, redact, resolve_api_key
from cosyvoice_lab.errors import CredentialsError

KEY = "sk-credtest0123456789abcdef"


def write_credentials(home, text):
    (home / ".alibabacloud").mkdir()
    (home / ".alibabacloud" / "credentials").write_text(text)


def test_argument_beats_environment(tmp_path):
    assert find_api_key("sk-arg", env={"DASHSCOPE_API_KEY": KEY}, home=tmp_path).reveal() == "sk-arg"


def test_environment_beats_file(tmp_path):
    write_credentials(tmp_path, "[default]\ndashscope_api_key = sk-file\n")
    found = find_api_key(env={"DASHSCOPE_API_KEY": KEY}, home=tmp_path)
    assert found.reveal() == KEY and found.source == "DASHSCOPE_API_KEY"


def test_file_default_profile(tmp_path):
    write_credentials(tmp_path, "[default]\ntype = access_key\ndashscope_api_key = sk-file\n")
    assert find_api_key(env={}, home=tmp_path).reveal() == "sk-file"


def test_file_named_profile(tmp_path):
    write_credentials(tmp_path, "[default]\ndashscope_api_key = sk-a\n[team]\ndashscope_api_key = sk-b\n")
    assert find_api_key(env={"ALIBABA_CLOUD_PROFILE": "team"}, home=tmp_path).reveal() == "sk-b"


def test_missing_profile_or_key_means_no_key(tmp_path):
    write_credentials(tmp_path, "[default]\naccess_key_id = x\n")
    assert find_api_key(env={}, home=tmp_path) is None
    with pytest.raises(CredentialsError, match="DASHSCOPE_API_KEY"):
        resolve_api_key(env={}, home=tmp_path)


def test_broken_file_is_a_clear_error(tmp_path):
    write_credentials(tmp_path, "dashscope_api_key = no section\n")
    with pytest.raises(CredentialsError, match="credentials"):
        find_api_key(env={}, home=tmp_path)


def test_secret_never_shows_itself():
    s = Secret(KEY)
    for shown in (str(s), repr(s), f"{s}", f"{s!r}", "%s" % s, format(s, ">40"), repr([s]), repr({"k": s})):  # noqa: UP031
        assert KEY not in shown and "0123456789" not in shown
    with pytest.raises(TypeError):
        pickle.dumps(s)
    assert s.reveal() == KEY


def test_empty_key_rejected():
    with pytest.raises(CredentialsError):
        Secret("  ")


# --- pasted keys with something extra inside (issue 12.7a) -----------------------------------


@pytest.mark.parametrize(
    "inside,kind",
    [
        ("\x1b[0m", "escape character"),
        ("\r", "carriage return"),
        ("\n", "line break"),
        ("\t", "tab"),
        (" ", "space"),
        ("\u200b", "invisible formatting character"),
        ("\x00", "control character"),
        ("\u00a0", "whitespace character"),
        ("é", "non-ASCII character"),
    ],
)
def test_a_key_with_a_control_character_or_whitespace_inside_is_refused_without_echo(inside, kind):
    key = KEY[:10] + inside + KEY[10:]
    with pytest.raises(CredentialsError) as info:
        Secret(key)
    message = str(info.value)
    assert kind in message and f"at character 11 of {len(key)}" in message
    assert KEY[:10] not in message and KEY[10:] not in message and "credtest" not in message


def test_the_refusal_names_where_the_key_came_from(tmp_path):
    with pytest.raises(CredentialsError, match="DASHSCOPE_API_KEY has a line break") as info:
        find_api_key(env={"DASHSCOPE_API_KEY": KEY[:8] + "\n" + KEY[8:]}, home=tmp_path)
    assert "credtest" not in str(info.value)
    write_credentials(tmp_path, f"[default]\ndashscope_api_key = {KEY[:8]}\t{KEY[8:]}\n")
    with pytest.raises(CredentialsError, match=r"credentials \[default\] has a tab") as info:
        find_api_key(env={}, home=tmp_path)
    assert "credtest" not in str(info.value)


def test_whitespace_around_a_key_is_forgiven():
    assert Secret(f"  {KEY}\r\n").reveal() == KEY
    assert find_api_key(env={"DASHSCOPE_API_KEY": KEY + "\n"}).reveal() == KEY


# --- redaction of server-supplied text (issue 12.7b) ------------------------------------------


def test_redact_replaces_the_key_and_anything_shaped_like_a_key():
    odd = "sk-odd-shape-but-mine"  # the pattern alone would miss this one: hyphens inside
    text = f"Authorization: Bearer {odd}; other sk-ABCdef0123456789 and sk-short, task-xyz"
    cleaned = redact(text, Secret(odd))
    assert cleaned == "Authorization: Bearer sk-***; other sk-*** and sk-short, task-xyz"
    assert Secret(odd).redact(text) == cleaned
    assert redact("nothing to hide", None) == "nothing to hide"
