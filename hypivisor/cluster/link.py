"""Cluster mode's glue (``--nats``, specs/cluster.md): the running hypivisor ↔ the NATS backplane.

Imported only when ``--nats`` (or ``HYPI_NATS_URL``) is given, so one process without it never loads NATS.

* **Own agents out**: every roster event this hypivisor's registry produces (join, update, offline, removal) is
  turned into a put or a delete of the agent's record (its ``NodeInfo`` + ``hv``), written in order by one task,
  with lease liveness (the record is written when it changes; this hypivisor's lease keeps all of them alive).
  Before the first put of an agent this hypivisor serves its ``hp.agent.…rpc`` subject (interest first, §4).
* **Others' agents in**: every change of the shared roster made by another hypivisor goes through the pure
  :class:`~hypivisor.cluster.mirror.RemoteRoster` and its events to this hypivisor's dashboards; ``list_nodes``
  and ``init`` show the mirror's nodes after the local ones (each with ``hv``).
* **Agent links** (§7, the "splice to the owner" variant): a ``/ws/agent/<id>`` for an agent another hypivisor
  owns asks the owner over ``hp.agent.…rpc`` (``{"op": "link"}``) where its agent proxy listens; this hypivisor
  then opens that proxy's ``/ws/agent/<id>`` with its own token and byte-splices: one extra hop, never more.

Settings beyond ``--nats`` (environment, as the other cluster knobs are still few):
``HYPI_NATS_SITE`` (default ``main``), ``HYPI_NATS_LEASE_TTL`` (seconds, default 45; the lease is put every
third of it), ``HYPI_NATS_ADVERTISE`` (host other hypivisors dial for agent links; default the ``--host``, or
this machine's name when that is a wildcard address).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from pydantic import BaseModel

from hypivisor.cluster.approvals import ApprovalsLink
from hypivisor.cluster.backplane import AgentChange, Backplane, BackplaneError, bounded
from hypivisor.cluster.machines import ClusterMachines
from hypivisor.cluster.mirror import RemoteAgent, RemoteRoster
from hypivisor.cluster.names import AgentKey, check_site, token
from pi_socket.protocol import NodeInfo, NodeJoinedEvent, NodeOfflineEvent, NodeRemovedEvent, NodeUpdatedEvent

if TYPE_CHECKING:
    from hypivisor.service import Service

log = structlog.get_logger(part="cluster")

DEFAULT_SITE = "main"
DEFAULT_LEASE_TTL_S = 45.0
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


class ClusterLink:
    """One hypivisor's membership of the cluster (see the module docstring)."""

    def __init__(self, service: Service, backplane: Backplane, host: str, port: int) -> None:
        self.service = service
        self.backplane = backplane
        self.site = backplane.settings.site
        self.host = host
        self.port = port
        self.mirror = RemoteRoster(backplane.hv_id)
        self.machines = ClusterMachines(self)  # machine records and machine requests across hypivisors
        self._keys: dict[str, AgentKey] = {}  # own node id → its key (a removal carries only the id)
        self._served: dict[AgentKey, Any] = {}  # own agent → stop serving its rpc subject
        # the writes not done yet, one per agent (the latest wins: a burst of changes is one put, and the queue is
        # bounded by the roster), oldest first
        self._pending: dict[AgentKey, tuple[str, dict[str, Any] | None]] = {}
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.approvals = ApprovalsLink(service, backplane, self.site)

    @property
    def hv_id(self) -> str:
        return self.backplane.hv_id

    async def start(self) -> None:
        await self.backplane.start()
        self.backplane.on_agent_change(self._on_change)
        for key, record in self.backplane.agents().items():  # the snapshot read at start
            self._apply(AgentChange("put", key, record, 0))
        self._writer = asyncio.create_task(self._write_loop(), name="cluster-writer")
        await self.machines.start()
        await self.approvals.start()
        log.info("cluster joined", hv=self.hv_id, site=self.site, remote_agents=len(self.mirror))

    async def close(self) -> None:
        """A clean stop: this hypivisor's records and lease are deleted (its agents reconnect elsewhere)."""
        if self._writer is not None:
            self._writer.cancel()
            await bounded(self._writer, 1.0)
        await bounded(self.machines.close(), 1.0)
        await bounded(self.approvals.close(), 1.0)
        await bounded(self.backplane.close(deregister=True), CLOSE_S)

    # -- own agents → the backplane ---------------------------------------------------------------------------
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

    def approvals_report(self, node: NodeInfo, params: Any) -> None:
        """An own agent's register/heartbeat with its attention report: its open approvals (§5)."""
        key = AgentKey(self.site, node.machine, node.id)
        self.approvals.report(key, list(params.attention.live), getattr(params, "approvals_ended", None))

    def _put(self, node: NodeInfo) -> None:
        key = AgentKey(self.site, node.machine, node.id)
        old = self._keys.get(node.id)
        if old is not None and old != key:  # the same id re-registered from another machine name
            self._enqueue(old, "delete", None)
        self._keys[node.id] = key
        record = node.model_dump(mode="json", exclude={"hv"})
        self._enqueue(key, "put", record)

    def _enqueue(self, key: AgentKey, op: str, record: dict[str, Any] | None) -> None:
        self._pending.pop(key, None)
        self._pending[key] = (op, record)
        self._wake.set()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                key = next(iter(self._pending))
                op, record = self._pending.pop(key)
                try:
                    if op == "put" and record is not None:
                        if key not in self._served:  # interest first: the owner answers before the agent shows
                            self._served[key] = await self.backplane.serve_agent(key, self._rpc_handler(key.agent))
                        await self.backplane.register_agent(key, record)  # False: retried in the background
                    else:
                        stop = self._served.pop(key, None)
                        if stop is not None:
                            await stop()
                        await self.backplane.unregister_agent(key)
                except Exception as exc:  # noqa: BLE001 - one failed write must not stop the others
                    log.warning("cluster write failed", op=op, node_id=key.agent[:128],
                                error=f"{type(exc).__name__}: {exc}")  # fmt: skip

    def _rpc_handler(self, node_id: str) -> Any:
        async def handle(data: bytes) -> bytes:
            request = orjson.loads(data)
            op = request.get("op") if isinstance(request, dict) else None
            if op != "link":
                raise BackplaneError(f"unknown op {str(op)[:32]!r}")
            entry = self.service.registry.get(node_id)
            if entry is None or entry.node.status != "active":
                raise BackplaneError(f"agent {node_id[:64]!r} is not active here")
            return orjson.dumps({"host": self.host, "port": self.port, "hv": self.hv_id})

        return handle

    # -- the other hypivisors' agents → this hypivisor's dashboards ----------------------------------------------
    def _on_change(self, change: AgentChange) -> None:
        events = self._apply(change)
        if events:
            self.service.remote_roster_changed(events)

    def _apply(self, change: AgentChange) -> list[BaseModel]:
        if change.key.is_machine:  # a machine's record, not an agent's
            self.machines.on_change(change)
            return []
        if change.key.site != self.site:
            return []
        if self.service.registry.get(change.key.agent) is not None and change.op == "put":
            # an id this hypivisor holds wins in its own roster; a stale copy elsewhere is not shown twice
            self.mirror.apply("deleted", change.key.machine, change.key.agent, None)
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


async def start_link(service: Service, config: Any, env: Mapping[str, str]) -> ClusterLink:
    """Join the cluster (bounded by the backplane's start timeout); :class:`ClusterError` when it cannot."""
    from hypivisor.cluster.nats_backplane import NatsBackplane

    backplane = NatsBackplane(settings_from(config, env))
    link = ClusterLink(service, backplane, advertised_host(config, env), config.port)
    try:
        await link.start()
    except BackplaneError as exc:
        raise ClusterError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a start that fails otherwise is one clear line too, never a traceback
        await bounded(backplane.close(deregister=False), CLOSE_S)
        raise ClusterError(f"cluster mode could not start: {type(exc).__name__}: {exc}"[:500]) from None
    return link
