"""CLI and environment parsing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hypivisor import config
from hypivisor.rpc import parse_request
from hypivisor.service import RpcFailure


def test_defaults():
    c = config.parse([], {})
    assert (c.host, c.port, c.node_ttl, c.dashboard_port, c.log_level) == ("0.0.0.0", 31415, 30.0, 5180, "info")
    assert c.token is None and not c.allow_unauthenticated_spawn and c.spawn_timeout == 30.0
    assert c.dashboard_dir == Path(config.__file__).resolve().parent.parent / "pi_de" / "dist"


def test_flags_and_environment():
    env = {"HYPI_TOKEN": "t", "HYPI_ALLOWED_ORIGINS": "https://a.b", "HYPI_SPAWN_COMMAND": "cd {path} && pi",
           "HYPI_DASHBOARD_DIR": "/srv/d", "HYPI_SPAWN_TIMEOUT": "2.5"}  # fmt: skip
    c = config.parse(["-p", "1", "-t", "1.5", "--dashboard-port", "0", "--host", "127.0.0.1",
                      "--allow-unauthenticated-spawn", "--log-level", "debug"], env)  # fmt: skip
    assert (c.port, c.node_ttl, c.dashboard_port, c.host, c.log_level) == (1, 1.5, 0, "127.0.0.1", "debug")
    assert c.token == "t" and c.allowed_origins == {"https://a.b"} and c.spawn_command == "cd {path} && pi"
    assert c.dashboard_dir == Path("/srv/d") and c.spawn_timeout == 2.5 and c.allow_unauthenticated_spawn


@pytest.mark.parametrize("argv", [["-t", "0"], ["-p", "70000"], ["--log-level", "loud"], ["--nope"]])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        config.parse(argv, {})
    assert e.value.code == 2


def test_help_mentions_every_option_and_variable():
    text = config.build_parser().format_help()
    for word in ("--host", "--port", "--node-ttl", "--dashboard-port", "--log-level", "--allow-unauthenticated-spawn",
                 "HYPI_TOKEN", "HYPI_ALLOWED_ORIGINS", "HYPI_SPAWN_COMMAND", "HYPI_DASHBOARD_DIR"):  # fmt: skip
        assert word in text


def test_nats_urls_from_the_flag_or_the_environment():
    assert config.parse([], {}).nats_urls == ()
    assert config.parse([], {"HYPI_NATS_URL": " "}).nats_urls == ()  # empty is unset
    env = {"HYPI_NATS_URL": "nats://a:4222"}
    assert config.parse([], env).nats_urls == ("nats://a:4222",)
    flag = ["--nats", "nats://a:4222, tls://b.example:4223,ws://c,wss://d:443/"]
    assert config.parse(flag, env).nats_urls == ("nats://a:4222", "tls://b.example:4223", "ws://c", "wss://d:443/")
    assert "HYPI_NATS_URL" in config.build_parser().format_help() and "HYPI_NATS_SITE" in config.ENV_HELP


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "is empty"),
        (" , ", "is empty"),
        ("http://a:4222", "the scheme must be one of nats, tls, ws, wss"),
        ("a:4222", "the scheme must be one of"),
        ("nats://:4222", "no host"),
        ("nats://a:99999", "bad port"),
        ("nats://a:0", "port 0"),
        ("nats://a:4222/x", "no path, query or fragment"),
        ("nats://a:4222?x=1", "no path, query or fragment"),
        ("nats://a:4222,nats//b", "'nats//b' is not a NATS server URL"),
        (",".join(["nats://a"] * 33), "at most 32"),
    ],
)
def test_a_bad_nats_url_is_a_clear_error(value, why):
    for argv, env in ((["--nats", value], {}), ([], {"HYPI_NATS_URL": value})):
        if not value.strip() and not argv:
            continue  # an empty variable is unset, not an error
        with pytest.raises(ValueError, match=re.escape(why)):
            config.parse(argv, env)


def test_a_bad_nats_url_stops_the_hypivisor_with_the_reason(capsys):
    from hypivisor.__main__ import main

    assert main(["--nats", "http://a:4222"]) == 2
    assert "bad configuration: --nats / HYPI_NATS_URL: 'http://a:4222'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "frame,code,rpc_id",
    [(b"{", -32700, None), (b"[1]", -32600, None), (b'{"id": 1.5, "method": "x"}', -32600, None),
     (b'{"id": 3}', -32600, 3), (b'{"id": "a", "method": "m", "params": [1]}', -32602, "a"),
     (b'{"id": 4, "method": "m", "bogus": 1}', -32600, 4), (b'{"id": true, "method": "m"}', -32600, None)],
)  # fmt: skip
def test_request_parsing_errors_carry_the_id_when_known(frame, code, rpc_id):
    with pytest.raises(RpcFailure) as e:
        parse_request(frame)
    assert e.value.code == code and getattr(e.value, "rpc_id", None) == rpc_id


def test_valid_request():
    assert parse_request('{"id":"x","method":"list_nodes"}') == ("x", "list_nodes", None)


@pytest.mark.parametrize(
    "host,token,flag,allowed",
    [("0.0.0.0", None, False, False), ("0.0.0.0", "t", False, True), ("0.0.0.0", None, True, True),
     ("127.0.0.1", None, False, True), ("::1", None, False, True), ("192.168.1.5", None, False, False)],
)  # fmt: skip
def test_spawn_refused_on_public_address_without_token(host, token, flag, allowed):
    from hypivisor.service import Service

    cfg = config.Config(host=host, token=token, allow_unauthenticated_spawn=flag)
    assert Service(cfg, env={"HOME": "/h"}).spawn_allowed() is allowed


async def test_spawn_refusal_is_error_1002_and_creates_nothing(tmp_path):
    from hypivisor.service import Service

    svc = Service(config.Config(host="0.0.0.0"), env={"HOME": str(tmp_path)})
    with pytest.raises(RpcFailure) as e:
        await svc.dispatch("spawn_agent", {"path": "~", "new_folder": "x"}, "c1", "127.0.0.1")
    assert e.value.code == 1002 and "--allow-unauthenticated-spawn" in e.value.message
    assert list(tmp_path.iterdir()) == []
