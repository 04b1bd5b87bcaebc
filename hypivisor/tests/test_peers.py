"""Pi-DE fail-over on the hypivisor's side (specs/cluster.md §8): ``--peer`` / ``HYPI_PEERS`` parsed like
``HYPIVISOR_WS`` (bounded, a bad entry named), each peer's dashboard origin allowed as a browser Origin here, and
the list sent in ``init`` only when the hypivisor has a token (so only to connections that presented it)."""

from __future__ import annotations

import orjson
import pytest

from hypivisor import config
from hypivisor.__main__ import main
from hypivisor.config import Config
from hypivisor.service import Service
from pi_socket.protocol import InitEvent

from .test_broadcast import parse as parse_frames


def test_peers_from_the_flag_or_the_environment_in_order_without_duplicates():
    assert config.parse([], {}).peers == ()
    assert config.parse([], {"HYPI_PEERS": " "}).peers == ()  # empty is unset
    env = {"HYPI_PEERS": "https://b.example:5180, http://127.0.0.1:5181/,,https://b.example:5180"}
    assert config.parse([], env).peers == ("https://b.example:5180", "http://127.0.0.1:5181")
    # the flag replaces the environment; it repeats, and one value may hold several
    flag = ["--peer", "http://c:1", "--peer", "HTTPS://D.Example:443,http://[::1]:5180"]
    assert config.parse(flag, env).peers == ("http://c:1", "https://d.example", "http://[::1]:5180")


def test_a_peer_is_an_allowed_origin_here():
    c = config.parse(["--peer", "https://b.example:5180/"], {"HYPI_ALLOWED_ORIGINS": "https://a.b"})
    assert c.allowed_origins == {"https://a.b", "https://b.example:5180"}


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("ws://b:31415/ws", "'ws://b:31415/ws' must start with http:// or https://"),
        ("b.example:5180", "'b.example:5180' must start with http:// or https://"),
        ("http://:5180", "'http://:5180' names no host"),
        ("http://b:99999", "'http://b:99999' is not a URL"),
        ("http://b:0", "'http://b:0': port 0"),
        ("http://b:5180/ws", "'http://b:5180/ws' must be an origin only"),
        ("http://b:5180?x=1", "must be an origin only"),
        ("http://user@b:5180", "must be an origin only"),
        ("http://a:1,nonsense", "'nonsense' must start with"),
        (",".join(f"http://h{i}:1" for i in range(17)), "names 17 hypivisors; at most 16"),
    ],
)
def test_a_bad_peer_is_a_clear_error_naming_it(value, why):
    for argv, env in ((["--peer", value], {}), ([], {"HYPI_PEERS": value})):
        with pytest.raises(ValueError, match="--peer / HYPI_PEERS") as e:
            config.parse(argv, env)
        assert why in str(e.value)


def test_a_bad_peer_stops_the_hypivisor_with_the_entry_named(capsys):
    assert main(["--peer", "ws://b:31415/ws"]) == 2
    assert "bad configuration: --peer / HYPI_PEERS entry 'ws://b:31415/ws'" in capsys.readouterr().err


def test_sixteen_peers_are_enough():
    assert len(config.parse([], {"HYPI_PEERS": ",".join(f"http://h{i}:1" for i in range(16))}).peers) == 16


def test_help_mentions_peer():
    text = config.build_parser().format_help()
    assert "--peer" in text and "HYPI_PEERS" in text


def _init(tmp_path, **options) -> dict:
    svc = Service(
        Config(host="127.0.0.1", port=1, dashboard_dir=tmp_path / "none", **options), env={"HOME": str(tmp_path)}
    )
    return orjson.loads(parse_frames(bytearray(svc.init_frames()[0]))[0][1])


def test_init_names_the_peers_only_when_a_token_guards_every_connection(tmp_path):
    peers = ("https://b.example:5180", "http://127.0.0.1:5181")
    init = _init(tmp_path, token="t", peers=peers)
    assert init["peers"] == list(peers)
    assert InitEvent.model_validate(init).peers == list(peers)  # the wire model accepts it
    assert "peers" not in _init(tmp_path, token=None, peers=peers)  # tokenless: nobody authenticated
    assert "peers" not in _init(tmp_path, token="t")  # none configured: the field is absent, as before
