"""Cluster mode: quiet roster changes reach this hypivisor's dashboards together, once per tick of the cluster
(specs/cluster.md §3). Pure: no loop, no clock.

A quiet change is a ``node_updated`` that keeps the node's owner and status (session name, activity, unread count,
budget, tmux session). The registry's own ``node_updated`` only ever is one (a join, a new owner or a status change
is ``node_joined``, ``node_offline`` or ``node_removed``); another hypivisor's is one when its owner and status are
the ones shown. The owners put such changes on the wall clock's multiples of ``GATHER_S`` and send them to each
other in batches once stored; holding them here (own and received) until the next of those ticks gives each
dashboard one write per tick for all of them, instead of one per change and per owner's batch, and costs no
wake-up of its own (the hypivisor puts its gathered changes at that instant too). An own change is shown within
``GATHER_S``, another hypivisor's within twice that.

A held update is the node's latest (a later one replaces it). Any other event of the same node releases it first,
so a dashboard never sees a node's events out of order (an update, then the node going offline).
"""

from __future__ import annotations

from pydantic import BaseModel

from pi_socket.protocol import NodeInfo, NodeUpdatedEvent


class QuietHold:
    """Quiet ``node_updated`` events (own agents' and other hypivisors') held for the next tick; drive it from one
    event loop."""

    def __init__(self) -> None:
        self._held: dict[str, NodeUpdatedEvent] = {}

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, events: list[BaseModel], quiet: bool = True) -> list[BaseModel]:
        """The events to show now, in order (a held update of a node first when another event of it comes); each
        ``node_updated`` is held instead when ``quiet`` (the caller knows it keeps the node's owner and status)."""
        now: list[BaseModel] = []
        for event in events:
            if quiet and isinstance(event, NodeUpdatedEvent):
                self._held.pop(event.node.id, None)  # the latest, in the order of the latest changes
                self._held[event.node.id] = event
                continue
            node = getattr(event, "node", None)
            node_id = node.id if isinstance(node, NodeInfo) else getattr(event, "id", None)
            if isinstance(node_id, str) and (held := self._held.pop(node_id, None)) is not None:
                now.append(held)
            now.append(event)
        return now

    def release(self) -> list[BaseModel]:
        """Every held update (the tick came), oldest first."""
        held: list[BaseModel] = list(self._held.values())
        self._held.clear()
        return held
