"""The bridge's mirror of the approval gate, with no I/O (specs/approvals.md).

The gate itself runs in the shim (pi's process) and alone decides; this book keeps what the shim told the
bridge (the open questions in order, the policy and rules, the latest decisions) so every client sees it in
``init_state`` and live, and so a client's decision can be refused early when it can no longer apply.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from pi_socket.protocol import (
    MAX_APPROVAL_RULES,
    ApprovalPolicyMsg,
    ApprovalPreview,
    ApprovalRecord,
    ApprovalRequestMsg,
    ApprovalResolvedMsg,
    ApprovalRule,
)
from pi_socket.shimwire import ApprovalEndLine, ApprovalLine

RECENT_MAX = 50
PENDING_MAX = 1000  # the shim asks one call at a time; this only bounds a misbehaving shim


def clean_rules(raw: Any) -> list[ApprovalRule]:
    """Rules as the shim sent them, each validated; bad items are dropped (the shim cleans them too)."""
    out: list[ApprovalRule] = []
    if not isinstance(raw, list):
        return out
    for item in raw[:MAX_APPROVAL_RULES]:
        try:
            out.append(ApprovalRule.model_validate(item))
        except ValueError:
            continue
    return out


class ApprovalBook:
    def __init__(self) -> None:
        self.policy: str = "off"
        self.rules: list[ApprovalRule] = []
        self.pending: OrderedDict[str, ApprovalRequestMsg] = OrderedDict()
        self.recent: deque[ApprovalRecord] = deque(maxlen=RECENT_MAX)

    def snapshot(self, policy: str, rules: Any, pending: list[Any], cwd: str, preview: Any) -> None:
        """A (re)started bridge learns the gate's state from ``hello.approval``."""
        self.set_policy(policy, rules)
        self.pending.clear()
        for raw in pending[:PENDING_MAX]:
            try:
                self.ask(ApprovalLine.model_validate(raw), preview(raw, cwd))
            except ValueError:
                continue

    def set_policy(self, policy: str, rules: Any) -> ApprovalPolicyMsg:
        self.policy = policy
        self.rules = clean_rules(rules)
        return self.policy_msg()

    def policy_msg(self) -> ApprovalPolicyMsg:
        return ApprovalPolicyMsg(policy=self.policy, rules=list(self.rules))

    def ask(self, line: ApprovalLine, preview: ApprovalPreview | None) -> ApprovalRequestMsg:
        """A new question; returns the frame every client gets."""
        msg = ApprovalRequestMsg(
            id=line.id,
            tool_call_id=line.tool_call_id,
            tool_name=line.tool_name,
            input=line.input if isinstance(line.input, dict) else {"value": line.input},
            policy=line.policy,
            queued_at=line.queued_at,
            preview=preview,
            why=line.why,
            parent_tool_call_id=line.parent_tool_call_id,
        )
        self.pending[line.id] = msg
        while len(self.pending) > PENDING_MAX:
            self.pending.popitem(last=False)
        return msg

    def end(self, line: ApprovalEndLine, now: float) -> ApprovalResolvedMsg:
        """A question was settled (or a rule let a call through); returns the frame every client gets."""
        self.pending.pop(line.id, None)
        record = ApprovalRecord(
            id=line.id,
            tool_call_id=line.tool_call_id,
            tool_name=line.tool_name,
            summary=line.summary[:300],
            decision=line.decision,
            by=line.by,
            reason=line.reason,
            decided_at=line.decided_at if line.decided_at is not None else now,
            latency_ms=line.latency_ms,
        )
        self.recent.append(record)
        return ApprovalResolvedMsg(
            id=line.id, decision=line.decision, by=line.by, reason=line.reason, input=line.input, record=record
        )

    def check_decision(self, approval_id: str, decision: str, input_: dict[str, Any] | None) -> str | None:
        """Why a client's decision cannot apply ("conflict: ..." or "invalid: ..."), or None. The shim judges again."""
        req = self.pending.get(approval_id)
        if req is None:
            return "conflict: no such open question (already decided, aborted or timed out)"
        if input_ is not None:
            command = input_.get("command")
            if decision != "allow" or req.tool_name not in ("bash", "powershell"):
                return "invalid: only an allowed bash call takes an edited input"
            if set(input_) != {"command"} or not isinstance(command, str) or not command.strip():
                return "invalid: input must be {command: <the command to run>}"
        return None

    def pending_list(self) -> list[ApprovalRequestMsg]:
        return list(self.pending.values())
