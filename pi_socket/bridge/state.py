"""Everything the bridge knows about its pi, updated from the shim's lines, with no I/O.

``AgentState.apply_event`` is the single place where a pi event changes
state; it returns an :class:`Effect` telling the asyncio layer what to do
(forward a trimmed copy to clients, send a heartbeat now, refresh ``state``).
``init_state`` turns the state into the first frame a client receives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pi_socket.protocol import (
    INIT_HISTORY_BUDGET_BYTES,
    PI_EVENT_TYPES,
    AgentNode,
    CommandInfo,
    ContextUsage,
    InitStateMsg,
    PiMessage,
    TokenTotals,
    ToolInfo,
)

from .history import HistoryMirror, is_visible, message_usage, usage_totals
from .partial import PartialMessage

M = TypeVar("M", ToolInfo, CommandInfo)

# pi events clients receive (native shape), plus the shim's own context_usage: protocol.PI_EVENT_TYPES.
FORWARDED_EVENTS = frozenset(PI_EVENT_TYPES)
# Fields that can be huge and that clients rebuild themselves (specs/pi-runtime.md §3).
_STRIP = {
    "message_update": ("message", "partial"),
    "turn_end": ("context",),
    "agent_before_settle": ("context",),
}


@dataclass
class Effect:
    """What the asyncio layer must do after an event."""

    forward: dict[str, Any] | None = None  # trimmed event for every client
    heartbeat_now: bool = False  # activity/name/model changed: tell the roster at once
    refresh_state: bool = False  # a run ended: ask the shim for context usage/model
    resync_clients: bool = False  # the partial was repaired from a snapshot: fresh init_state to all, not `forward`


def model_name(value: Any) -> str | None:
    """pi gives a model as ``{provider, id}``; the shim may already send ``"provider/id"``."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict) and value.get("id"):
        return f"{value['provider']}/{value['id']}" if value.get("provider") else str(value["id"])
    return None


def context_usage(value: Any) -> ContextUsage | None:
    """pi's ``{tokens, contextWindow, percent}`` (or our snake_case) → ContextUsage."""
    if not isinstance(value, dict):
        return None
    try:
        return ContextUsage(
            tokens=value.get("tokens"),
            context_window=value.get("contextWindow", value.get("context_window")),
            percent=value.get("percent"),
        )
    except ValueError:
        return None


def trimmed(event: dict[str, Any]) -> dict[str, Any]:
    """A copy without the bulky snapshot fields; the ``assistantMessageEvent.partial`` goes too."""
    strip = _STRIP.get(event.get("type", ""), ())
    out = {k: v for k, v in event.items() if k not in strip}
    ame = out.get("assistantMessageEvent")
    if isinstance(ame, dict) and "partial" in ame:
        out["assistantMessageEvent"] = {k: v for k, v in ame.items() if k != "partial"}
    return out


@dataclass
class AgentState:
    session_id: str | None = None
    session_file: str | None = None
    session_name: str | None = None
    model: str | None = None
    tools: list[ToolInfo] = field(default_factory=list)
    commands: list[CommandInfo] = field(default_factory=list)
    context: ContextUsage | None = None
    working: bool = False
    settled_supported: bool = False  # pi ≥ 1.x ends a run with agent_settled, not agent_end
    history: HistoryMirror = field(default_factory=HistoryMirror)
    partial: PartialMessage = field(default_factory=PartialMessage)
    tokens: dict[str, int] = field(default_factory=lambda: usage_totals([])[0])
    cost: float = 0.0
    loading_history: bool = False
    # Bumped whenever an event changes the name or model, so an older ``state`` answer
    # (requested before the change) cannot overwrite the newer value.
    roster_epoch: int = 0
    _arrived: list[dict[str, Any]] = field(default_factory=list)

    # ------------------------------------------------------------------ sessions
    def begin_session(self, info: dict[str, Any]) -> bool:
        """A ``session`` line (or ``hello.session``): returns True if it is a different session."""
        new_id = info.get("session_id")
        changed = new_id != self.session_id or self.session_id is None
        self.session_id = new_id if isinstance(new_id, str) else None
        self.session_file = info.get("session_file") if isinstance(info.get("session_file"), str) else None
        self.apply_state(info)
        if changed:
            self.partial.end()
            self.working = False
        return changed

    def apply_state(self, info: dict[str, Any]) -> bool:
        """Fields from ``session`` lines and ``state``/``tools``/``commands`` answers; True if the roster changed."""
        before = (self.session_name, self.model)
        if "session_name" in info:
            name = info.get("session_name")
            self.session_name = name if isinstance(name, str) and name else None
        if "model" in info:
            self.model = model_name(info.get("model")) or self.model
        if isinstance(info.get("tools"), list):
            self.tools = _valid(ToolInfo, info["tools"])
        if isinstance(info.get("commands"), list):
            self.commands = _valid(CommandInfo, info["commands"])
        usage = context_usage(info.get("context_usage", info.get("contextUsage")))
        if usage is not None:
            self.context = usage
        return before != (self.session_name, self.model)

    def begin_history(self) -> None:
        """The bridge asked the shim for ``history``: collect message_end until the answer."""
        self.loading_history = True
        self._arrived = []

    def finish_history(self, messages: Any) -> None:
        """The shim's snapshot arrived (or failed: ``None`` keeps what the mirror has)."""
        arrived, self._arrived = self._arrived, []
        self.loading_history = False
        if isinstance(messages, list):
            self.history.reset(messages, arrived)
        else:
            for m in arrived:
                self.history.append(m)
        self.tokens, self.cost = usage_totals(self.history.messages)

    # ------------------------------------------------------------------ events
    def apply_event(self, event: dict[str, Any]) -> Effect:
        """Update state from one pi event and say what to do next."""
        kind = event.get("type")
        effect = Effect()
        handler = EVENT_HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is not None:
            handler(self, event, effect)
        if kind in FORWARDED_EVENTS and not (kind == "message_end" and not is_visible(event.get("message"))):
            if kind != "session_info_changed" or effect.heartbeat_now:
                effect.forward = trimmed(event)
        return effect

    def _set_working(self, working: bool, effect: Effect) -> None:
        if working != self.working:
            self.working = working
            effect.heartbeat_now = True

    def _on_agent_start(self, _e: dict[str, Any], effect: Effect) -> None:
        self._set_working(True, effect)

    def _on_agent_end(self, _e: dict[str, Any], effect: Effect) -> None:
        self.partial.end()
        if not self.settled_supported:
            self._set_working(False, effect)
            effect.refresh_state = True

    def _on_agent_settled(self, _e: dict[str, Any], effect: Effect) -> None:
        self.settled_supported = True
        self.partial.end()
        self._set_working(False, effect)
        effect.refresh_state = True

    def _on_message_start(self, e: dict[str, Any], _effect: Effect) -> None:
        message = e.get("message")
        if isinstance(message, dict) and message.get("role") == "assistant":
            self.partial.start(message)

    def _on_message_update(self, e: dict[str, Any], effect: Effect) -> None:
        effect.resync_clients = self.partial.update(e)

    def _on_message_end(self, e: dict[str, Any], _effect: Effect) -> None:
        message = e.get("message")
        if not is_visible(message):
            return
        if message.get("role") == "assistant":
            self.partial.end()
        if self.loading_history:
            self._arrived.append(message)
            return
        if self.history.append(message):
            tokens, cost = message_usage(message)
            self.tokens = {k: self.tokens[k] + tokens[k] for k in self.tokens}
            self.cost += cost

    def _on_session_info_changed(self, e: dict[str, Any], effect: Effect) -> None:
        effect.heartbeat_now = self.rename(e.get("name"))

    def _on_model_select(self, e: dict[str, Any], effect: Effect) -> None:
        name = model_name(e.get("model"))
        if name and name != self.model:
            self.model = name
            self.roster_epoch += 1
            effect.heartbeat_now = True

    def _on_context_usage(self, e: dict[str, Any], _effect: Effect) -> None:
        self.context = context_usage(e) or self.context

    def set_session_name(self, name: str) -> Effect:
        """A rename a client asked for and pi accepted: if the name changed, every client hears
        ``session_info_changed`` and the roster a heartbeat, exactly as when pi reports a rename."""
        effect = Effect()
        if self.rename(name):
            effect.heartbeat_now = True
            effect.forward = {"type": "session_info_changed", "name": name}
        return effect

    def rename(self, name: Any) -> bool:
        """Set the session name; True if it changed (only then do clients and the roster hear of it)."""
        value = name if isinstance(name, str) and name else None
        if value == self.session_name:
            return False
        self.session_name = value
        self.roster_epoch += 1
        return True

    # ------------------------------------------------------------------ frames
    def init_state(self, node: AgentNode, budget: int = INIT_HISTORY_BUDGET_BYTES) -> InitStateMsg:
        """The first frame for a client: newest history within ``budget`` plus the live state."""
        window = self.history.tail_window(budget)
        partial = self.partial.snapshot()
        return InitStateMsg(
            node=node,
            messages=[PiMessage.model_validate(m) for m in window.messages],
            tools=self.tools,
            commands=self.commands,
            is_streaming=self.working,
            partial=PiMessage.model_validate(partial) if partial else None,
            truncated=window.truncated,
            total_messages=window.total,
            cursor=window.cursor,
            session_name=self.session_name,
            model=self.model,
            context_usage=self.context,
            tokens=TokenTotals(**self.tokens),
            cost=self.cost,
            session_file=self.session_file,
        )


EventHandler = Callable[[AgentState, dict[str, Any], Effect], None]

# The pi events the mirror reacts to, by ``type``; every other event is only forwarded (when it is one of
# ``FORWARDED_EVENTS``).
EVENT_HANDLERS: dict[str, EventHandler] = {
    "agent_start": AgentState._on_agent_start,
    "agent_end": AgentState._on_agent_end,
    "agent_settled": AgentState._on_agent_settled,
    "message_start": AgentState._on_message_start,
    "message_update": AgentState._on_message_update,
    "message_end": AgentState._on_message_end,
    "session_info_changed": AgentState._on_session_info_changed,
    "model_select": AgentState._on_model_select,
    "context_usage": AgentState._on_context_usage,
}


def _valid(model: type[M], items: list[Any]) -> list[M]:
    """Items that validate; a malformed tool or command from the shim is skipped, not fatal."""
    out: list[M] = []
    for item in items:
        try:
            out.append(model.model_validate(item))
        except ValueError:
            continue
    return out
