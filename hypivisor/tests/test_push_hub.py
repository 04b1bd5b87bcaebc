"""Web Push glue (hypivisor/push/hub.py, keys.py, the service's methods): what is accepted, kept and removed.

The sender is the one piece replaced here (it would need a push service); the end-to-end tests with a real
push service stub are integration_tests/test_pi_push.py and test_pide_push.py.
"""

from __future__ import annotations

import asyncio
import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hypivisor.config import Config
from hypivisor.push import keys
from hypivisor.push.hub import PushHub, SubscriptionError, check_subscription
from hypivisor.service import RpcFailure, Service
from hypivisor.store import Store
from pi_socket.protocol import AttentionAddedEvent, AttentionItem, AttentionResolvedEvent, PushSubscription


def b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def subscription(endpoint: str = "https://push.example.net/send/abc") -> PushSubscription:
    pub = ec.generate_private_key(ec.SECP256R1()).public_key()
    raw = pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return PushSubscription.model_validate(
        {"endpoint": endpoint, "keys": {"p256dh": b64u(raw), "auth": b64u(os.urandom(16))}}
    )


def item(item_id: str = "att-1", node: str = "n1") -> AttentionItem:
    return AttentionItem(id=item_id, node_id=node, kind="approval", summary="bash `ls`", created_at=1.0)


@pytest.mark.parametrize(
    ("endpoint", "p256dh", "auth", "why"),
    [
        ("http://push.example.net/x", None, None, "https"),
        ("ftp://push.example.net/x", None, None, "https"),
        ("https:///x", None, None, "https"),
        ("https://push.example.net/x", "AAAA", None, "65 bytes"),
        ("https://push.example.net/x", None, "AAAA", "16 bytes"),
        ("https://push.example.net/x", "!!!", None, "base64url"),
    ],
)
def test_a_subscription_the_hypivisor_would_not_send_to_is_refused(endpoint, p256dh, auth, why):
    sub = subscription(endpoint)
    if p256dh is not None:
        sub.keys.p256dh = p256dh
    if auth is not None:
        sub.keys.auth = auth
    with pytest.raises(SubscriptionError, match=why):
        check_subscription(sub)


def test_http_only_to_a_loopback_push_service():
    for endpoint in ("http://127.0.0.1:9/push/a", "http://localhost:9/push/a", "http://[::1]:9/push/a"):
        check_subscription(subscription(endpoint))


def test_the_vapid_key_is_made_once_and_kept_private(tmp_path: Path):
    first = keys.load_or_create(tmp_path)
    path = tmp_path / keys.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.public_key_b64(keys.load_or_create(tmp_path)) == keys.public_key_b64(first)
    assert len(base64.urlsafe_b64decode(keys.public_key_b64(first) + "=")) == 65
    path.write_text("not a key")  # unreadable: moved aside, a new pair (browsers subscribe again)
    fresh = keys.load_or_create(tmp_path)
    assert keys.public_key_b64(fresh) != keys.public_key_b64(first)
    assert list(tmp_path.glob(f"{keys.KEY_FILE}.broken-*"))


def test_devices_and_their_switches_survive_a_restart(tmp_path: Path):
    store = Store(tmp_path / "s.sqlite3")
    hub = PushHub(tmp_path, store)
    sub = subscription()
    hub.subscribe("phone", sub, None, None)
    hub.set_prefs("phone", ["approval", "error"], ["n2"])
    store.close()
    again = PushHub(tmp_path, Store(tmp_path / "s.sqlite3"))
    assert again.public_key == hub.public_key
    dev = again.device("phone")
    assert dev is not None and dev.kinds == ["approval", "error"] and dev.muted == ["n2"]
    assert again.devices["phone"].subscription["endpoint"] == sub.endpoint


def test_the_same_endpoint_under_a_new_device_id_replaces_the_old_one():
    hub = PushHub(None, None)
    sub = subscription()
    hub.subscribe("old-id", sub, None, None)
    hub.subscribe("new-id", sub, None, None)
    assert list(hub.devices) == ["new-id"]  # one push per browser, not two


def run_hub(hub: PushHub, events) -> None:
    async def go():
        hub.on_events(events)
        await hub.idle()

    asyncio.run(go())


def test_410_removes_the_subscription_and_a_failing_push_service_is_only_logged():
    answers = {"https://gone.example.net/a": 410, "https://boom.example.net/a": RuntimeError("connection reset")}
    sent: list[tuple[str, str]] = []

    def sender(sub, push, vapid, timeout):
        answer = answers.get(sub["endpoint"], 201)
        if isinstance(answer, Exception):
            raise answer
        sent.append((push.device_id, push.item_id))
        return answer

    hub = PushHub(None, None, sender=sender)
    hub.subscribe("gone", subscription("https://gone.example.net/a"), None, None)
    hub.subscribe("boom", subscription("https://boom.example.net/a"), None, None)
    hub.subscribe("ok", subscription("https://ok.example.net/a"), None, None)
    run_hub(hub, [AttentionAddedEvent(item=item())])
    assert sorted(hub.devices) == ["boom", "ok"]
    assert ("ok", "att-1") in sent and hub.sent_count == 1


def test_an_item_that_ends_before_its_turn_is_not_sent():
    order: list[str] = []

    def sender(sub, push, vapid, timeout):
        order.append(push.item_id)
        return 201

    hub = PushHub(None, None, sender=sender)
    hub.subscribe("phone", subscription(), None, None)
    run_hub(hub, [AttentionAddedEvent(item=item("a")), AttentionAddedEvent(item=item("b", "n2")),
                  AttentionResolvedEvent(id="b", by="cause")])  # fmt: skip
    assert order == ["a"]


def test_presence_ends_with_its_connection():
    hub = PushHub(None, None, sender=lambda *a: 201)
    hub.subscribe("laptop", subscription(), None, None)
    hub.set_presence("c1", "laptop", "n1", True, True)
    assert hub.policy.added(item("x"), [d.policy_device() for d in hub.devices.values()], hub.presence()) == []
    hub.connection_closed("c1")
    assert len(hub.policy.added(item("y"), [d.policy_device() for d in hub.devices.values()], hub.presence())) == 1


def test_the_methods_refuse_bad_input_with_a_clear_error():
    svc = Service(Config())

    async def go():
        with pytest.raises(RpcFailure) as bad:
            await svc.dispatch("push_subscribe", {"device_id": "d1", "subscription": {"endpoint": "http://x.example/1",
                               "keys": {"p256dh": "AAAA", "auth": "AAAA"}}}, "c1", "127.0.0.1")  # fmt: skip
        assert bad.value.code == -32602 and "https" in bad.value.message
        with pytest.raises(RpcFailure) as unknown:
            await svc.dispatch("set_push_prefs", {"device_id": "nobody", "kinds": []}, "c1", "127.0.0.1")
        assert unknown.value.code == 1006
        with pytest.raises(RpcFailure) as kind:
            await svc.dispatch("set_push_prefs", {"device_id": "d1", "kinds": ["everything"]}, "c1", "127.0.0.1")
        assert kind.value.code == -32602
        cfg = await svc.dispatch("push_config", {"device_id": "d1"}, "c1", "127.0.0.1")
        assert cfg["enabled"] and cfg["device"] is None and cfg["public_key"] == svc.push.public_key
        ok = await svc.dispatch("set_presence", {"device_id": "d1", "node_id": None, "focused": True, "visible": True},
                                "c1", "127.0.0.1")  # fmt: skip
        assert ok == {"status": "ok"}
        gone = await svc.dispatch("push_unsubscribe", {"device_id": "d1"}, "c1", "127.0.0.1")
        assert gone["status"] == "not_subscribed"

    asyncio.run(go())
