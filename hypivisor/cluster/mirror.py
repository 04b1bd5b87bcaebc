"""The other hypivisors' agents, as this hypivisor shows them: a pure structure (no NATS, no clock, no loop).

Cluster mode (specs/cluster.md §3): each hypivisor's own :class:`hypivisor.registry.Registry` keeps deciding
everything about the agents whose connections it holds; the backplane carries their records (a ``NodeInfo`` dump
plus ``hv``, the owner's id) to every other hypivisor. :class:`RemoteRoster` turns those changes into what a
dashboard of this hypivisor needs: the nodes for ``list_nodes``/``init`` (each with ``hv`` set, so a client can
tell an agent owned elsewhere), and the roster events (``node_joined``/``node_updated``/``node_offline``/
``node_removed``) to push, one per real change (a record put again unchanged is no event).

Records of this hypivisor's own agents are ignored here (its registry has them already): an agent that moved
here from another hypivisor leaves the mirror silently, since the local registry announced it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from pi_socket.protocol import NodeInfo, NodeJoinedEvent, NodeOfflineEvent, NodeRemovedEvent, NodeUpdatedEvent

# roster fields that never make a change worth an event on their own (they move with every heartbeat)
_QUIET = {"last_seen"}


@dataclass(frozen=True)
class RemoteAgent:
    node: NodeInfo
    hv: str
    machine: str  # the key's machine (the record's own ``machine`` is the same for every record put by an owner)
    record: dict[str, Any]  # the record as stored (JSON values): a record put again is compared to it


class RemoteRoster:
    """Node id → the agent another hypivisor owns. Not thread-safe: drive it from one event loop."""

    def __init__(self, hv_id: str) -> None:
        self.hv_id = hv_id
        self._agents: dict[str, RemoteAgent] = {}
        self.refused = 0  # records that were not a valid node (counted, never shown)

    def __len__(self) -> int:
        return len(self._agents)

    def get(self, node_id: str) -> RemoteAgent | None:
        return self._agents.get(node_id)

    def nodes(self) -> list[NodeInfo]:
        return [a.node for a in self._agents.values()]

    def apply(
        self, op: Literal["put", "deleted", "expired"], machine: str, node_id: str, record: dict[str, Any] | None
    ) -> list[BaseModel]:
        """One change of the shared roster → the events for this hypivisor's dashboards (maybe none)."""
        previous = self._agents.get(node_id)
        if op != "put" or record is None:
            if previous is None:
                return []
            del self._agents[node_id]
            return [NodeRemovedEvent(id=node_id, reason="deregistered" if op == "deleted" else "ttl")]
        hv = record.get("hv")
        if not isinstance(hv, str) or not hv or hv == self.hv_id:
            if previous is not None:  # it registered here now: the local registry announces it
                del self._agents[node_id]
            return []
        try:
            node = NodeInfo.model_validate(record)  # ``hv`` is the record's own (checked above)
        except ValidationError:
            self.refused += 1
            return []
        if node.id != node_id:
            self.refused += 1
            return []
        self._agents[node_id] = RemoteAgent(node=node, hv=hv, machine=machine, record=record)
        # the mirror never changes a node it holds (each put is a new one), so an event may carry it as it is (a
        # node just validated: the event is built without validating it again)
        if previous is None:
            return [NodeJoinedEvent.model_construct(node=node)]
        if _same(previous, record):
            return []
        if node.status == "offline" and previous.node.status != "offline":
            return [NodeOfflineEvent(id=node_id)]
        return [NodeUpdatedEvent.model_construct(node=node)]

    def drop_hv(self, hv: str) -> list[BaseModel]:
        """Every agent of ``hv`` leaves (used when its lease is known gone before the store says so)."""
        gone = [node_id for node_id, a in self._agents.items() if a.hv == hv]
        for node_id in gone:
            del self._agents[node_id]
        return [NodeRemovedEvent(id=node_id, reason="ttl") for node_id in gone]


_QUIET_NONE = dict.fromkeys(_QUIET)


def _same(previous: RemoteAgent, record: dict[str, Any]) -> bool:
    """The record put again says nothing new: equal to the previous one but for the quiet fields (compared as
    stored, JSON values; a field only one of them has counts as a change)."""
    return {**previous.record, **_QUIET_NONE} == {**record, **_QUIET_NONE}  # one comparison in C
