"""The zero-setup token file: where it is, who may use it, how it is made (0600 in a 0700 folder, one token
however many processes start at once)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from pi_socket import tokenfile


def test_path_precedence():
    assert tokenfile.token_path({"HOME": "/h"}) == Path("/h/.config/hyper-pi/token")
    assert tokenfile.token_path({"HOME": "/h", "XDG_CONFIG_HOME": "/x"}) == Path("/x/hyper-pi/token")
    assert tokenfile.token_path({"HOME": "/h", "XDG_CONFIG_HOME": "/x", "HYPI_TOKEN_FILE": "/t/f"}) == Path("/t/f")


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("abc\n", "abc"),
        ("  abc  ", "abc"),
        ("", None),
        ("\n", None),
        ("a b", None),
        ("a\x00b", None),
        ("x" * 513, None),
    ],
)
def test_valid_token(text, token):
    assert tokenfile.valid_token(text) == token


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("ws://localhost:31415/ws", True),
        ("ws://127.0.0.1:31415/ws", True),
        ("ws://127.8.9.1/ws", True),
        ("ws://[::1]:31415/ws", True),
        ("ws://LOCALHOST/ws", True),
        ("ws://100.64.0.1:31415/ws", False),
        ("ws://example.com/ws", False),
        ("ws://localhost.example.com/ws", False),
        ("not a url", False),
        ("ws://[bad/ws", False),
    ],
)
def test_only_a_local_hypivisor_gets_the_files_token(url, local):
    assert tokenfile.is_local_url(url) is local
    assert tokenfile.bridge_token({"HOME": "/h"}, True, url)[0] is local


def test_the_environment_wins_and_a_bridge_without_a_registry_uses_the_file():
    assert tokenfile.bridge_token({"HOME": "/h", "HYPI_TOKEN": "t"}, True, "ws://localhost/ws")[0] is False
    assert tokenfile.bridge_token({"HOME": "/h"}, False, "off") == (True, Path("/h/.config/hyper-pi/token"))


def test_created_once_private_and_read_back(tmp_path):
    path = tmp_path / "cfg" / "hyper-pi" / "token"
    token, created = tokenfile.load_or_create(path)
    assert created and len(token) >= 40 and tokenfile.valid_token(token) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert tokenfile.load_or_create(path) == (token, False)
    assert tokenfile.read_token(path) == token
    assert tokenfile.read_token(tmp_path / "none") is None


def test_loose_modes_are_tightened(tmp_path):
    folder = tmp_path / "hyper-pi"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    (folder / "token").write_text("mine\n")
    os.chmod(folder / "token", 0o644)
    assert tokenfile.load_or_create(folder / "token") == ("mine", False)
    assert stat.S_IMODE((folder / "token").stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_an_unusable_file_is_a_clear_error_and_is_kept(tmp_path, monkeypatch):
    path = tmp_path / "token"
    path.write_text("two words\n")
    monkeypatch.setattr(tokenfile, "CREATE_WAIT_S", 0.1)
    with pytest.raises(tokenfile.TokenFileError, match="no usable token"):
        tokenfile.load_or_create(path)
    with pytest.raises(tokenfile.TokenFileError):
        tokenfile.read_token(path)
    assert path.read_text() == "two words\n", "never overwritten"


def test_concurrent_starts_agree_on_one_token(tmp_path):
    path = tmp_path / "hyper-pi" / "token"
    results: list[tuple[str, bool]] = []
    threads = [threading.Thread(target=lambda: results.append(tokenfile.load_or_create(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len({r[0] for r in results}) == 1 and sum(r[1] for r in results) == 1


def test_dashboard_url_carries_the_token_in_the_fragment():
    assert tokenfile.dashboard_url("0.0.0.0", 5180, "a/b+c") == "http://localhost:5180/#token=a%2Fb%2Bc"
    assert tokenfile.dashboard_url("::1", 5180, "t") == "http://[::1]:5180/#token=t"
    assert tokenfile.dashboard_url("127.0.0.1", 80, "t") == "http://127.0.0.1:80/#token=t"


def test_a_list_of_hypivisors_gets_the_token_file_only_when_all_are_local() -> None:
    env = {"HOME": "/h"}
    assert tokenfile.bridge_token(env, True, "ws://127.0.0.1:1/ws,ws://localhost:2/ws")[0] is True
    # the first is local, the second is not: this machine's token must not reach the second
    assert tokenfile.bridge_token(env, True, "ws://127.0.0.1:1/ws,ws://remote.example:2/ws")[0] is False
    assert tokenfile.bridge_token(env, True, "ws://remote.example:2/ws,ws://127.0.0.1:1/ws")[0] is False
