"""Web Push glue: devices and their pages' presence, inbox events in, pushes out (specs/push.md).

:class:`PushHub` keeps the subscribed devices (with their switches, in the state dir's SQLite), the presence
each open page reports (dropped when its ``/ws`` closes), and asks :class:`~hypivisor.push.policy.PushPolicy`
who gets what. Sends run in threads (``pywebpush``, with a timeout), one at a time per device so a device's
notifications arrive in order (the newest replaces the older one of the same agent) and a slow push service
holds up only its own devices. Just before each send the policy is asked again: an item that ended or an agent
that the device now shows is not sent. 404 or 410 from a push service removes the subscription. A failure is
logged and dropped: it never reaches the registry.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog
from py_vapid import Vapid02
from pydantic import BaseModel

from hypivisor.push import keys
from hypivisor.push.policy import KINDS, Device, Presence, Push, PushPolicy
from hypivisor.store import Store
from pi_socket.protocol import AttentionAddedEvent, AttentionResolvedEvent, PushDevice, PushSubscription

log = structlog.get_logger(part="push")
SEND_TIMEOUT = 10.0  # seconds one push request may take (connect + answer)
MAX_DEVICES = 100
MAX_QUEUED = 100  # pushes waiting per device; beyond it the oldest are dropped (a dead push service)
MAX_PAGES = 1000  # presence reports kept (one per open page)
SUBJECT = "mailto:hyper-pi@localhost.invalid"  # VAPID ``sub``: a contact for the push service (RFC 8292 §2.1)


class SubscriptionError(ValueError):
    """A subscription the hypivisor will not send to (the message says why)."""


def _b64d(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise SubscriptionError("keys must be base64url") from None


def check_subscription(sub: PushSubscription) -> None:
    """An https endpoint (http only on a loopback address: a local push service), and keys of the right size."""
    parts = urlsplit(sub.endpoint)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SubscriptionError("endpoint must be an https URL")
    if parts.scheme == "http":
        try:
            loopback = ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            loopback = parts.hostname == "localhost"
        if not loopback:
            raise SubscriptionError("endpoint must be an https URL (http only on a loopback address)")
    p256dh = _b64d(sub.keys.p256dh)
    if len(p256dh) != 65 or p256dh[0] != 4:
        raise SubscriptionError("keys.p256dh must be an uncompressed P-256 point (65 bytes)")
    if len(_b64d(sub.keys.auth)) != 16:
        raise SubscriptionError("keys.auth must be 16 bytes")


@dataclass
class DeviceRow:
    device_id: str
    subscription: dict[str, Any]
    kinds: list[str]
    muted: list[str]

    def policy_device(self) -> Device:
        return Device(self.device_id, frozenset(self.kinds), frozenset(self.muted))

    def public(self) -> PushDevice:
        return PushDevice(device_id=self.device_id, subscribed=True, kinds=self.kinds, muted=self.muted)


def send_one(subscription: dict[str, Any], push: Push, vapid: Vapid02, timeout: float) -> int:
    """One push request (blocking: run it in a thread). The push service's HTTP status."""
    from pywebpush import WebPushException, webpush

    try:
        resp = webpush(
            subscription,
            json.dumps(push.payload),
            vapid_private_key=vapid,
            vapid_claims={"sub": SUBJECT},  # a new dict each time: pywebpush fills in aud and exp
            ttl=push.ttl,
            timeout=timeout,
            headers={"Urgency": push.urgency, "Topic": push.topic},
        )
    except WebPushException as exc:
        if exc.response is not None:
            return int(exc.response.status_code)
        raise
    return int(resp.status_code)


class PushHub:
    def __init__(self, state_dir: Path | None, store: Store | None, sender: Callable[..., int] = send_one) -> None:
        self.store = store
        self.vapid = keys.load_or_create(state_dir)
        self.public_key = keys.public_key_b64(self.vapid)
        self.policy = PushPolicy()
        self.devices: dict[str, DeviceRow] = {}
        self.pages: dict[str, tuple[str, Presence]] = {}  # /ws connection → (device id, presence)
        self._send = sender
        self._queues: dict[str, deque[Push]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self.sent_count = 0
        # cluster mode (hypivisor.cluster.inbox): devices and presence are shared with the other hypivisors, and
        # pushes are decided for the items the site's push queue hands this hypivisor, not for every local item
        self.share: Any = None
        if store is not None:
            for raw in store.push_devices():
                try:
                    row = DeviceRow(**json.loads(raw))
                    self.devices[row.device_id] = row
                except (ValueError, TypeError) as exc:
                    log.warning("push device unreadable; dropped", error=str(exc)[:200])

    # ------------------------------------------------------------------ devices
    def _save(self, row: DeviceRow) -> None:
        if self.store is not None:
            self.store.push_device_put(row.device_id, json.dumps(row.__dict__), time.time())
        if self.share is not None:
            self.share.device_saved(row)

    def device(self, device_id: str | None) -> PushDevice | None:
        row = self.devices.get(device_id or "")
        return row.public() if row is not None else None

    def subscribe(
        self, device_id: str, sub: PushSubscription, kinds: Sequence[str] | None, muted: Sequence[str] | None
    ) -> PushDevice:
        check_subscription(sub)
        old = self.devices.get(device_id)
        if old is None and len(self.devices) >= MAX_DEVICES:
            raise SubscriptionError(f"at most {MAX_DEVICES} devices can subscribe (unsubscribe an old one)")
        # the same endpoint under another device id (a cleared localStorage) is that device: one push, not two
        for other in [d for d in self.devices.values() if d.subscription["endpoint"] == sub.endpoint]:
            if other.device_id != device_id:
                self.unsubscribe(other.device_id)
        row = DeviceRow(
            device_id,
            sub.model_dump(include={"endpoint", "keys"}),
            list(dict.fromkeys(kinds)) if kinds is not None else (old.kinds if old else list(KINDS)),
            list(dict.fromkeys(muted)) if muted is not None else (old.muted if old else []),
        )
        self.devices[device_id] = row
        self._save(row)
        log.info("push device subscribed", device_id=device_id[:64], endpoint_host=urlsplit(sub.endpoint).hostname)
        return row.public()

    def unsubscribe(self, device_id: str) -> bool:
        row = self.devices.pop(device_id, None)
        self._queues.pop(device_id, None)
        if self.store is not None:
            self.store.push_device_delete(device_id)
        if self.share is not None:
            self.share.device_removed(device_id)
        return row is not None

    def set_prefs(self, device_id: str, kinds: Sequence[str], muted: Sequence[str]) -> PushDevice | None:
        row = self.devices.get(device_id)
        if row is None:
            return None
        row.kinds, row.muted = list(dict.fromkeys(kinds)), list(dict.fromkeys(muted))
        self._save(row)
        return row.public()

    # ------------------------------------------------------------------ presence
    def presence(self) -> dict[str, list[Presence]]:
        out: dict[str, list[Presence]] = {}
        for device_id, pres in self.pages.values():
            out.setdefault(device_id, []).append(pres)
        return out if self.share is None else self.share.with_remote_presence(out)

    def set_presence(self, conn: str, device_id: str, node_id: str | None, focused: bool, visible: bool) -> None:
        if conn not in self.pages and len(self.pages) >= MAX_PAGES:
            self.pages.pop(next(iter(self.pages)))
        self.pages[conn] = (device_id, Presence(node_id, focused, visible))
        self.policy.presence_changed(self.presence())
        if self.share is not None:
            self.share.presence_changed(device_id)

    def connection_closed(self, conn: str) -> None:
        gone = self.pages.pop(conn, None)
        if gone is not None and self.share is not None:
            self.share.presence_changed(gone[0])

    # ------------------------------------------------------------------ events in, pushes out
    def on_events(self, events: Iterable[BaseModel]) -> None:
        """Every published event passes here (the hub's tap); only inbox items matter."""
        for event in events:
            if isinstance(event, AttentionAddedEvent) and self.share is None:
                devices = [row.policy_device() for row in self.devices.values()]
                self.submit(self.policy.added(event.item, devices, self.presence()))
            elif isinstance(event, AttentionResolvedEvent):
                self.policy.resolved(event.id)

    def submit(self, pushes: list[Push]) -> None:
        for push in pushes:
            queue = self._queues.setdefault(push.device_id, deque(maxlen=MAX_QUEUED))
            queue.append(push)
            if push.device_id not in self._workers:
                try:
                    task = asyncio.get_running_loop().create_task(self._drain(push.device_id))
                except RuntimeError:  # no loop (a unit test of the policy glue): nothing is sent
                    continue
                self._workers[push.device_id] = task

    async def _drain(self, device_id: str) -> None:
        try:
            while (queue := self._queues.get(device_id)) and queue:
                push = queue.popleft()
                row = self.devices.get(device_id)
                if row is not None and self.policy.still_wanted(push, self.presence()):
                    await self._deliver(row, push)
                if self.share is not None:
                    self.share.push_done(push)
        finally:
            self._workers.pop(device_id, None)

    async def _deliver(self, row: DeviceRow, push: Push) -> None:
        started = time.monotonic()
        try:
            status = await asyncio.to_thread(self._send, row.subscription, push, self.vapid, SEND_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - a push that fails is logged and dropped, never the registry's problem
            log.warning("push failed", device_id=row.device_id[:64], item_id=push.item_id,
                        error=f"{type(exc).__name__}: {exc}"[:200])  # fmt: skip
            return
        ms = round((time.monotonic() - started) * 1000, 1)
        if status in (404, 410):
            log.info("push subscription gone; removed", device_id=row.device_id[:64], status=status)
            if self.devices.get(row.device_id) is row:
                self.unsubscribe(row.device_id)
        elif status >= 300:
            log.warning("push refused", device_id=row.device_id[:64], item_id=push.item_id, status=status, ms=ms)
        else:
            self.sent_count += 1
            log.debug("push sent", device_id=row.device_id[:64], item_id=push.item_id, status=status, ms=ms)

    async def idle(self, timeout: float = 5.0) -> None:
        """Wait until every queued push was sent or dropped (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._workers and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
