"""A dial-back that names another hypivisor (cluster mode, specs/cluster.md §7): the bridge dials it only when it is
one of its own ``HYPIVISOR_WS`` list (the list's spelling), refuses it otherwise, and answers every such event with
``dial_back_result`` on the registry connection it came on, so the hypivisor waiting for it falls back at once; a
failed dial-back to the connected hypivisor is reported too."""

from __future__ import annotations

import asyncio
from typing import Any

from pi_socket.bridge import dialback
from pi_socket.bridge.hypivisor_client import HypivisorClient
from pi_socket.hypivisors import listed
from pi_socket.protocol import CAPABILITIES, HeartbeatParams, RegisterParams

NONCE = "AbCdEfGhIjKlMnOpQrStUv"
A = "ws://127.0.0.1:9/ws"
B = "ws://hv-b.example:31415/ws"


def test_a_url_is_listed_only_when_it_names_a_hypivisor_of_the_list() -> None:
    urls = [A, B, "wss://hv-c.example/hypi/ws"]
    assert listed(B, urls) == B
    assert listed("ws://HV-B.example:31415/ws/", urls) == B  # host in any case, a trailing slash forgiven
    assert listed("wss://hv-c.example:443/hypi/ws", urls) == "wss://hv-c.example/hypi/ws"  # the default port
    for other in (
        "ws://hv-b.example:31416/ws",  # another port
        "wss://hv-b.example:31415/ws",  # another scheme
        "ws://hv-b.example:31415/other/ws",  # another path
        "ws://evil.example:31415/ws",  # another host
        "ws://user@hv-b.example:31415/ws",  # credentials in the URL
        "ws://hv-b.example:31415/ws?x=1",
        "http://hv-b.example:31415/ws",
        "ws://hv-b.example:99999/ws",
        "",
        None,
        42,
        "ws://" + "a" * 3000,
    ):
        assert listed(other, urls) is None, other


def _client(urls: list[str], adopt: bool = True) -> tuple[HypivisorClient, list[tuple[str, dict]]]:
    def params() -> RegisterParams:
        return RegisterParams(id="n1", machine="m", cwd="/", port=9, capabilities=list(CAPABILITIES))

    client = HypivisorClient(urls, "tok", params, lambda: HeartbeatParams(id="n1"), 1.0)
    calls: list[tuple[str, dict]] = []

    async def call(method: str, p: dict, timeout: float = 5.0) -> Any:
        calls.append((method, p))
        return {"status": "registered", "heartbeat_interval": 10} if method == "register" else {}

    client.call = call  # type: ignore[method-assign]
    if adopt:
        client.adopt = lambda _t, _b: None
    return client, calls


async def _settle(client: HypivisorClient) -> None:
    for _ in range(50):
        if not client._dialling:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("dial-backs still in flight")


async def test_the_url_capability_is_announced_only_with_dial_back() -> None:
    client, calls = _client([A, B], adopt=False)
    await client._register()
    caps = calls[-1][1]["capabilities"]
    assert dialback.CAPABILITY not in caps and dialback.URL_CAPABILITY not in caps
    client.adopt = lambda _t, _b: None
    await client._register()
    caps = calls[-1][1]["capabilities"]
    assert dialback.CAPABILITY in caps and dialback.URL_CAPABILITY in caps


async def test_a_hypivisor_of_the_list_is_dialled_in_the_lists_spelling_and_the_result_reported() -> None:
    client, calls = _client([A, B])
    dialled: list[tuple[str, str, str | None]] = []

    async def fake_dial(url: str, token: str | None, nonce: str, adopt: Any, timeout: float = 10.0) -> None:
        dialled.append((url, token, nonce))
        if "fail" in nonce:
            raise dialback.DialBackError("hypivisor answered 401: missing or wrong token (HYPI_TOKEN)")

    real = dialback.dial
    dialback.dial = fake_dial  # type: ignore[assignment]
    try:
        client._on_event({"event": "dial_back", "nonce": NONCE, "url": "ws://HV-B.example:31415/ws/"})
        await _settle(client)
        assert dialled == [(B, "tok", NONCE)]  # B as the list spells it, with the bridge's own token
        assert calls == [("dial_back_result", {"nonce": NONCE, "ok": True})]
        failing = NONCE + "fail"
        client._on_event({"event": "dial_back", "nonce": failing, "url": B})
        await _settle(client)
        method, params = calls[-1]
        assert method == "dial_back_result" and params["nonce"] == failing and params["ok"] is False
        assert "401" in params["error"]
        # a dial-back without url still goes to the connected hypivisor; only a failure is reported (its link then
        # connects directly at once instead of after the nonce's life)
        calls.clear()
        client._on_event({"event": "dial_back", "nonce": NONCE + "x"})
        await _settle(client)
        assert dialled[-1] == (A, "tok", NONCE + "x") and calls == []
        client._on_event({"event": "dial_back", "nonce": NONCE + "fail2"})
        await _settle(client)
        assert dialled[-1] == (A, "tok", NONCE + "fail2")
        assert [(m, p["nonce"], p["ok"]) for m, p in calls] == [("dial_back_result", NONCE + "fail2", False)]
    finally:
        dialback.dial = real  # type: ignore[assignment]


async def test_a_hypivisor_not_in_the_list_is_refused_and_never_dialled() -> None:
    client, calls = _client([A, B])
    dialled: list[str] = []

    async def fake_dial(url: str, *args: Any, **kwargs: Any) -> None:
        dialled.append(url)

    real = dialback.dial
    dialback.dial = fake_dial  # type: ignore[assignment]
    try:
        for url in ("ws://evil.example:31415/ws", "wss://hv-b.example:31415/ws", 7, "not a url"):
            client._on_event({"event": "dial_back", "nonce": NONCE, "url": url})
        await _settle(client)
    finally:
        dialback.dial = real  # type: ignore[assignment]
    assert dialled == []  # neither the named host nor the connected hypivisor (it never issued that nonce)
    assert len(calls) == 4
    for method, params in calls:
        assert method == "dial_back_result" and params["ok"] is False and "HYPIVISOR_WS" in params["error"]
