"""A decision pushed down the registry connection (``approval_decision`` event, specs/cluster.md §5): the registry
client hands it to the bridge, which applies it as the agent link's ``approval_decision`` (the shim judges)."""

from __future__ import annotations

import asyncio
from typing import Any

from pi_socket.bridge.app import Bridge
from pi_socket.bridge.config import BridgeConfig
from pi_socket.bridge.hypivisor_client import HypivisorClient
from pi_socket.protocol import CAPABILITIES, HeartbeatParams, RegisterParams
from pi_socket.shimwire import ApprovalLine


def client() -> HypivisorClient:
    def params() -> RegisterParams:
        return RegisterParams(id="n1", machine="m", cwd="/", port=9, capabilities=list(CAPABILITIES))

    return HypivisorClient("ws://127.0.0.1:9/ws", None, params, lambda: HeartbeatParams(id="n1"), 1.0)


def test_the_registry_client_hands_a_decision_to_the_bridge_and_ignores_other_events() -> None:
    c = client()
    event = {"event": "approval_decision", "node_id": "n1", "id": "a1", "decision": "allow"}
    c._on_event(event)  # nobody listens yet: ignored, no error
    got: list[dict] = []
    c.on_approval_decision = got.append
    c._on_event(event)
    c._on_event({"event": "something_newer", "id": "a1"})  # an event this bridge does not know: ignored
    assert got == [event]
    assert "approval_events" in CAPABILITIES


class RecordingShim:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []

    async def request(self, method: str, timeout: float = 5.0, **fields: Any) -> Any:
        self.requests.append((method, fields))
        return {}

    def send_nowait(self, line: Any) -> None:
        pass


async def test_the_bridge_applies_a_registry_decision_once_through_the_agent_link_path() -> None:
    shim = RecordingShim()
    bridge = Bridge(BridgeConfig.from_env({"HYPIVISOR_WS": "off"}), shim)  # type: ignore[arg-type]
    bridge.node_id = "n1"
    bridge.approvals.ask(
        ApprovalLine(
            t="approval",
            id="a1",
            tool_call_id="c1",
            tool_name="bash",
            input={"command": "ls"},
            policy="writes",
            queued_at=1.0,
        ),  # fmt: skip
        None,
    )
    bridge._on_registry_decision({"event": "approval_decision", "node_id": "other", "id": "a1", "decision": "deny"})
    bridge._on_registry_decision({"event": "approval_decision", "node_id": "n1", "id": "a1", "decision": "maybe"})
    bridge._on_registry_decision({"event": "approval_decision", "node_id": "n1", "id": "zz", "decision": "deny"})
    bridge._on_registry_decision({"event": "approval_decision", "node_id": "n1", "id": "a1", "decision": "deny",
                                  "reason": "not now", "by": "bob"})  # fmt: skip
    for _ in range(20):
        await asyncio.sleep(0)
    # another node's, a malformed one and an unknown approval never reach pi; the good one does, once
    assert [(m, f.get("approval_id"), f.get("decision"), f.get("reason")) for m, f in shim.requests] == [
        ("approval_decision", "a1", "deny", "not now")
    ]


def test_the_gates_latest_outcomes_go_with_register_and_heartbeat_for_ten_minutes() -> None:
    import time

    from pi_socket.shimwire import ApprovalEndLine

    bridge = Bridge(BridgeConfig.from_env({"HYPIVISOR_WS": "off"}), RecordingShim())  # type: ignore[arg-type]
    assert bridge.heartbeat_params().approvals_ended is None  # an agent that never asked sends nothing
    now = time.time()
    for n, at in ((1, now - 3600), (2, now - 5)):
        bridge.approvals.end(
            ApprovalEndLine(
                t="approval_end",
                id=f"a{n}",
                tool_call_id=f"c{n}",
                tool_name="bash",
                decision="deny",
                by="terminal",
                reason="no",
                decided_at=at,
            ),  # fmt: skip
            now,
        )
    ended = bridge.heartbeat_params().approvals_ended
    assert [(e.id, e.decision, e.by, e.reason) for e in ended or []] == [("a2", "deny", "terminal", "no")]
    assert bridge._roster_fields()["approvals_ended"] == ended  # register sends the same fields
