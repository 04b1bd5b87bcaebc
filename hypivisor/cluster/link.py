"""Cluster mode's glue (``--nats``, specs/cluster.md): the running hypivisor ↔ the NATS backplane.

Imported only when ``--nats`` (or ``HYPI_NATS_URL``) is given, so one process without it never loads NATS.

* **Own agents out**: every roster event this hypivisor's registry produces (join, update, offline, removal) is
  turned into a put or a delete of the agent's record (its ``NodeInfo`` + ``hv``), written in order by one task,
  with lease liveness (the record is written when it changes; this hypivisor's lease keeps all of them alive).
  Before the first put of an agent this hypivisor serves its requests (interest first, §4).
* **Others' agents in**: every change of the shared roster made by another hypivisor goes through the pure
  :class:`~hypivisor.cluster.mirror.RemoteRoster` and its events to this hypivisor's dashboards; ``list_nodes``
  and ``init`` show the mirror's nodes after the local ones (each with ``hv``).
* **Agent links** (§7): a ``/ws/agent/<id>`` for an agent another hypivisor owns first asks the owner over its
  ``hp.hv.…agents`` subject to have the agent's bridge dial back **here** (``{"op": "dial_back", nonce, url,
  expires_in}``: the owner pushes the event with this hypivisor's ``/ws`` URL down the bridge's registry
  connection, the bridge dials only a hypivisor of its own ``HYPIVISOR_WS`` and says how it went), and the front splices the browser to
  that connection: no extra hop. When the bridge cannot (an older one, this hypivisor not in its list, refused),
  the owner says so at once and this hypivisor asks where the owner's agent proxy listens (``{"op": "link"}``),
  opens its ``/ws/agent/<id>`` with the hop token and byte-splices: one extra hop, never more.

Settings beyond ``--nats`` (environment, as the other cluster knobs are still few):
``HYPI_NATS_SITE`` (default ``main``), ``HYPI_NATS_LEASE_TTL`` (seconds, default 45; the lease is put every
third of it), ``HYPI_NATS_ADVERTISE`` (host other hypivisors dial for agent links; default the ``--host``, or
this machine's name when that is a wildcard address), ``HYPI_NATS_ADVERTISE_WS`` (this hypivisor's ``/ws`` URL as
the bridges' ``HYPIVISOR_WS`` lists spell it, for dial-backs; default ``ws://<advertised host>:<port>/ws``),
``HYPI_CLUSTER_TOKEN`` (the hop token: sent by this hypivisor on another's ``/ws/agent/<id>`` and accepted here only
there, for an agent held here, as ``Authorization: Bearer`` without Origin; unset: the hop carries ``HYPI_TOKEN``,
so every hypivisor must share it).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from pydantic import BaseModel

from hypivisor import dialback
from hypivisor.broadcast import ROSTER_EVENTS
from hypivisor.cluster.approvals import ApprovalsLink
from hypivisor.cluster.backplane import AgentChange, Backplane, BackplaneError, bounded
from hypivisor.cluster.feed import GATHER_S, gather_delay, soon_delay
from hypivisor.cluster.machines import ClusterMachines
from hypivisor.cluster.mirror import RemoteAgent, RemoteRoster
from hypivisor.cluster.names import AgentKey, check_site, token
from hypivisor.cluster.quiet import QuietHold
from hypivisor.cluster.writer import LatestWriter
from pi_socket import oplog
from pi_socket.hypivisors import HypivisorListError, check_url
from pi_socket.protocol import NodeInfo, NodeJoinedEvent, NodeOfflineEvent, NodeRemovedEvent, NodeUpdatedEvent

if TYPE_CHECKING:
    from hypivisor.service import Service

log = structlog.get_logger(part="cluster")

DEFAULT_SITE = "main"
DEFAULT_LEASE_TTL_S = 45.0
# A lease must outlive a NATS leader election (up to ~8 s measured on a 3-node cluster on loopback): shorter ones
# are accepted (tests use 2 s) with a warning at start.
SAFE_LEASE_TTL_S = 10.0
LINK_TIMEOUT_S = 3.0  # the owner answers where its agent proxy listens within this
CLOSE_S = 5.0


class ClusterError(Exception):
    """A cluster setting the user fixes, or no NATS server reachable at start."""


def settings_from(config: Any, env: Mapping[str, str]) -> Any:
    """The NATS backplane's settings from the hypivisor's ``Config`` and environment (lazy NATS import)."""
    from hypivisor.cluster.nats_backplane import NatsSettings

    site = env.get("HYPI_NATS_SITE") or DEFAULT_SITE
    try:
        check_site(site)
        ttl = float(env.get("HYPI_NATS_LEASE_TTL") or DEFAULT_LEASE_TTL_S)
    except ValueError as exc:
        raise ClusterError(f"HYPI_NATS_SITE / HYPI_NATS_LEASE_TTL: {exc}") from None
    if not 0.5 <= ttl <= 3600:
        raise ClusterError("HYPI_NATS_LEASE_TTL must be between 0.5 and 3600 seconds")
    hv_id = f"{token(socket.gethostname())[:40]}-{config.port}-{secrets.token_hex(3)}"
    return NatsSettings(
        hv_id,
        site,
        liveness="lease",
        ttl_s=ttl,
        heartbeat_s=ttl / 3,
        servers=tuple(config.nats_urls),
        replicas=min(3, len(config.nats_urls)),
    )


def advertised_host(config: Any, env: Mapping[str, str]) -> str:
    if env.get("HYPI_NATS_ADVERTISE"):
        return env["HYPI_NATS_ADVERTISE"]
    if config.host in ("0.0.0.0", "::", ""):
        return socket.getfqdn()
    return config.host


def advertised_ws(host: str, port: int, env: Mapping[str, str]) -> str:
    """This hypivisor's ``/ws`` URL as bridges list it (``HYPI_NATS_ADVERTISE_WS``, else built from the advertised
    host and port): the ``url`` of the dial-backs it asks for; a bridge dials it only when its list names it."""
    value = (env.get("HYPI_NATS_ADVERTISE_WS") or "").strip()
    if value:
        try:
            return check_url(value)
        except HypivisorListError as exc:
            raise ClusterError(f"HYPI_NATS_ADVERTISE_WS: {exc}") from None
    return f"ws://{f'[{host}]' if ':' in host else host}:{port}/ws"


def cluster_token_from(env: Mapping[str, str]) -> str | None:
    """``HYPI_CLUSTER_TOKEN`` (the hypivisor-to-hypivisor hop's token), None when unset; ClusterError when unusable."""
    value = env.get("HYPI_CLUSTER_TOKEN") or ""
    if not value:
        return None
    if len(value) > 512 or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise ClusterError("HYPI_CLUSTER_TOKEN must be at most 512 characters, without white space or control ones")
    return value


class ClusterLink:
    """One hypivisor's membership of the cluster (see the module docstring)."""

    def __init__(
        self,
        service: Service,
        backplane: Backplane,
        host: str,
        port: int,
        ws_url: str | None = None,
        cluster_token: str | None = None,
    ) -> None:
        self.service = service
        self.backplane = backplane
        self.site = backplane.settings.site
        self.host = host
        self.port = port
        self.ws_url = ws_url or advertised_ws(host, port, {})  # the url of the dial-backs this hypivisor asks for
        # HYPI_CLUSTER_TOKEN: accepted here only for another hypivisor's hop (hypivisor.access.cluster_hop)
        self.cluster_token = cluster_token
        self.forwards = dialback.ForwardBook()  # dial-backs forwarded to own bridges for another hypivisor
        self.mirror = RemoteRoster(backplane.hv_id)
        self.machines = ClusterMachines(self)  # machine records and machine requests across hypivisors
        self._keys: dict[str, AgentKey] = {}  # own node id → its key (a removal carries only the id)
        self._served: dict[AgentKey, Any] = {}  # own agent → stop serving its rpc subject
        # the writes not done yet, one per agent (the latest wins: a burst of changes is one put, and the queue is
        # bounded by the roster), oldest first
        self._writes: LatestWriter[AgentKey, tuple[str, dict[str, Any] | None]] = LatestWriter(
            self._write, "cluster-writer"
        )
        self.approvals = ApprovalsLink(service, backplane, self.site)
        self.quiet = QuietHold()  # quiet roster changes (own and others'), shown here once per tick of the cluster
        self._quiet_handle: asyncio.TimerHandle | None = None
        self._soon: list[BaseModel] = []  # own agents' other events, shown within SOON_S (with their puts' burst)
        self._gathered: list[tuple[list[BaseModel], bool]] | None = None  # during another owner's batch (_on_batch)
        self._soon_handle: asyncio.TimerHandle | None = None
        self._soon_last = 0  # roster events the last wait gathered (a storm waits longer: feed.soon_delay)
        service.hub.before_fan_out = self._show_soon_now  # anything else shown goes after them

    @property
    def hv_id(self) -> str:
        return self.backplane.hv_id

    async def start(self) -> None:
        await self.backplane.start()
        self.backplane.on_agent_change(self._on_change)
        self.backplane.on_batch(self._on_batch)
        shared: list[BaseModel] = []
        for key, record in self.backplane.agents().items():  # the snapshot read at start
            shared += self._apply(AgentChange("put", key, record, 0))
        self.service.machines.book.node_events(shared)  # counted from the start (no dashboard to tell yet)
        self._writes.start()
        await self.machines.start()
        await self.approvals.start()
        log.info("cluster joined", hv=self.hv_id, site=self.site, remote_agents=len(self.mirror))

    async def close(self) -> None:
        """A clean stop: this hypivisor's records and lease are deleted (its agents reconnect elsewhere)."""
        for handle in (self._quiet_handle, self._soon_handle):
            if handle is not None:
                handle.cancel()
        self._quiet_handle = self._soon_handle = None
        await bounded(self._writes.close(), 1.0)
        await bounded(self.machines.close(), 1.0)
        await bounded(self.approvals.close(), 1.0)
        await bounded(self.backplane.close(deregister=True), CLOSE_S)

    # -- own agents → this hypivisor's dashboards and the backplane ------------------------------------------------
    def show(self, events: list[BaseModel], quiet: bool = True, own: bool = False) -> None:
        """Roster events (with the machine events they imply) to this hypivisor's hub (§3): its taps hear them at
        once; its dashboards get the quiet ones (a ``node_updated`` keeping owner and status: every one the
        registry makes, ``quiet`` says so for another hypivisor's) at the cluster's next tick, when this
        hypivisor also puts its own gathered changes (one wake-up for both); the registry's other events (``own``:
        a join, a status, a removal) within ``SOON_S`` (``SOON_STORM_S`` in a storm), when their puts go out,
        together with any others of that moment (a deregister and the register after it: one write per dashboard);
        another hypivisor's at once.
        Whatever is sent to the dashboards, own events held for ``SOON_S`` go first (the hub's
        ``before_fan_out``): a dashboard sees every event in the order it happened."""
        hub = self.service.hub
        hub.tap(events)
        loop = asyncio.get_running_loop()
        now = self.quiet.hold(events, quiet)
        if len(self.quiet) and self._quiet_handle is None:
            self._quiet_handle = loop.call_later(gather_delay(time.time(), GATHER_S), self._show_quiet)
        if not own:
            hub.fan_out(now)
        elif now:
            self._soon += now
            if self._soon_handle is None:
                self._soon_handle = loop.call_later(soon_delay(self._soon_last), self._show_soon)

    def _show_soon(self) -> None:
        self._soon_handle = None
        self._show_soon_now()

    def _show_soon_now(self) -> None:
        if not self._soon:
            return
        if self._soon_handle is not None:
            self._soon_handle.cancel()
            self._soon_handle = None
        soon, self._soon = self._soon, []
        self._soon_last = sum(isinstance(e, ROSTER_EVENTS) for e in soon)  # the agents' changes, as the puts count
        self.service.hub.fan_out(soon)  # its own before_fan_out finds nothing left

    def _show_quiet(self) -> None:
        self._quiet_handle = None
        self.service.hub.fan_out(self.quiet.release())

    def local_events(self, events: list[BaseModel]) -> None:
        """The registry's events (as published to this hypivisor's dashboards) → record writes, in order."""
        for event in events:
            if isinstance(event, (NodeJoinedEvent, NodeUpdatedEvent)):
                self._put(event.node)
            elif isinstance(event, NodeOfflineEvent):
                entry = self.service.registry.get(event.id)
                if entry is not None:
                    self._put(entry.node)
            elif isinstance(event, NodeRemovedEvent):
                self.approvals.forget(event.id)
                key = self._keys.pop(event.id, None)
                if key is not None:
                    self._enqueue(key, "delete", None)
                elsewhere = self.mirror.get(event.id)
                if elsewhere is not None:  # it lives on with another hypivisor: show that one now
                    self.service.remote_roster_changed([NodeJoinedEvent(node=elsewhere.node)])

    def approvals_report(self, node: NodeInfo, params: Any) -> None:
        """An own agent's register/heartbeat with its attention report: its open approvals (§5)."""
        self.approvals.report(AgentKey(self.site, node.machine, node.id), params)

    def _put(self, node: NodeInfo) -> None:
        key = AgentKey(self.site, node.machine, node.id)
        old = self._keys.get(node.id)
        if old is not None and old != key:  # the same id re-registered from another machine name
            self._enqueue(old, "delete", None)
        self._keys[node.id] = key
        record = node.model_dump(mode="json", exclude={"hv"})
        self._enqueue(key, "put", record)

    def _enqueue(self, key: AgentKey, op: str, record: dict[str, Any] | None) -> None:
        self._writes.put(key, (op, record))

    async def _write(self, key: AgentKey, item: tuple[str, dict[str, Any] | None]) -> None:
        op, record = item
        if self.backplane.holder(key) not in (None, self.hv_id) and (
            op != "put" or (record or {}).get("status") == "offline"
        ):
            # the agent re-registered with another hypivisor: this one's late news of its old connection (offline,
            # then removed) must not overwrite or delete the new owner's record
            if op != "put" and (stop := self._served.pop(key, None)) is not None:
                await stop()
            return
        if op == "put" and record is not None:
            if key not in self._served:  # interest first: the owner answers before the agent shows
                self._served[key] = await self.backplane.serve_agent(key, self._rpc_handler(key.agent))
            await self.backplane.register_agent(key, record)  # False: retried in the background
            return
        stop = self._served.pop(key, None)
        if stop is not None:
            await stop()
        await self.backplane.unregister_agent(key)

    def _rpc_handler(self, node_id: str) -> Any:
        async def handle(data: bytes) -> bytes:
            request = orjson.loads(data)
            op = request.get("op") if isinstance(request, dict) else None
            if op not in ("link", "dial_back"):
                raise BackplaneError(f"unknown op {str(op)[:32]!r}")
            entry = self.service.registry.get(node_id)
            if entry is None or entry.node.status != "active":
                raise BackplaneError(f"agent {node_id[:64]!r} is not active here")
            if op == "dial_back":
                return orjson.dumps(await self._forward_dial_back(node_id, entry, request))
            return orjson.dumps({"host": self.host, "port": self.port, "hv": self.hv_id})

        return handle

    # -- dial-backs to another hypivisor (§7 steps 1-2) ------------------------------------------------------------
    async def _forward_dial_back(self, node_id: str, entry: Any, request: Any) -> dict[str, Any]:
        """Owner side: push ``dial_back`` with the asking hypivisor's ``url`` to the agent's bridge and answer how it
        went (``{"dialled": bool, "reason"}``), at once when the bridge cannot, else when the bridge reports (or the
        nonce's life ends)."""
        try:
            ask = dialback.forward_request(request)
        except ValueError as exc:
            raise BackplaneError(str(exc)) from None
        send = self.service.senders.get(entry.owner)
        refusal = dialback.forward_refusal(entry.node.capabilities, send is not None)
        if refusal is not None or send is None:
            return {"dialled": False, "reason": refusal}
        waiter: asyncio.Future[tuple[bool, str | None]] = asyncio.get_running_loop().create_future()
        if not self.forwards.add(ask.nonce, entry.owner, waiter):
            return {"dialled": False, "reason": "too many dial-backs pending"}
        try:
            event = {"event": "dial_back", "nonce": ask.nonce, "node_id": node_id, "expires_in": ask.expires_in,
                     "url": ask.url}  # fmt: skip
            if not send(orjson.dumps(event)):
                return {"dialled": False, "reason": "the agent's registry connection is full or closed"}
            async with asyncio.timeout(ask.expires_in):
                ok, error = await waiter
            return {"dialled": ok, "reason": error}
        except TimeoutError:
            return {"dialled": False, "reason": "the bridge did not answer in time"}
        finally:
            self.forwards.drop(ask.nonce)

    def dial_back_result(self, conn: Any, nonce: str, ok: bool, error: str | None) -> bool:
        """A bridge's ``dial_back_result``: counts only for a forwarded nonce, from the connection it went to (True)."""
        waiter = self.forwards.settle(nonce, conn)
        if waiter is None:
            return False
        if not waiter.done():
            waiter.set_result((ok, error))
        return True

    async def ask_dial_back(self, node_id: str, nonce: str, ttl: float) -> tuple[bool, str]:
        """Browser side: ask the owner to have the agent's bridge dial back here with ``nonce``; (dialled, reason).
        Any failure (an older owner, no owner, a timeout) is (False, why): the caller splices through the owner."""
        agent = self.mirror.get(node_id)
        if agent is None:
            return False, "not in the cluster's roster"
        key = AgentKey(self.site, agent.machine, node_id)
        request = orjson.dumps({"op": "dial_back", "nonce": nonce, "url": self.ws_url, "expires_in": ttl})
        try:
            answer = orjson.loads(await self.backplane.request_agent(key, request, ttl + LINK_TIMEOUT_S))
        except Exception as exc:  # noqa: BLE001 - any failure means: splice through the owner
            return False, f"{type(exc).__name__}: {exc}"[:200]
        if not isinstance(answer, dict) or "error" in answer:
            return False, str(answer.get("error") if isinstance(answer, dict) else answer)[:200]
        return answer.get("dialled") is True, str(answer.get("reason") or "")[:300]

    @property
    def hop_token(self) -> str | None:
        """The token this hypivisor presents on another's ``/ws/agent/<id>``: the cluster token, else its own."""
        return self.cluster_token or self.service.config.token

    # -- the other hypivisors' agents → this hypivisor's dashboards ----------------------------------------------
    def _on_batch(self, start: bool) -> None:
        """Another owner's batch: its changes are shown together once it is applied (one pass of the hub and its
        taps for the batch; runs of quiet and other changes keep their order)."""
        if start:
            self._gathered = []
            return
        gathered, self._gathered = self._gathered, None
        for events, quiet in gathered or ():
            self.service.remote_roster_changed(events, quiet)

    def _on_change(self, change: AgentChange) -> None:
        previous = self.mirror.get(change.key.agent)
        events = self._apply(change)
        if events:
            # a node_updated keeping the owner and status shown is quiet: it waits for the tick with the others
            quiet = previous is not None and _keeps_owner_and_status(previous.node, events)
            gathered = self._gathered
            if gathered is None:
                self.service.remote_roster_changed(events, quiet)
            elif gathered and gathered[-1][1] == quiet:
                gathered[-1][0].extend(events)
            else:
                gathered.append((list(events), quiet))

    def _apply(self, change: AgentChange) -> list[BaseModel]:
        if change.key.is_machine:  # a machine's record, not an agent's
            self.machines.on_change(change)
            return []
        if change.key.site != self.site:
            return []
        if self.service.registry.get(change.key.agent) is not None:
            # an id this hypivisor holds wins in its own roster: the mirror follows the shared record silently (a
            # lapsed lease or a delete of the id's old record must not remove the agent this one holds from its
            # dashboards), and shows it once this hypivisor's registry lets the id go (local_events)
            self.mirror.apply(change.op, change.key.machine, change.key.agent, change.record)
            remote = self.mirror.get(change.key.agent)
            if change.op == "put" and remote is not None and remote.node.status == "active":
                # it lives on with another hypivisor while this one only keeps its closed connection's offline
                # entry: let that go now (dashboards here show the live one; links here go to it), not after the TTL
                events = self.service.registry.release(change.key.agent)
                if events:
                    asyncio.get_running_loop().call_soon(self.service.publish, events)
            return []
        return self.mirror.apply(change.op, change.key.machine, change.key.agent, change.record)

    def remote_nodes(self, local_ids: set[str]) -> list[NodeInfo]:
        return [n for n in self.mirror.nodes() if n.id not in local_ids]

    def remote(self, node_id: str) -> RemoteAgent | None:
        return self.mirror.get(node_id)

    # -- agent links to another hypivisor's agent ------------------------------------------------------------------
    async def link_target(self, node_id: str) -> tuple[str, int]:
        """Where the owner's agent proxy listens (host, port); :class:`BackplaneError` when it cannot serve it."""
        agent = self.mirror.get(node_id)
        if agent is None:
            raise BackplaneError(f"agent {node_id[:64]!r} is not in the cluster's roster")
        key = AgentKey(self.site, agent.machine, node_id)
        answer = orjson.loads(await self.backplane.request_agent(key, b'{"op":"link"}', LINK_TIMEOUT_S))
        if not isinstance(answer, dict) or "error" in answer:
            raise BackplaneError(str(answer.get("error") if isinstance(answer, dict) else answer)[:200])
        host, port = answer.get("host"), answer.get("port")
        if not isinstance(host, str) or not isinstance(port, int) or not 0 < port < 65536:
            raise BackplaneError("the owner answered no agent proxy address")
        return host, port


def _keeps_owner_and_status(previous: NodeInfo, events: list[BaseModel]) -> bool:
    return all(
        isinstance(e, NodeUpdatedEvent) and e.node.hv == previous.hv and e.node.status == previous.status
        for e in events
    )


async def start_link(service: Service, config: Any, env: Mapping[str, str]) -> ClusterLink:
    """Join the cluster (bounded by the backplane's start timeout); :class:`ClusterError` when it cannot."""
    from hypivisor.cluster.nats_backplane import NatsBackplane

    host = advertised_host(config, env)
    ws_url = advertised_ws(host, config.port, env)
    cluster_token = cluster_token_from(env)
    oplog.add_secret(cluster_token)
    settings = settings_from(config, env)
    if settings.ttl_s < SAFE_LEASE_TTL_S:
        log.warning("cluster lease shorter than a NATS leader election", lease_ttl_s=settings.ttl_s,
                    advice=f"HYPI_NATS_LEASE_TTL below {SAFE_LEASE_TTL_S:g} s: losing one NATS server can drop "
                    "this hypivisor's agents from the other rosters for a moment (a lease not renewed during the "
                    "election); the default is 45 s")  # fmt: skip
    backplane = NatsBackplane(settings)
    link = ClusterLink(service, backplane, host, config.port, ws_url, cluster_token)
    try:
        await link.start()
    except BackplaneError as exc:
        raise ClusterError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a start that fails otherwise is one clear line too, never a traceback
        await bounded(backplane.close(deregister=False), CLOSE_S)
        raise ClusterError(f"cluster mode could not start: {type(exc).__name__}: {exc}"[:500]) from None
    return link
