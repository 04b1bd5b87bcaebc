"""Registration with the hypivisor: register, heartbeat, deregister, reconnect (specs/protocol.md §2).

Invariant 1: the hypivisor can never harm the agent. This client runs as its
own task; every failure (refused, killed with SIGKILL, garbage frames) ends in
a backoff sleep and a new attempt, never in an exception outside this module.
While it is down the bridge is simply standalone: one info line in the log
and at most one notice in pi.

Dial-back (``dialback.py``): a ``dial_back`` event on this connection makes the bridge open one agent link to the
hypivisor and hand it to the agent server (``adopt``); the ``dial_back`` capability is announced only when an
``adopt`` is set. The dial-back goes to the hypivisor that asked (the one connected now), or, when the event names
a ``url`` (cluster mode: a browser on another hypivisor of the cluster, specs/cluster.md §7), to that hypivisor only
when it is one of this client's own list (its spelling of it, the same token); else it is refused. Either way the
client answers such an event with ``dial_back_result``, so the hypivisor that waits falls back at once.

Several hypivisors (``HYPIVISOR_WS=ws://a:31415/ws,ws://b:31415/ws``, ``pi_socket.hypivisors``): the client tries
them in order, stays on the one that works and, when it is lost, registers with the next (at once, then after the
backoff), with the same node id, node secret and token: each hypivisor takes it as a new registration.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import orjson
import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from pi_socket import oplog
from pi_socket.errors import HypiError
from pi_socket.hypivisors import Failover, listed
from pi_socket.protocol import ErrorCode, HeartbeatParams, RegisterParams

from . import dialback, faults
from .config import HEARTBEAT_FALLBACK_S, RECONNECT_CAP_S

RPC_TIMEOUT_S = 5.0
MAX_DIAL_BACKS = 256  # dial-backs in flight at once; more are refused here (the hypivisor then connects directly)
# What a protocol 1.0 hypivisor knows (it refused unknown params): sent alone once it refuses the rest.
LEGACY_REGISTER = frozenset({
    "id", "machine", "cwd", "port", "pid", "host", "activity", "session_name", "model", "started_at", "tokens",
    "cost", "pi_version", "protocol_version", "node_secret", "spawn_id",
})  # fmt: skip
LEGACY_HEARTBEAT = frozenset({"id", "activity", "session_name", "model", "tokens", "cost"})
log = structlog.get_logger()  # lazy proxy: resolves the config set up in __main__


class RpcError(HypiError):
    """The hypivisor answered a request with an error."""

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class HypivisorClient:
    """Keeps this agent on the roster. ``register_params``/``heartbeat_params`` read live state."""

    def __init__(
        self,
        url: str | Sequence[str],
        token: str | None,
        register_params: Callable[[], RegisterParams],
        heartbeat_params: Callable[[], HeartbeatParams],
        reconnect_first_s: float,
        on_standalone: Callable[[], Awaitable[None]] | None = None,
        node_secret: str | None = None,
    ) -> None:
        # One URL or several in the order to try (pi_socket.hypivisors); the same token goes to each.
        self.failover = Failover((url,) if isinstance(url, str) else tuple(url), reconnect_first_s, RECONNECT_CAP_S)
        self.token = token
        # Proves the node id is ours on every register (a hypivisor refuses a known id without it); kept for
        # this bridge's life, and the shim gives every bridge of one pi the same one.
        self.node_secret = node_secret
        self.register_params = register_params
        self.heartbeat_params = heartbeat_params
        self.backoff = self.failover.backoff
        self.on_standalone = on_standalone
        self.registered = False
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[Any, asyncio.Future[Any]] = {}
        self._poke = asyncio.Event()
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._deregister_id: str | None = None
        self._stop_timeout = 1.0
        self._done = asyncio.Event()
        self._announced_standalone = False
        self._ever_registered = False
        # A protocol 1.0 hypivisor refuses params it does not know: then only the fields it knows are sent.
        self.legacy = False
        self._dialling: set[asyncio.Task[None]] = set()  # dial-backs in flight (bounded by MAX_DIAL_BACKS)

    # Every register and heartbeat answer, as it arrives (set by the bridge; never raises).
    on_answer: Callable[[Any], None] | None = None
    # Serves a dialled-back connection like an accepted client (the agent server's adopt); None: no dial-back.
    adopt: dialback.Adopt | None = None
    # A person's decision sent through the registry (decide_approval on a hypivisor): the bridge applies it as the
    # agent link's approval_decision (set by the bridge; never raises).
    on_approval_decision: Callable[[dict[str, Any]], None] | None = None

    @property
    def url(self) -> str:
        """The hypivisor connected now, or the one to try next."""
        return self.failover.url

    def _on_event(self, msg: dict[str, Any]) -> None:
        """Push events meant for a bridge: ``dial_back`` and ``approval_decision`` (node roster events are for
        dashboards; any other event is ignored, as an older bridge ignores ``approval_decision``)."""
        if msg.get("event") == "approval_decision":
            if self.on_approval_decision is not None:
                self.on_approval_decision(msg)
            return
        if msg.get("event") != "dial_back" or self.adopt is None:
            return
        nonce = msg.get("nonce")
        if not dialback.valid_nonce(nonce):
            log.info("dial-back request ignored: malformed nonce")
            return
        dialling = self._dialling
        if len(dialling) >= MAX_DIAL_BACKS:
            log.info("dial-back request ignored: too many in flight", in_flight=len(dialling))
            return
        if msg.get("url") is None:
            # the hypivisor that asked: events arrive only on the live connection, so that is the current URL
            self._spawn(self._dial_back_and_report(str(nonce), self.url, failures_only=True))
            return
        # cluster mode: another hypivisor asks, through the one connected now; dialled only when in the list
        url = listed(msg["url"], self.failover.urls)
        if url is None:
            log.warning("dial-back refused: the hypivisor it names is not in HYPIVISOR_WS", url=str(msg["url"])[:200])
            self._spawn(self._report(str(nonce), "that hypivisor is not in the bridge's HYPIVISOR_WS"))
            return
        self._spawn(self._dial_back_and_report(str(nonce), url))

    def _spawn(self, job: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._dialling.add(task)
        task.add_done_callback(self._dialling.discard)

    async def _dial_back(self, nonce: str, url: str) -> str | None:
        """One dial-back; None when the hypivisor took it (101), else what went wrong."""
        adopt = self.adopt
        if adopt is None:
            return "this bridge cannot adopt connections"
        try:
            await dialback.dial(url, self.token, nonce, adopt)
            return None
        except (dialback.DialBackError, OSError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("dial-back failed", url=url, error=error)
        except Exception as exc:  # noqa: BLE001 - outer boundary of one dial-back: never the registry's end
            error = type(exc).__name__
            oplog.log_boundary_error("registry.dial_back", exc)
        return error

    async def _dial_back_and_report(self, nonce: str, url: str, failures_only: bool = False) -> None:
        """A dial-back, then ``dial_back_result``: always for one that named a ``url`` (the owner waits for it), only
        a failure for the connected hypivisor's own (its link then connects directly at once; an older hypivisor
        answers the unknown method with an error, which is ignored)."""
        error = await self._dial_back(nonce, url)
        if error is not None or not failures_only:
            await self._report(nonce, error)

    async def _report(self, nonce: str, error: str | None) -> None:
        """``dial_back_result`` to the hypivisor that forwarded the event (best effort: it waits at most the nonce's
        life anyway)."""
        params: dict[str, Any] = {"nonce": nonce, "ok": error is None}
        if error:
            params["error"] = error[:300]
        try:
            await self.call("dial_back_result", params)
        except Exception as exc:  # noqa: BLE001 - a lost answer only costs the other hypivisor its wait
            log.debug("dial-back result not delivered", error=f"{type(exc).__name__}: {exc}"[:200])

    def poke(self) -> None:
        """Send a heartbeat now (activity, session name or model changed)."""
        self._poke.set()

    async def run(self) -> None:
        """Connect, register, heartbeat; on any failure wait the backoff delay and start over."""
        try:
            await self._run()
        finally:
            self._done.set()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (TimeoutError, OSError, ConnectionClosed, InvalidHandshake, InvalidURI, RpcError) as exc:
                await self._note_down(exc)
            except Exception as exc:  # noqa: BLE001 - outer boundary: the registry must never kill the agent
                oplog.log_boundary_error("registry.session", exc)
            finally:
                self.registered = False
                self._ws = None
            if self._stopping:
                break
            delay = self.failover.failed()  # the next hypivisor of the list (the same one when there is one)
            if delay <= 0:
                continue
            try:  # the backoff sleep ends early only for a clean exit
                await asyncio.wait_for(self._stop_event.wait(), delay)
            except TimeoutError:
                pass

    async def _note_down(self, exc: BaseException) -> None:
        """Quiet by design: one info line per outage, one notice in pi per process."""
        if self.failover.failures == 0:
            error = f"{type(exc).__name__}: {exc}"[:300]
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status in (401, 403):  # a configuration mistake, not an outage: say so louder
                log.warning("hypivisor refused this agent (check HYPI_TOKEN); retrying", url=self.url, status=status)
            elif isinstance(exc, RpcError) and exc.code == ErrorCode.VERSION_MISMATCH:
                log.warning("hypivisor speaks another protocol version; retrying", url=self.url, error=error)
            elif isinstance(exc, RpcError) and exc.code == ErrorCode.FORBIDDEN:
                # the node id or machine:port is held by another agent: retried, it frees when that node is swept
                log.warning("hypivisor refused this node's registration; retrying", url=self.url, error=error)
            else:
                what = "lost; reconnecting" if self._ever_registered else "not reachable; running standalone, retrying"
                log.info(f"hypivisor {what}", url=self.url, error=error)
        # standalone once every hypivisor of the list failed (one URL: its first failure)
        lap = self.failover.failures + 1 >= len(self.failover.urls)
        if lap and not self._announced_standalone and not self._ever_registered and self.on_standalone is not None:
            self._announced_standalone = True
            try:
                await self.on_standalone()
            except Exception as err:  # noqa: BLE001
                oplog.log_boundary_error("registry.session", err)

    async def _session(self) -> None:
        # X-Hypi-Role: a bridge never reads the roster, so the hypivisor sends it none (specs/protocol.md §2)
        headers = {"X-Hypi-Role": "agent", **({"Authorization": f"Bearer {self.token}"} if self.token else {})}
        # proxy=None: a registry is local or on the tailnet; an HTTP(S)_PROXY from the
        # user's shell must not capture the connection (websockets honours it by default).
        async with connect(
            self.url,
            additional_headers=headers,
            open_timeout=5,
            close_timeout=1,
            ping_interval=20,
            max_size=2**24,
            proxy=None,
        ) as ws:
            self._ws = ws
            self.legacy = False  # every connection starts with the full params (the hypivisor may be new now)
            reader = asyncio.create_task(self._read(ws))
            try:
                faults.maybe_fail("registry.session")
                interval = await self._register()
                await self._heartbeats(interval, reader)
                if self._stopping and self._deregister_id is not None:
                    await self._deregister(self._deregister_id)
            finally:
                reader.cancel()

    async def _register(self) -> float:
        # Clear pokes BEFORE reading the params: a change while the register is in flight
        # must still produce a heartbeat (clearing afterwards lost it).
        self._poke.clear()
        params = self.register_params()
        if self.adopt is None and params.capabilities and dialback.CAPABILITY in params.capabilities:
            dropped = (dialback.CAPABILITY, dialback.URL_CAPABILITY)
            params = params.model_copy(update={"capabilities": [c for c in params.capabilities if c not in dropped]})
        if self.node_secret:
            params = params.model_copy(update={"node_secret": self.node_secret})
        try:
            result = await self.call("register", self._dump(params, LEGACY_REGISTER))
        except RpcError as exc:
            if self.legacy or not _refused_unknown(exc):
                raise
            self.legacy = True  # an older hypivisor: what it does not know stays home
            log.info("hypivisor is older (protocol 1.0): registering with the fields it knows", url=self.url)
            result = await self.call("register", self._dump(params, LEGACY_REGISTER))
        issued = result.get("node_secret") if isinstance(result, dict) else None
        if isinstance(issued, str) and issued:
            self.node_secret = issued
        interval = result.get("heartbeat_interval") if isinstance(result, dict) else None
        self.registered = True
        self._ever_registered = True
        if self.failover.failures:
            log.info("registered with hypivisor again", url=self.url, node=params.id)
        else:
            log.info("registered with hypivisor", url=self.url, node=params.id)
        self.failover.succeeded()
        if isinstance(interval, (int, float)) and not isinstance(interval, bool) and interval > 0:
            return min(float(interval), 300.0)
        return HEARTBEAT_FALLBACK_S

    async def _heartbeats(self, interval: float, reader: asyncio.Task[None]) -> None:
        """Every ``interval`` or at once when poked; ends when the connection does."""
        while not self._stopping:
            poked = asyncio.create_task(self._poke.wait())
            await asyncio.wait({poked, reader}, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
            poked.cancel()
            if self._stopping:
                return
            if reader.done():
                raise ConnectionClosed(None, None)
            self._poke.clear()
            try:
                faults.maybe_fail("registry.heartbeat")
                await self.call("heartbeat", self._dump(self.heartbeat_params(), LEGACY_HEARTBEAT))
            except RpcError as exc:
                if exc.code != ErrorCode.NOT_FOUND:
                    raise
                await self._register()  # the hypivisor forgot us (restart, TTL): join again
            except (RuntimeError, ValueError) as exc:
                oplog.log_boundary_error("registry.heartbeat", exc)

    def _dump(self, params: Any, legacy_fields: frozenset[str]) -> dict[str, Any]:
        data: dict[str, Any] = params.model_dump(mode="json", exclude_none=True)
        return {k: v for k, v in data.items() if k in legacy_fields} if self.legacy else data

    async def call(self, method: str, params: dict[str, Any], timeout: float = RPC_TIMEOUT_S) -> Any:
        """One JSON-RPC request on the live connection; raises RpcError on an error answer."""
        ws = self._ws
        if ws is None:
            raise ConnectionError("not connected to the hypivisor")
        req_id = f"{method}-{next(self._ids)}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[req_id] = future
        try:
            await ws.send(orjson.dumps({"id": req_id, "method": method, "params": params}).decode())
            result = await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(req_id, None)
        if self.on_answer is not None and method in ("register", "heartbeat"):
            self.on_answer(result)  # e.g. a budget's hold (specs/budgets.md)
        return result

    async def refresh(self, timeout: float = 3.0) -> bool:
        """One heartbeat now, its answer awaited (through ``on_answer``); False when not registered or it failed."""
        if not self.registered:
            return False
        try:
            await self.call("heartbeat", self.heartbeat_params().model_dump(mode="json", exclude_none=True), timeout)
            return True
        except Exception:  # noqa: BLE001 - the caller decides with what it knows
            return False

    async def _read(self, ws: ClientConnection) -> None:
        """Resolve responses by id; push events (node_joined, ...) are not for agents and are ignored."""
        try:
            async for raw in ws:
                try:
                    msg = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(msg, dict):
                    continue
                if "event" in msg:
                    self._on_event(msg)
                    continue
                future = self._waiting.get(msg.get("id"))
                if future is None or future.done():
                    continue
                err = msg.get("error")
                if isinstance(err, dict):
                    code = err.get("code")
                    code = code if isinstance(code, int) and not isinstance(code, bool) else 0
                    future.set_exception(RpcError(code, str(err.get("message"))))
                else:
                    future.set_result(msg.get("result"))
        except ConnectionClosed:
            pass
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError("hypivisor connection closed"))

    async def _deregister(self, node_id: str) -> None:
        try:
            await self.call("deregister", {"id": node_id}, timeout=self._stop_timeout)
            log.info("deregistered from hypivisor", node=node_id)
        except Exception as exc:  # noqa: BLE001 - best effort on the way out
            log.info("deregister failed", error=f"{type(exc).__name__}: {exc}"[:200])

    async def stop(self, deregister_id: str | None, timeout: float = 1.0) -> None:
        """Clean exit: the session loop deregisters (bounded by ``timeout``) and closes.

        Deregistering from the loop itself means no heartbeat can follow the deregister
        (a late heartbeat would be answered "not found" and re-register a departed node)."""
        self._deregister_id = deregister_id
        self._stop_timeout = timeout
        self._stopping = True
        self._stop_event.set()
        self._poke.set()
        try:
            await asyncio.wait_for(self._done.wait(), timeout + 0.5)
        except TimeoutError:
            log.info("registry did not stop in time; leaving anyway")


def _refused_unknown(exc: RpcError) -> bool:
    """A protocol 1.0 hypivisor's answer to params it does not know (pydantic's extra="forbid" message)."""
    return exc.code == ErrorCode.INVALID_PARAMS and "Extra inputs are not permitted" in exc.message
