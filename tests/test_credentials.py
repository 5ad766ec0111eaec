"""Where the key comes from, and that it never shows."""
import pickle

import pytest

from cosyvoice_lab.credentials import Secret, find_api_key, resolve_api_key
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
    for shown in (str(s), repr(s), f"{s}", f"{s!r}", "%s" % s, format(s, ">40"), repr([s]), repr({"k": s})):
        assert KEY not in shown and "0123456789" not in shown
    with pytest.raises(TypeError):
        pickle.dumps(s)
    assert s.reveal() == KEY


def test_empty_key_rejected():
    with pytest.raises(CredentialsError):
        Secret("  ")
