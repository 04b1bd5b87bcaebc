"""The stdio wire between the shim inside pi and its bridge: one model per line kind (specs/protocol.md §4).

The TypeScript shim that pi loads starts ``python -m pi_socket.bridge`` with
piped stdio; the two exchange one JSON object per ``\\n``-terminated UTF-8 line.
Every object has ``t``, its kind:

* shim → bridge: ``hello`` (first line after each spawn: who this pi is, plus
  the session facts and the approval gate's state), ``session`` (every ``session_start``), ``event`` (one pi
  event, ``e``), ``res`` (the answer to one ``req``), ``log`` (a shim log line
  for the bridge's log), ``bye`` (pi is quitting), and the approval gate's
  ``approval`` (a call waits for a decision), ``approval_end`` (it was decided)
  and ``policy`` (the policy or rules changed): specs/approvals.md;
* bridge → shim: ``ready`` (the agent port is bound), ``watch`` (the bridge
  gained its first client or lost its last), ``req`` (a request, answered by
  exactly one ``res`` with the same ``id``).

The bridge validates the *envelope* of each line it reads: the kind and the
fields the bridge itself uses, with the types it relies on (strict: no
coercion). pi's own objects inside a line (an event ``e``, a ``res.data``, the
items of ``tools``/``commands``) pass through as they are: pi owns their shape,
the bridge's state reads them defensively, and copying them would cost on
every event. For the same reason an ``event`` line is not built into a model
on the bridge: :func:`event_body` checks its envelope by hand (``EventLine``
documents it). Unknown kinds and unknown fields are ignored, so a newer shim
may send more; a known kind with a bad envelope raises :class:`ShimLineError`
and the bridge drops that line. Lines the bridge writes are built from the
``ReadyLine``/``WatchLine``/``ReqLine`` models and serialised with
:func:`dump_line`.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, InstanceOf, StrictBool, StrictInt, StrictStr, ValidationError


class ShimLineError(ValueError):
    """A line of a known kind whose envelope is not what §4 says; ``kind`` is its ``t``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"bad {kind} line from the shim: {message}")
        self.kind = kind


class _In(BaseModel):
    """A line the bridge reads: strict types for what it uses, anything else ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", defer_build=True)


class _Out(BaseModel):
    """A line the bridge writes: every field declared, so a typo is an error before it reaches the pipe."""

    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True, defer_build=True)


# ---------------------------------------------------------------------------------------------- shim → bridge
class SessionFacts(BaseModel):
    """The session facts of ``hello.session`` and of a ``session`` line. Unknown fields are kept
    (the state also takes ``context_usage`` from here when a shim sends it); :meth:`facts` gives
    only the fields the line carried, since an absent ``session_name`` leaves the name alone."""

    model_config = ConfigDict(strict=True, extra="allow", defer_build=True)

    session_id: StrictStr | None = None
    session_file: StrictStr | None = None
    session_name: StrictStr | None = None
    model: StrictStr | dict[str, Any] | None = None  # "provider/id", or pi's {provider, id}
    tools: list[Any] | None = None  # [{name, description, active}]; bad items are skipped by the state
    commands: list[Any] | None = None  # [{name, description, source}]

    def facts(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True, exclude={"t", "reason"})


class ApprovalLine(_In):
    """A tool call waits for a person (the gate in the shim asked)."""

    t: Literal["approval"]
    id: StrictStr
    tool_call_id: StrictStr
    parent_tool_call_id: StrictStr | None = None
    tool_name: StrictStr
    input: Any = None  # pi's tool input, as the model wrote it
    policy: Literal["off", "writes", "all"]
    why: StrictStr | None = None
    queued_at: float  # unix seconds


class ApprovalEndLine(_In):
    """A question was settled (or a rule let a call through: ``by == "rule"``, no ``approval`` before it)."""

    t: Literal["approval_end"]
    id: StrictStr
    tool_call_id: StrictStr = ""
    tool_name: StrictStr = ""
    summary: StrictStr = ""
    decision: Literal["allow", "deny"]
    by: Literal["dashboard", "terminal", "rule", "timeout", "abort", "no_ui"]
    reason: StrictStr | None = None
    input: dict[str, Any] | None = None  # the edited input that ran
    latency_ms: float = 0
    decided_at: float | None = None


class PolicyLine(_In):
    t: Literal["policy"]
    policy: Literal["off", "writes", "all"]
    rules: list[Any] = Field(default_factory=list)  # [{tool, prefix?}]; cleaned again by the bridge


class ApprovalSnapshot(_In):
    """``hello.approval``: the gate's state when this bridge starts (a restarted bridge learns open questions)."""

    policy: Literal["off", "writes", "all"] = "off"
    rules: list[Any] = Field(default_factory=list)
    pending: list[Any] = Field(default_factory=list)  # ``approval`` lines


class HelloLine(_In):
    t: Literal["hello"]
    v: Any = None  # wire version (1); informational
    node_id: StrictStr | None = None  # stable for the pi process
    pid: StrictInt | None = None  # pi's pid
    cwd: StrictStr | None = None  # the session's cwd
    pi_version: StrictStr | None = None  # e.g. "0.73.1", "1.5.2"
    mode: Any = None  # pi's ctx.mode, or "interactive"/"print"; informational
    session: SessionFacts | None = None
    approval: ApprovalSnapshot | None = None


# ------------------------------------------------------------------------------ shim → machine service (socket)
ATTACH_ENV_PREFIXES = ("PI_SOCKET_", "HYPI")  # PI_SOCKET_*, HYPIVISOR_WS, HYPI_TOKEN, HYPI_ALLOWED_ORIGINS
ATTACH_ENV_KEYS = frozenset({"PI_CODING_AGENT_DIR", "HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"})
ATTACH_ENV_MAX = 256  # entries
ATTACH_VALUE_MAX = 8192  # characters per value


def attach_env_key(key: str) -> bool:
    """Whether an environment variable is one a bridge reads (what an ``attach`` line carries)."""
    return key.startswith(ATTACH_ENV_PREFIXES) or key in ATTACH_ENV_KEYS


class AttachLine(_In):
    """The first line on the machine service's agent socket (``agents.sock``), before the usual ``hello``: what a
    per-pi bridge reads from its environment and process today. The service builds this agent's bridge settings
    from ``env`` alone (its own environment never leaks into an agent's), keeping only :func:`attach_env_key` names."""

    t: Literal["attach"]
    v: Any = None  # wire version (1); informational
    pid: StrictInt | None = None  # pi's pid
    cwd: StrictStr | None = None  # pi's working directory (the bridge's cwd before the hello)
    env: dict[StrictStr, StrictStr] = Field(default_factory=dict)

    def bridge_env(self) -> dict[str, str]:
        """The bridge's environment: known names only, bounded in count and size."""
        out: dict[str, str] = {}
        for key, value in self.env.items():
            if len(out) >= ATTACH_ENV_MAX:
                break
            if attach_env_key(key) and len(value) <= ATTACH_VALUE_MAX:
                out[key] = value
        return out


def parse_attach_line(raw: bytes) -> AttachLine:
    """The service's first line from a shim; ShimLineError when it is not an ``attach`` line."""
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ShimLineError("attach", "not JSON") from None
    if not isinstance(line, dict) or line.get("t") != "attach":
        raise ShimLineError("attach", "the first line must be an attach line")
    try:
        return AttachLine.model_validate(line)
    except ValidationError as exc:
        raise ShimLineError("attach", _describe(exc)) from None


class SessionLine(SessionFacts):
    t: Literal["session"]
    reason: StrictStr | None = None  # session_start's reason


class EventLine(_In):
    """Documents the ``event`` envelope; the bridge checks it with :func:`event_body` instead."""

    t: Literal["event"]
    e: InstanceOf[dict[str, Any]]  # the slim pi event, as pi shaped it


class ResLine(_In):
    t: Literal["res"]
    id: StrictStr  # the req's id
    ok: StrictBool
    data: Any = None  # the answer when ok (may be megabytes: never traversed here)
    error: Any = None  # the reason when not ok


class LogLine(BaseModel):
    """A shim log line; its other fields (``boundary``, ``stack``, ...) go to the bridge's log as they are."""

    model_config = ConfigDict(strict=True, extra="allow", defer_build=True)

    t: Literal["log"]
    level: StrictStr = "info"  # debug | info | warn | error
    msg: StrictStr = ""


class ByeLine(_In):
    t: Literal["bye"]
    reason: StrictStr | None = None


ShimLine = HelloLine | SessionLine | ResLine | LogLine | ByeLine | ApprovalLine | ApprovalEndLine | PolicyLine

# The kinds built into models by :func:`parse_shim_line` (``event`` has its own fast check).
_MODELS: dict[str, type[BaseModel]] = {
    "hello": HelloLine,
    "session": SessionLine,
    "res": ResLine,
    "log": LogLine,
    "bye": ByeLine,
    "approval": ApprovalLine,
    "approval_end": ApprovalEndLine,
    "policy": PolicyLine,
}
SHIM_KINDS = frozenset((*_MODELS, "event"))


def _describe(exc: ValidationError) -> str:
    """The first few problems as ``field: problem``, never the input (an event can be megabytes)."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "line"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def event_body(line: dict[str, Any]) -> dict[str, Any]:
    """The pi event of an ``event`` line (the caller has seen ``t == "event"``), not copied.
    Raises ShimLineError if ``e`` is not an object. Costs one type check: this runs for every event."""
    body = line.get("e")
    if type(body) is not dict:
        raise ShimLineError("event", "e: must be an object")
    return body


def parse_shim_line(line: dict[str, Any]) -> ShimLine | None:
    """One decoded shim line (not an ``event``) as its model; None for a kind this bridge does not
    know (ignored, §4). Raises ShimLineError when a known kind's envelope is wrong."""
    kind = line.get("t")
    if not isinstance(kind, str) or kind not in _MODELS:
        return None
    model = _MODELS[kind]
    try:
        return model.model_validate(line)  # type: ignore[return-value]
    except ValidationError as exc:
        raise ShimLineError(kind, _describe(exc)) from None


# ---------------------------------------------------------------------------------------------- bridge → shim
class ReadyLine(_Out):
    t: Literal["ready"] = "ready"
    port: StrictInt
    url: StrictStr
    watch: StrictBool = True  # this bridge sends `watch` lines (an older one did not: the shim then always streams)
    watching: StrictBool  # it has a client right now


class WatchLine(_Out):
    t: Literal["watch"] = "watch"
    on: StrictBool  # first client joined (true) / last one left (false)


class ReqLine(_Out):
    """A request; the op's fields beside ``id``/``op`` are those of §4.2's table."""

    t: Literal["req"] = "req"
    id: StrictStr  # "b1", "b2", ...
    op: Literal[
        "send",
        "abort",
        "history",
        "state",
        "tools",
        "commands",
        "set_session_name",
        "notify",
        "approval_decision",
        "set_approval_policy",
        "models",
        "set_model",
        "set_thinking_level",
        "compact",
        "session_command",
        "quit",
    ]
    text: StrictStr | None = None  # send
    prompt_id: StrictStr | None = None  # send
    images: list[dict[str, Any]] | None = None  # send: [{type:"image", data, mimeType}]
    deliver_as: Literal["steer", "followUp"] | None = Field(None, alias="deliverAs")  # send
    name: StrictStr | None = None  # set_session_name; session_command: "new" | "reload"
    provider: StrictStr | None = None  # set_model
    model_id: StrictStr | None = None  # set_model
    thinking_level: StrictStr | None = None  # set_thinking_level
    instructions: StrictStr | None = None  # compact
    message: StrictStr | None = None  # notify
    level: Literal["info", "warning", "error"] | None = None  # notify
    approval_id: StrictStr | None = None  # approval_decision
    decision: Literal["allow", "deny"] | None = None  # approval_decision
    reason: StrictStr | None = None  # approval_decision
    input: dict[str, Any] | None = None  # approval_decision (edit and allow)
    remember: StrictBool | None = None  # approval_decision
    policy: Literal["off", "writes", "all"] | None = None  # set_approval_policy
    rules: list[dict[str, Any]] | None = None  # set_approval_policy


BridgeLine = ReadyLine | WatchLine | ReqLine


def dump_line(line: BridgeLine) -> dict[str, Any]:
    """The JSON object of one outgoing line (absent optional fields are left out, as §4.2 shows them)."""
    return line.model_dump(by_alias=True, exclude_none=True)
