"""The hypivisor's token at start: HYPI_TOKEN, else the token file (made at the first start), else none with
--no-token; what the start prints about it; ``hypivisor url``."""

from __future__ import annotations

import stat

import pytest

from hypivisor import config as config_mod
from hypivisor import tokensetup


def resolved(argv, env):
    return tokensetup.resolve(config_mod.parse(argv, env), env)


def test_environment_beats_the_file_and_makes_none(tmp_path):
    env = {"HOME": str(tmp_path), "HYPI_TOKEN": "from-env"}
    cfg = resolved([], env)
    assert (cfg.token, cfg.token_file) == ("from-env", None)
    assert not (tmp_path / ".config").exists()
    assert tokensetup.lines(cfg, tty=True) == []


def test_first_start_makes_the_file_and_prints_the_link_later_starts_reuse_it(tmp_path):
    env = {"HOME": str(tmp_path)}
    first = resolved([], env)
    path = tmp_path / ".config" / "hyper-pi" / "token"
    assert first.token and first.token_file == path and first.token_created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    said = "\n".join(tokensetup.lines(first, tty=False))
    assert f"http://localhost:5180/#token={first.token}" in said and str(path) in said
    again = resolved([], env)
    assert (again.token, again.token_created) == (first.token, False)
    quiet = "\n".join(tokensetup.lines(again, tty=False))
    assert first.token not in quiet and "hypivisor url" in quiet, "a service's log gets the path, not the token"
    assert first.token in "\n".join(tokensetup.lines(again, tty=True))


def test_no_token_reads_and_makes_nothing(tmp_path):
    cfg = resolved(["--no-token"], {"HOME": str(tmp_path)})
    assert cfg.token is None and cfg.no_token and cfg.token_file is None
    assert not (tmp_path / ".config").exists()


def test_no_token_with_hypi_token_is_a_configuration_error(tmp_path):
    with pytest.raises(ValueError, match="contradict"):
        config_mod.parse(["--no-token"], {"HOME": str(tmp_path), "HYPI_TOKEN": "x"})


def test_xdg_config_home_and_hypi_token_file(tmp_path):
    assert resolved([], {"HOME": "/nowhere", "XDG_CONFIG_HOME": str(tmp_path)}).token_file == (
        tmp_path / "hyper-pi" / "token"
    )
    assert resolved([], {"HOME": "/nowhere", "HYPI_TOKEN_FILE": str(tmp_path / "t")}).token_file == tmp_path / "t"


def test_url_command(tmp_path, capsys):
    env = {"HOME": str(tmp_path)}
    assert tokensetup.url_main([], env) == 0
    assert capsys.readouterr().out == "http://localhost:5180/\n"
    token = resolved([], env).token
    assert tokensetup.url_main(["--dashboard-port", "9000"], env) == 0
    assert capsys.readouterr().out == f"http://localhost:9000/#token={token}\n"
    assert tokensetup.url_main([], {**env, "HYPI_TOKEN": "e"}) == 0
    assert capsys.readouterr().out == "http://localhost:5180/#token=e\n"
