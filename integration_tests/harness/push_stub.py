"""A local RFC 8030 push service for tests: what FCM or Mozilla's autopush do, on 127.0.0.1, offline.

``PushStub()`` serves ``POST /push/<name>`` in a thread of its own. Each request must carry a valid VAPID
``Authorization: vapid t=<JWT>, k=<key>`` (RFC 8292: ES256 signed by ``k``, ``aud`` = this origin, ``exp`` in
the next 24 hours, a ``sub``) and an ``aes128gcm`` body (RFC 8291) that decrypts with the subscription's
keys, which :meth:`PushStub.subscription` makes the way a browser's ``PushManager.subscribe()`` does. Every
accepted push is recorded (:attr:`received`, with its plaintext JSON and headers); every refusal is recorded
in :attr:`errors` and answered 400/401. :attr:`status` makes a subscription answer e.g. 410 Gone, and
:meth:`hold` keeps answers back until :meth:`release` (a slow push service).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import http_ece
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Received:
    name: str  # the subscription's name (its endpoint's last segment)
    payload: dict[str, Any]
    topic: str | None
    urgency: str | None
    ttl: str | None
    at: float  # time.time() when the request arrived
    vapid_key: str


@dataclass
class _Browser:
    key: ec.EllipticCurvePrivateKey
    auth: bytes


@dataclass
class PushStub:
    expected_key: str | None = None  # the VAPID public key every push must be signed with, when known
    received: list[Received] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)
    # a held request whose sender went away before it was answered is not delivered (answered 503, counted in
    # ``gone``): the sender never learnt it was taken, so at-least-once senders send it again
    drop_gone_senders: bool = False

    def __post_init__(self) -> None:
        self._browsers: dict[str, _Browser] = {}
        self.arrived = 0  # requests that reached the stub (held or not)
        self.gone = 0  # held requests whose sender had gone when they were answered (drop_gone_senders)
        self.senders: list[int] = []  # the source port of each request that arrived, in order
        self._lock = threading.Lock()
        self._held = threading.Event()
        self._held.set()
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("push stub did not start")

    # ------------------------------------------------------------------ test API
    def subscription(self, name: str) -> dict[str, Any]:
        """A browser's ``PushSubscription.toJSON()`` whose pushes reach this stub as ``name``."""
        key = ec.generate_private_key(ec.SECP256R1())
        auth = os.urandom(16)
        self._browsers[name] = _Browser(key, auth)
        pub = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": f"{self.origin}/push/{name}", "keys": {"p256dh": b64u(pub), "auth": b64u(auth)}}

    def to(self, name: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.name == name]

    def hold(self) -> None:
        self._held.clear()

    def release(self) -> None:
        self._held.set()

    def close(self) -> None:
        self._held.set()
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    # ------------------------------------------------------------------ server
    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve(started))

    async def _serve(self, started: threading.Event) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/push/{name}", self._push)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.origin = f"http://127.0.0.1:{port}"
        started.set()
        await self._stop.wait()
        await runner.cleanup()

    def _refuse(self, status: int, why: str) -> web.Response:
        with self._lock:
            self.errors.append(why)
        return web.Response(status=status, text=why)

    async def _push(self, req: web.Request) -> web.Response:
        at = time.time()
        name = req.match_info["name"]
        body = await req.read()
        peer = req.transport.get_extra_info("peername") if req.transport is not None else None
        self.senders.append(peer[1] if peer else 0)
        self.arrived += 1
        await asyncio.get_running_loop().run_in_executor(None, self._held.wait, 30)
        if self.drop_gone_senders and (req.transport is None or req.transport.is_closing()):
            self.gone += 1
            return web.Response(status=503)
        if name in self.status:
            return web.Response(status=self.status[name])
        browser = self._browsers.get(name)
        if browser is None:
            return web.Response(status=404)
        why = self._check_vapid(req.headers.get("Authorization", ""))
        if why:
            return self._refuse(401, why)
        if req.headers.get("Content-Encoding") != "aes128gcm":
            return self._refuse(400, f"Content-Encoding {req.headers.get('Content-Encoding')!r}, not aes128gcm")
        if not req.headers.get("TTL", "").isdigit():
            return self._refuse(400, "TTL header missing (RFC 8030 §5.2)")
        try:
            plain = http_ece.decrypt(body, private_key=browser.key, auth_secret=browser.auth, version="aes128gcm")
            payload = json.loads(plain)
        except Exception as exc:  # noqa: BLE001 - the test reads what went wrong
            return self._refuse(400, f"cannot decrypt: {type(exc).__name__}: {exc}")
        key = req.headers["Authorization"].split("k=", 1)[1].strip()
        with self._lock:
            self.received.append(Received(name, payload, req.headers.get("Topic"), req.headers.get("Urgency"),
                                          req.headers.get("TTL"), at, key))  # fmt: skip
        return web.Response(status=201, headers={"Location": f"/msg/{len(self.received)}"})

    def _check_vapid(self, header: str) -> str | None:
        """None when ``header`` is a valid RFC 8292 VAPID authorization for this origin, else why not."""
        if not header.startswith("vapid "):
            return f"Authorization is not 'vapid t=…, k=…': {header[:40]!r}"
        try:
            parts = dict(p.strip().split("=", 1) for p in header[len("vapid ") :].split(","))
            token, key = parts["t"], parts["k"]
            head_b, claims_b, sig_b = token.split(".")
            head, claims, sig = json.loads(b64d(head_b)), json.loads(b64d(claims_b)), b64d(sig_b)
        except (ValueError, KeyError) as exc:
            return f"malformed VAPID authorization: {exc}"
        if self.expected_key is not None and key != self.expected_key:
            return "k is not the application server key the browser subscribed with"
        if head.get("alg") != "ES256" or len(sig) != 64:
            return f"JWT is not ES256: {head}"
        try:
            pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64d(key))
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            pub.verify(der, f"{head_b}.{claims_b}".encode(), ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return "JWT signature does not verify with k"
        if claims.get("aud") != self.origin:
            return f"aud {claims.get('aud')!r} is not {self.origin}"
        exp = claims.get("exp")
        if not isinstance(exp, int) or not time.time() < exp <= time.time() + 86400:
            return f"exp {exp!r} not within the next 24 hours"
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            return f"sub {claims.get('sub')!r} is not a mailto: or https: contact"
        return None
