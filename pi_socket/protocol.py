"""Wire protocol v1: the one source of truth for every JSON frame Hyper-Pi sends.

Two conversations share these models:

* the **registry** on the hypivisor's ``/ws``: JSON-RPC-like requests
  ``{id, method, params}`` answered by ``{id, result}`` or
  ``{id, error: {code, message}}``, plus push events ``{event, ...}``;
* the **agent link** on a bridge's port (directly, or through the hypivisor's
  ``/ws/agent/<id>`` proxy): typed frames ``{type, ...}``.

Incoming frames are validated with these models (``extra="forbid"`` on every
client-to-server message, so a typo is an error, not a silent no-op); outgoing
frames are serialised from them. ``python -m pi_socket.protocol schema`` prints
the JSON Schema that Pi-DE turns into TypeScript types.

pi's own events and messages are passed through untouched (see
``specs/protocol.md``): they are modelled as open objects with a ``type`` or
``role`` so pi can add fields without breaking us.
"""

from __future__ import annotations

import enum
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

# major.minor: the same major interoperates (a reader ignores what it does not know, and features are gated on
# the peer's `capabilities`); another major is refused with an error naming both versions (specs/protocol.md §0).
PROTOCOL_VERSION = "1.1"
# What this build speaks beyond protocol 1.0, announced in `register`, `init` and `init_state`.
# remote_commands: the agent link's list_models, set_model, set_thinking_level and run_command.
# dial_back: the bridge opens agent links to the hypivisor on request (dial_back event; no inbound port needed).
# approval_events: the bridge applies an approval_decision event from its registry connection (decide_approval).
# dial_back_url: the bridge honours a dial_back event's ``url`` (cluster mode: another hypivisor, dialled only when
# it is in the bridge's own HYPIVISOR_WS) and answers each such event with ``dial_back_result``.
CAPABILITIES = (
    "approvals", "attention", "watchdogs", "budgets", "remote_commands", "sessions", "dial_back", "approval_events",
    "dial_back_url",
)  # fmt: skip

# Hard limits shared by both ends. Documented in specs/protocol.md.
MAX_ID_LEN = 128
MAX_TEXT_LEN = 1_000_000  # one prompt's text, characters
MAX_ATTACHMENTS = 10
MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024  # decoded size of one attachment
MAX_NAME_LEN = 200  # session names, folder names
MAX_PATH_LEN = 4096
HISTORY_PAGE_MAX = 500
INIT_HISTORY_BUDGET_BYTES = 500 * 1024

MAX_COUNT = 2**53 - 1  # token counts and similar: exact in JSON and in JavaScript numbers
MAX_VERSION_LEN = 32
MAX_MODEL_LEN = 200
MAX_BRANCH_LEN = 200
MAX_SECRET_LEN = 128

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LEN)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Money = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]
UnixTime = Annotated[float, Field(ge=0, le=1e11, allow_inf_nan=False)]
RpcId = Annotated[str, Field(max_length=MAX_ID_LEN)] | int | None
Capability = Annotated[str, Field(min_length=1, max_length=64)]


def protocol_major(version: object) -> int | None:
    """The major of ``"1.1"`` (or of ``"1"``, protocol 1.0's spelling); None when it is not a version."""
    if not isinstance(version, str):
        return None
    head = version.strip().split(".", 1)[0]
    return int(head) if head.isdigit() and len(head) <= 4 else None


def incompatibility(peer_version: object, peer: str, upgrade_us: str, upgrade_them: str) -> str | None:
    """Why a peer speaking ``peer_version`` cannot work with us (another major), or None. A peer that states no
    version speaks 1.x (the field has a default of 1 since the start)."""
    theirs = protocol_major(peer_version)
    ours = protocol_major(PROTOCOL_VERSION)
    if theirs is None or theirs == ours:
        return None
    newer = upgrade_us if theirs > (ours or 0) else upgrade_them
    return (
        f"protocol mismatch: {peer} speaks protocol {peer_version}, this side speaks {PROTOCOL_VERSION}; "
        f"upgrade {newer} so both speak the same major version"
    )


def unknown_fields(model: type[BaseModel], raw: object) -> list[str]:
    """Top-level keys of ``raw`` that ``model`` does not declare (ignored on receipt; logged once at debug)."""
    if not isinstance(raw, dict):
        return []
    known = model.model_fields
    return sorted(str(k)[:64] for k in raw if k not in known)[:20]


class ErrorCode(enum.IntEnum):
    """Error codes. JSON-RPC's range says *whose* fault it was (h11-style):
    -327xx/-326xx = the caller sent something wrong; 1xxx = the request was
    fine but the world said no (path, spawn, agent); 2xxx = the server failed."""

    PARSE_ERROR = -32700  # not JSON at all
    INVALID_REQUEST = -32600  # JSON, but not a request object / unknown type
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    UNAUTHORIZED = 1001  # missing or wrong token
    FORBIDDEN = 1002  # e.g. Origin not allowed, spawn refused without token
    PATH_OUTSIDE_HOME = 1003
    PATH_NOT_FOUND = 1004
    INVALID_PATH = 1005  # NUL bytes, separators in a segment, too long, ...
    NOT_FOUND = 1006  # unknown node / message
    TOO_LARGE = 1007  # frame, attachment or prompt over a documented limit
    RATE_LIMITED = 1008
    SPAWN_FAILED = 1009
    SPAWN_TIMEOUT = 1010
    AGENT_BUSY = 1011
    AGENT_UNAVAILABLE = 1012  # pi not attached to the bridge right now
    CONFLICT = 1013  # the thing acted on has moved on: an approval already decided, aborted or timed out
    UNSUPPORTED = 1014  # this agent's pi has no API for the request (e.g. /new on pi 0.73)
    BUDGET_EXCEEDED = 1015  # the agent reached a spend budget: prompts are held until it is raised or overridden
    VERSION_MISMATCH = 1016  # the peer speaks another major protocol version (the message says what to upgrade)
    INTERNAL_ERROR = 2000


class _Strict(BaseModel):
    """Base for frames we receive: every declared field is validated; unknown fields are ignored (dropped, never
    stored or re-sent): a peer one minor version newer may send more (specs/protocol.md §0, version skew).
    Receivers log each unknown field once at debug (:func:`unknown_fields`).

    ``defer_build``: a model's validator is built on first use, not at import. The bridge (started with
    every pi) uses a handful of these models, and building all 40 at import was ~15 % of its start-up CPU."""

    model_config = ConfigDict(extra="ignore", defer_build=True)


class _Open(BaseModel):
    """Base for frames we send or pass through: tolerate additions."""

    model_config = ConfigDict(extra="allow", defer_build=True)


class _Stored(BaseModel):
    """Base for values the hypivisor stores and sends to everyone: every field is bounded (length, range, no
    nesting), and unknown keys are dropped at validation, never stored or re-sent (specs/security.md T13)."""

    model_config = ConfigDict(extra="ignore", defer_build=True)


# ---------------------------------------------------------------------------
# Shared value types
# ---------------------------------------------------------------------------

NodeStatus = Literal["active", "offline"]
Activity = Literal["idle", "working"]
# off: today's behaviour; writes: ask for bash (and powershell), and for write/edit outside the agent's folder;
# all: ask for every tool call. Allow rules skip the question (specs/approvals.md).
ApprovalPolicy = Literal["off", "writes", "all"]
MAX_APPROVAL_RULES = 200
MAX_RULE_PREFIX_LEN = 500
MAX_REASON_LEN = 2000


class TokenTotals(_Stored):
    input: Count = 0
    output: Count = 0
    cache_read: Count = 0
    cache_write: Count = 0
    total: Count = 0


class ErrorInfo(_Open):
    code: int
    message: str
    data: Any | None = None


BudgetScope = Literal["agent", "folder", "day"]
BudgetLevel = Literal["near", "over", "held"]


class SpendCounter(_Stored):
    """What this agent's pi spent since its bridge started (usage of the assistant messages it saw arrive; a
    loaded or resumed history is not counted). The hypivisor adds the growth per ``(node, boot)``."""

    boot: Id = Field(description="unique per bridge process: a new counter that starts at zero")
    cost: Money = 0.0
    tokens: Count = Field(default=0, description="total tokens (pi's totalTokens)")


AttentionKind = Literal["approval", "question", "finished", "error", "stalled", "budget", "exited"]
MAX_SUMMARY_LEN = 300
MAX_LIVE_ATTENTION = 100


class AttentionLive(_Stored):
    """Something waiting for a person right now in one agent (reported by its bridge while it lasts)."""

    kind: Literal["approval", "question", "stalled", "budget"]
    key: Id = Field(description="stable while the cause lasts (the approval id, the dialog's number)")
    summary: str = Field(max_length=MAX_SUMMARY_LEN, description="one line of plain text")
    created_at: UnixTime
    approval_id: str | None = Field(default=None, max_length=MAX_ID_LEN)
    tool_name: str | None = Field(default=None, max_length=64)


class AttentionRun(_Stored):
    """The agent's latest settled run, as its bridge reports it (the hypivisor makes one item per new key)."""

    key: Id = Field(description="unique per run of this pi (a new key is a new run)")
    outcome: Literal["finished", "error"]
    summary: str = Field(max_length=MAX_SUMMARY_LEN)
    at: UnixTime
    new_messages: Count = Field(default=0, description="assistant messages this run added (the unread count grows)")


class AttentionReport(_Stored):
    """What a bridge says needs a person, sent with every register and heartbeat (a re-register re-sends it)."""

    live: list[AttentionLive] = Field(default_factory=list, max_length=MAX_LIVE_ATTENTION)
    last_run: AttentionRun | None = None


class ApprovalEnded(_Stored):
    """An approval the agent's gate settled lately, as its bridge reports it with register and heartbeat (the last
    few): cluster mode's owner writes this outcome to the shared approval record (specs/cluster.md §5)."""

    id: Id
    decision: Literal["allow", "deny"]
    by: str = Field(max_length=32, description="dashboard, terminal, rule, timeout, abort or no_ui")
    reason: str | None = Field(default=None, max_length=300)


MAX_APPROVALS_ENDED = 20


class AttentionItem(_Stored):
    """One entry of the inbox: something in one agent that needs a person."""

    id: Id
    node_id: Id
    kind: AttentionKind
    summary: str = Field(max_length=MAX_SUMMARY_LEN, description="one line of plain text, no markdown")
    created_at: UnixTime
    machine: str | None = Field(default=None, max_length=255)
    cwd: str | None = Field(default=None, max_length=MAX_PATH_LEN)
    session_name: str | None = Field(default=None, max_length=MAX_NAME_LEN)
    approval_id: str | None = Field(default=None, max_length=MAX_ID_LEN, description="approval: decide it by this id")
    tool_name: str | None = Field(default=None, max_length=64)


class NodeInfo(_Stored):
    """One pi agent as the registry knows it."""

    id: Id
    machine: str = Field(max_length=255, description="hostname the agent runs on")
    cwd: str = Field(max_length=MAX_PATH_LEN)
    port: int = Field(ge=1, le=65535)
    pid: int | None = Field(default=None, ge=0, le=2**31 - 1)
    status: NodeStatus = "active"
    activity: Activity = "idle"
    session_name: str | None = Field(default=None, max_length=MAX_NAME_LEN)
    model: str | None = Field(default=None, max_length=MAX_MODEL_LEN)
    started_at: UnixTime | None = Field(default=None, description="unix seconds")
    last_seen: UnixTime | None = Field(default=None, description="unix seconds")
    offline_since: UnixTime | None = Field(default=None, description="unix seconds")
    tokens: TokenTotals = Field(default_factory=TokenTotals)
    cost: Money = 0.0
    pi_version: str | None = Field(default=None, max_length=MAX_VERSION_LEN)
    protocol_version: str = Field(default=PROTOCOL_VERSION, max_length=MAX_VERSION_LEN)
    approval_policy: ApprovalPolicy | None = Field(default=None, description="the agent's approval policy")
    pending_approvals: Count = Field(default=0, description="tool calls waiting for a person's decision")
    unread: Count = Field(default=0, description="assistant messages since a person last read this agent")
    capabilities: list[Capability] | None = Field(
        default=None, max_length=50, description="what the agent's pi-socket speaks beyond protocol 1.0"
    )
    git_branch: str | None = Field(
        default=None,
        max_length=MAX_BRANCH_LEN,
        description="the git branch checked out in cwd (a short commit id when detached)",
    )
    activity_since: UnixTime | None = Field(
        default=None, description="unix seconds (hypivisor clock) when ``activity`` last changed, or registration"
    )
    # absent below 80 % of every budget (``exclude_if``: a roster without budgets is not a byte bigger)
    budget_level: BudgetLevel | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="near: ≥ 80 % of a budget; held: ≥ 100 %, runs aborted and prompts held; over: ≥ 100 % on an "
        "override (specs/budgets.md)",
    )
    budget_pct: float | None = Field(
        default=None, ge=0, le=1e9, allow_inf_nan=False, exclude_if=lambda v: v is None,
        description="the most used budget, percent",
    )  # fmt: skip
    budget_note: str | None = Field(
        default=None, max_length=MAX_SUMMARY_LEN, exclude_if=lambda v: v is None, description="which budget, in words"
    )
    session_file: str | None = Field(
        default=None, max_length=MAX_PATH_LEN, exclude_if=lambda v: v is None,
        description="pi's session file (resume_session refuses a second writer)",
    )  # fmt: skip
    tmux_session: str | None = Field(
        default=None, max_length=MAX_NAME_LEN, exclude_if=lambda v: v is None,
        description="the tmux session a spawn started this agent in (`tmux attach -t` it on its machine); set by "
        "the hypivisor when the registration presented the spawn's secret",
    )  # fmt: skip
    worktree: str | None = Field(
        default=None, max_length=MAX_PATH_LEN, exclude_if=lambda v: v is None,
        description="the linked git worktree cwd is in (its top folder); remove_worktree removes it on request",
    )  # fmt: skip
    worktree_of: str | None = Field(
        default=None, max_length=MAX_PATH_LEN, exclude_if=lambda v: v is None,
        description="the main working tree of the repository that worktree belongs to",
    )  # fmt: skip
    hv: str | None = Field(
        default=None, max_length=MAX_NAME_LEN, exclude_if=lambda v: v is None,
        description="cluster mode (specs/cluster.md): the id of the hypivisor holding this agent's connection, "
        "present only when that is another hypivisor of the cluster than the one answering",
    )  # fmt: skip


# ---------------------------------------------------------------------------
# Registry (/ws): requests, params, results, push events
# ---------------------------------------------------------------------------


class RpcRequest(_Strict):
    id: RpcId = None
    method: str = Field(max_length=64)
    params: dict[str, Any] | None = None


class RpcResponse(_Open):
    id: RpcId = None
    result: Any | None = None
    error: ErrorInfo | None = None


# a tmux session name a spawn makes (hypivisor.spawn_cmd): shown as `tmux attach -t <name>`, so nothing else
TMUX_SESSION_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$"


class RegisterParams(_Strict):
    id: Id
    machine: str = Field(min_length=1, max_length=255)
    cwd: str = Field(min_length=1, max_length=MAX_PATH_LEN)
    port: int = Field(ge=1, le=65535)
    pid: int | None = Field(default=None, ge=0, le=2**31 - 1)
    host: str | None = Field(
        default=None,
        max_length=255,
        description="address the agent listens on; the hypivisor dials the peer address of the registering "
        "connection and honours this only when it is that address or both are loopback",
    )
    activity: Activity = "idle"
    session_name: str | None = Field(default=None, max_length=MAX_NAME_LEN)
    model: str | None = Field(default=None, max_length=MAX_MODEL_LEN)
    started_at: UnixTime | None = None
    tokens: TokenTotals | None = None
    cost: Money | None = None
    pi_version: str | None = Field(default=None, max_length=MAX_VERSION_LEN)
    protocol_version: str = Field(default=PROTOCOL_VERSION, max_length=MAX_VERSION_LEN)
    node_secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=MAX_SECRET_LEN,
        description="proves this agent owns the id: the secret the first registration of the id presented or was "
        "issued (register result); a known id is refused without it",
    )
    spawn_id: str | None = Field(
        default=None,
        max_length=MAX_ID_LEN,
        description="the secret PI_SOCKET_SPAWN_ID a spawn_agent put in this pi's environment; binds the spawn to "
        "this node (never stored or shown)",
    )
    tmux_session: str | None = Field(
        default=None,
        max_length=64,
        pattern=TMUX_SESSION_PATTERN,
        exclude_if=lambda v: v is None,
        description="the tmux session a spawn started this pi in (PI_SOCKET_TMUX_SESSION), so the attach command "
        "survives a hypivisor restart",
    )
    approval_policy: ApprovalPolicy | None = None
    pending_approvals: Count | None = None
    attention: AttentionReport | None = None
    approvals_ended: list[ApprovalEnded] | None = Field(
        default=None, max_length=MAX_APPROVALS_ENDED, description="the gate's latest settled approvals (newest last)"
    )
    capabilities: list[Capability] | None = Field(default=None, max_length=50)
    git_branch: str | None = Field(default=None, max_length=MAX_BRANCH_LEN)
    spend: SpendCounter | None = None
    session_file: str | None = Field(default=None, max_length=MAX_PATH_LEN, description="pi's session file")
    worktree: str | None = Field(default=None, max_length=MAX_PATH_LEN, description="linked git worktree of cwd")
    worktree_of: str | None = Field(default=None, max_length=MAX_PATH_LEN, description="its main working tree")


class HeartbeatParams(_Strict):
    """Keeps a node alive; any field given also updates the node (→ node_updated)."""

    id: Id
    activity: Activity | None = None
    session_name: str | None = Field(default=None, max_length=MAX_NAME_LEN)
    model: str | None = Field(default=None, max_length=MAX_MODEL_LEN)
    tokens: TokenTotals | None = None
    cost: Money | None = None
    approval_policy: ApprovalPolicy | None = None
    pending_approvals: Count | None = None
    attention: AttentionReport | None = None
    approvals_ended: list[ApprovalEnded] | None = Field(
        default=None, max_length=MAX_APPROVALS_ENDED, description="the gate's latest settled approvals (newest last)"
    )
    git_branch: str | None = Field(default=None, max_length=MAX_BRANCH_LEN)
    spend: SpendCounter | None = None
    session_file: str | None = Field(default=None, max_length=MAX_PATH_LEN, description="pi's session file")


class DeregisterParams(_Strict):
    id: Id


class ListNodesParams(_Strict):
    cursor: int = Field(default=0, ge=0, le=MAX_COUNT, description="index of the first node (next_cursor of a page)")
    limit: int | None = Field(default=None, ge=1, le=10_000, description="at most this many nodes; default all")


MAX_MACHINE_LEN = 255
MachineName = Annotated[str, Field(min_length=1, max_length=MAX_MACHINE_LEN)]


class ListDirectoriesParams(_Strict):
    path: str | None = Field(default=None, max_length=MAX_PATH_LEN)
    machine: MachineName | None = Field(
        default=None, description="list on this machine (its own $HOME policy); default: the hypivisor's own"
    )


class SpawnAgentParams(_Strict):
    path: str = Field(min_length=1, max_length=MAX_PATH_LEN)
    new_folder: str | None = Field(default=None, max_length=MAX_NAME_LEN)
    session_file: str | None = Field(
        default=None,
        max_length=MAX_PATH_LEN,
        description="resume this pi session (``pi --session <file>``): an existing .jsonl session file under $HOME "
        "whose header's cwd is ``path``; not with new_folder",
    )
    machine: MachineName | None = Field(
        default=None, description="spawn on this machine (through its machine service); default: the hypivisor's own"
    )
    worktree: WorktreeSpec | None = Field(
        default=None,
        description="start pi in a new git worktree on a new branch, beside the repository that holds path "
        "(<repo>-worktrees/<branch>); not with new_folder or session_file",
    )


class WorktreeSpec(_Strict):
    branch: str = Field(
        min_length=1, max_length=MAX_BRANCH_LEN,
        description="the new branch: letters, digits and . _ - / +, git's ref rules, no leading '-', at most 100",
    )  # fmt: skip


class RemoveWorktreeParams(_Strict):
    path: str = Field(min_length=1, max_length=MAX_PATH_LEN, description="the linked worktree's top folder")
    machine: MachineName | None = Field(default=None, description="default: the hypivisor's own machine")
    force: bool = Field(default=False, description="also when it has uncommitted changes (they are lost)")
    delete_branch: bool = Field(default=False, description="also delete its branch (git branch -d; -D with force)")


class RemoveWorktreeResult(_Open):
    path: str
    repo: str
    branch: str | None = None
    branch_deleted: bool = False


class MachineFacts(_Stored):
    """What a machine service says about its machine (specs/machines.md)."""

    os: str | None = Field(default=None, max_length=200, description="operating system, e.g. Linux 6.8 x86_64")
    pi_versions: list[Annotated[str, Field(max_length=MAX_VERSION_LEN)]] = Field(
        default_factory=list, max_length=20, description="pi versions found (PI_BIN, pi on PATH)"
    )
    tmux: bool = Field(default=False, description="tmux is installed (spawn_agent can start pi there)")
    home: str | None = Field(default=None, max_length=MAX_PATH_LEN, description="the service's $HOME")
    service_version: str | None = Field(default=None, max_length=MAX_VERSION_LEN)


class RegisterMachineParams(MachineFacts):
    """A machine service joins: name and facts. Re-registering from the same connection updates the facts."""

    model_config = ConfigDict(extra="ignore", defer_build=True)
    name: MachineName
    protocol_version: str = Field(default=PROTOCOL_VERSION, max_length=MAX_VERSION_LEN)
    machine_secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=MAX_SECRET_LEN,
        description="proves this service owns the name: the secret the name's first registration presented or was "
        "issued; a known name is refused without it",
    )


class ListMachinesParams(_Strict):
    pass


class MachineIndexProgressParams(_Strict):
    """A machine service's session index is being built (its progress, pushed to dashboards as
    ``index_progress`` under its machine's name); only from a connection that registered a machine."""

    files_done: int = Field(ge=0)
    files_total: int = Field(ge=0)
    done: bool = False


class DialBackResultParams(_Strict):
    """A bridge's answer to a ``dial_back`` event that named a ``url`` (cluster mode): whether it dialled that
    hypivisor (``ok``: answered 101) or why not (not in its HYPIVISOR_WS, refused, unreachable), so the hypivisor
    that waits falls back at once instead of after the nonce's life; only the connection the event went to counts."""

    nonce: str = Field(min_length=1, max_length=128)
    ok: bool
    error: str | None = Field(default=None, max_length=300)


class MachineReplyParams(_Strict):
    """A machine service's answer to a ``machine_request`` it was sent (matched by ``rid`` and connection)."""

    rid: Id
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None


class MachineInfo(_Open):
    name: str
    online: bool = Field(description="its machine service is connected (the hypivisor's own machine: always)")
    agents: int = Field(description="active agents on the roster with this machine")
    own: bool = Field(default=False, description="the hypivisor's own machine (the default for spawn)")
    service: bool = Field(default=False, description="a machine service registered it (else: known from agents)")
    os: str | None = None
    pi_versions: list[str] = Field(default_factory=list)
    tmux: bool | None = None
    home: str | None = None
    since: float | None = Field(default=None, description="unix seconds of the last online/offline change")
    hv: str | None = Field(
        default=None, max_length=MAX_ID_LEN, exclude_if=lambda v: v is None,
        description="cluster mode: the hypivisor its service is connected to, when another one than this (absent "
        "on this hypivisor's own machines and in one process)",
    )  # fmt: skip


class ListMachinesResult(_Open):
    machines: list[MachineInfo]


class RegisterMachineResult(_Open):
    status: Literal["registered"] = "registered"
    machine: MachineInfo
    machine_secret: str | None = Field(default=None, description="issued at the name's first registration")


class ListAttentionParams(_Strict):
    pass


class MarkReadParams(_Strict):
    node_id: Id


class DismissAttentionParams(_Strict):
    id: Id


PushKind = Literal["approval", "question", "error", "finished", "stalled", "budget", "exited"]
MAX_ENDPOINT_LEN = 2048
MAX_MUTED = 1000


class PushKeys(_Strict):
    p256dh: str = Field(min_length=1, max_length=200, description="the browser's P-256 key, base64url")
    auth: str = Field(min_length=1, max_length=100, description="the browser's auth secret, base64url")


class PushSubscription(_Strict):
    """``PushSubscription.toJSON()`` of the browser (``expirationTime`` is accepted and ignored)."""

    endpoint: str = Field(min_length=1, max_length=MAX_ENDPOINT_LEN, description="https (http only on loopback)")
    keys: PushKeys
    expirationTime: float | None = None  # noqa: N815 - the browser's name


class PushConfigParams(_Strict):
    device_id: Id | None = Field(default=None, description="also answer this device's subscription and switches")


class PushSubscribeParams(_Strict):
    device_id: Id = Field(description="a random id the browser keeps (one per browser profile and origin)")
    subscription: PushSubscription
    kinds: list[PushKind] | None = Field(default=None, description="kinds that notify; omitted: keep, or all")
    muted: list[Id] | None = Field(default=None, max_length=MAX_MUTED, description="node ids that never notify")


class PushUnsubscribeParams(_Strict):
    device_id: Id


class SetPushPrefsParams(_Strict):
    device_id: Id
    kinds: list[PushKind]
    muted: list[Id] = Field(default_factory=list, max_length=MAX_MUTED)


class SetPresenceParams(_Strict):
    """What this page shows; kept while its /ws connection lasts (several pages of one device may report)."""

    device_id: Id
    node_id: Id | None = Field(description="the agent open on this page, null for the roster, inbox or spawn")
    focused: bool = Field(description="document.hasFocus()")
    visible: bool = Field(description='document.visibilityState == "visible"')


class PushDevice(_Open):
    device_id: str
    subscribed: bool
    kinds: list[str]
    muted: list[str]


class PushConfigResult(_Open):
    enabled: bool = Field(description="the hypivisor can send Web Push (VAPID keys ready)")
    public_key: str | None = Field(description="the VAPID public key (applicationServerKey), base64url")
    kinds: list[str] = Field(description="every kind a device can switch")
    device: PushDevice | None = Field(default=None, description="the asked device, null when it never subscribed")


SpendGroup = Literal["agent", "folder", "machine", "day"]


class GetSpendParams(_Strict):
    group_by: SpendGroup
    days: int = Field(default=30, ge=1, le=3660, description="the last N days (hypivisor local time), today included")


class SpendRow(_Open):
    key: str = Field(description="node id, folder path, machine or day (YYYY-MM-DD)")
    label: str | None = Field(default=None, description="agent: its session name when it has one")
    machine: str | None = Field(default=None, description="agent: where it runs")
    cost: float
    tokens: int


class GetSpendResult(_Open):
    group_by: SpendGroup
    since: str = Field(description="the first day counted (YYYY-MM-DD)")
    today: str
    rows: list[SpendRow] = Field(description="most cost first; by day: oldest first, one row per day")


class GetTotalsParams(_Strict):
    pass


class SpendTotal(_Open):
    cost: float
    tokens: int


class TotalsRow(_Open):
    key: str
    today: SpendTotal
    all_time: SpendTotal


class GetTotalsResult(_Open):
    day: str = Field(description="today, YYYY-MM-DD in the hypivisor's local time")
    today: SpendTotal
    all_time: SpendTotal
    by_machine: list[TotalsRow]
    by_folder: list[TotalsRow]


class Budget(_Open):
    scope: BudgetScope
    key: str = Field(description='agent: node id; folder: its path; day: "" (all agents together)')
    cost: float | None = Field(default=None, description="USD per day; null: no cost limit")
    tokens: int | None = Field(default=None, description="tokens per day; null: no token limit")
    default: bool = Field(default=False, description="from the hypivisor's flags (applies where none was set)")


class SetBudgetParams(_Strict):
    """A budget for today and every day after: of one agent, one folder, or all agents together (``day``).
    Both limits null removes it (a default from the flags applies again)."""

    scope: BudgetScope
    key: str | None = Field(default=None, max_length=MAX_PATH_LEN, description="agent: node id; folder: path")
    cost: float | None = Field(default=None, gt=0, le=1e9, allow_inf_nan=False)
    tokens: int | None = Field(default=None, gt=0, le=MAX_COUNT)


class ListBudgetsParams(_Strict):
    pass


class NodeBudgetState(_Open):
    level: BudgetLevel | None
    percent: float
    note: str | None = None
    overridden: bool = False


class ListBudgetsResult(_Open):
    budgets: list[Budget] = Field(description="set in a dashboard")
    defaults: list[Budget] = Field(description="from the hypivisor's flags")
    states: dict[str, NodeBudgetState] = Field(description="node id → its state, agents at ≥ 80 % only")


class OverrideBudgetParams(_Strict):
    """Let this held agent run once more: the hold is lifted until a budget is crossed again (raised and
    reached anew, or another scope) or the day ends."""

    node_id: Id


class BudgetHold(_Open):
    """In a register/heartbeat answer: this agent must not start runs (its bridge aborts and holds prompts)."""

    reason: str
    scope: BudgetScope


class HeartbeatResult(_Open):
    status: str = "ok"
    hold: BudgetHold | None = Field(default=None, description="set while the agent is held by a budget")


class ListAttentionResult(_Open):
    items: list[AttentionItem] = Field(description="open items, oldest first")
    unread: dict[str, int] = Field(default_factory=dict, description="node id → unread count (only non-zero)")


class RegisterResult(_Open):
    status: Literal["registered"] = "registered"
    node: NodeInfo
    heartbeat_interval: float = Field(description="seconds between heartbeats the hypivisor expects")
    node_secret: str | None = Field(
        default=None,
        description="issued when this was the id's first registration and presented no secret: "
        "present it as register.node_secret from now on (only the registering connection sees it)",
    )
    hold: BudgetHold | None = Field(default=None, description="set while the agent is held by a budget")


class OkResult(_Open):
    status: str


class ListNodesResult(_Open):
    nodes: list[NodeInfo]
    next_cursor: int | None = Field(default=None, description="cursor of the next page; absent or null at the end")


class DirectoryEntry(_Open):
    name: str
    path: str
    git: bool | None = Field(default=None, description="true when the folder holds a .git (a repository's top)")


class ListDirectoriesResult(_Open):
    path: str = Field(description="canonical path that was listed")
    parent: str | None = Field(description="parent folder, null at $HOME")
    home: str
    directories: list[DirectoryEntry]
    git: bool | None = Field(
        default=None, description="true when the listed folder is in a git repository (spawn_agent.worktree applies)"
    )


class SpawnAgentResult(_Open):
    node_id: str
    tmux_session: str | None
    path: str
    node: NodeInfo


# -- past sessions (specs/sessions.md) -------------------------------------------------------------------------
SessionRole = Literal["user", "assistant", "tool", "custom", "summary"]


def _check_range(since: float | None, until: float | None) -> None:
    """A date filter is the half-open range [since, until): since after until is refused (nothing could match)."""
    if since is not None and until is not None and since > until:
        raise ValueError("since is after until")


class ListSessionsParams(_Strict):
    machine: str | None = Field(default=None, max_length=255, description="default: the hypivisor's own machine")
    cwd: str | None = Field(default=None, max_length=MAX_PATH_LEN, description="only sessions made in this folder")
    before: str | None = Field(default=None, max_length=64, description="the cursor of the previous page")
    limit: int = Field(default=50, ge=1, le=500)
    since: UnixTime | None = Field(default=None, description="last activity at or after (unix seconds)")
    until: UnixTime | None = Field(default=None, description="last activity before (unix seconds)")

    @model_validator(mode="after")
    def _range(self) -> ListSessionsParams:
        _check_range(self.since, self.until)
        return self


class SessionInfo(_Open):
    """One past (or live) pi session file, as a list shows it."""

    machine: str
    id: str = Field(description="the id the machine issued for the file; name the session by it")
    path: str = Field(description="the session file (resolved)")
    session_id: str | None = Field(default=None, description="pi's own session id (the header's)")
    cwd: str | None = None
    name: str | None = None
    first_prompt: str | None = None
    message_count: int = 0
    model: str | None = None
    cost: float = 0.0
    created: float | None = Field(default=None, description="unix seconds")
    modified: float | None = Field(default=None, description="unix seconds of the last entry")
    parent_session: str | None = Field(default=None, description="the session this one was forked from")
    live_node_id: str | None = Field(default=None, description="the active agent writing this file now")


class IndexingState(_Open):
    files_done: int
    files_total: int


class ListSessionsResult(_Open):
    sessions: list[SessionInfo]
    cursor: str | None = Field(description="pass as before for the next page; null at the end")
    machine: str | None = None
    indexing: IndexingState | None = Field(default=None, description="set while the index is being built")


class ReadSessionParams(_Strict):
    machine: str | None = Field(default=None, max_length=255)
    path: str = Field(min_length=1, max_length=MAX_PATH_LEN, description="the session's id, or its file's path")
    before: int | None = Field(default=None, ge=0, description="older page: messages before this index")
    after: int | None = Field(default=None, ge=0, description="newer page: messages from this index")
    limit: int = Field(default=100, ge=1, le=HISTORY_PAGE_MAX)
    entry_id: str | None = Field(default=None, max_length=MAX_ID_LEN, description="open at this entry (a search hit)")
    leaf_id: str | None = Field(default=None, max_length=MAX_ID_LEN, description="show the branch ending here")


class SessionTreeNode(_Open):
    id: str
    parent_id: str | None
    type: str
    role: str | None = None
    preview: str | None = None
    label: str | None = None


class SessionBranchOption(_Open):
    entry_id: str = Field(description="the first entry of this branch after the split")
    leaf_id: str = Field(description="where this branch ends: read_session {leaf_id} shows it")
    preview: str | None = None
    current: bool = Field(description="the branch shown")


class SessionBranchPoint(_Open):
    """An entry of the shown branch with more than one child (``/tree`` went back and on from there)."""

    entry_id: str
    at: int = Field(description="messages of the shown branch before the split (shared by every option)")
    options: list[SessionBranchOption]


class ReadSessionResult(_Open):
    """A page of one branch of a session, in the shapes of init_state/history_page."""

    machine: str
    id: str | None
    path: str
    session_id: str
    cwd: str
    name: str | None = None
    messages: list[PiMessage]
    entry_ids: list[str] = Field(description="the entry id of each message")
    cursor: int = Field(description="absolute index of messages[0] in the branch")
    before: int
    end: int = Field(description="absolute index after the last message")
    has_more: bool = Field(description="older messages exist (page with before=cursor)")
    has_newer: bool = Field(default=False, description="newer messages exist (page with after=end)")
    total_messages: int
    leaf_id: str | None = Field(description="the branch shown ends at this entry")
    active_leaf_id: str | None = Field(default=None, description="pi's active branch ends here (the last entry)")
    focus_entry_id: str | None = None
    tree: list[SessionTreeNode] | None = Field(default=None, description="the entry tree, on the first page")
    parent: dict[str, Any] | None = Field(default=None, description="{id, path} of the session forked from")
    forks: list[dict[str, Any]] | None = Field(default=None, description="sessions forked from this one")
    branches: list[SessionBranchPoint] | None = Field(
        default=None, description="where the shown branch meets others, oldest first (on the first page)"
    )
    live_node_id: str | None = None


class ResumeSessionParams(_Strict):
    machine: str | None = Field(default=None, max_length=255)
    path: str = Field(min_length=1, max_length=MAX_PATH_LEN, description="the session's id, or its file's path")
    fork: bool = Field(default=False, description="pi --fork: a new session copied from this one")


class ResumeSessionResult(_Open):
    """As spawn_agent's; ``live``: an active agent writes this file already and nothing was started."""

    node_id: str
    tmux_session: str | None
    path: str
    node: NodeInfo
    live: bool = False
    forked: bool = False
    session_file: str | None = None


class SearchParams(_Strict):
    query: str = Field(min_length=1, max_length=500, description='words, "phrases" and prefix* words')
    machine: str | None = Field(default=None, max_length=255, description="default: every machine")
    cwd: str | None = Field(default=None, max_length=MAX_PATH_LEN)
    limit: int = Field(default=20, ge=1, le=200, description="hits per machine")
    roles: list[SessionRole] | None = Field(default=None, max_length=5)
    role: SessionRole | None = Field(default=None, description="only this role (with roles: any of them)")
    since: UnixTime | None = Field(default=None, description="entries written at or after (unix seconds)")
    until: UnixTime | None = Field(default=None, description="entries written before (unix seconds)")

    @model_validator(mode="after")
    def _range(self) -> SearchParams:
        _check_range(self.since, self.until)
        return self


class SearchResult(_Open):
    query_id: str
    machines: list[str] = Field(default_factory=list, description="one search_results frame will come from each")


class SearchHit(_Open):
    machine: str
    id: str = Field(description="the session's id")
    path: str
    entry_id: str
    snippet: str = Field(description="plain text cut from the session file")
    highlights: list[list[int]] = Field(default_factory=list, description="[start, end) of matching words")
    score: float = Field(description="higher is better (bm25)")
    role: SessionRole | None = None
    ts: float | None = None
    cwd: str | None = None
    name: str | None = None


class DecideApprovalParams(_Strict):
    """A person's answer to an agent's open approval, through the registry: on any hypivisor, the first decision
    wins (cluster-wide with ``--nats``); the agent's gate still judges (specs/cluster.md §5)."""

    model_config = ConfigDict(extra="ignore", strict=True, defer_build=True)

    node_id: Id
    approval_id: Id = Field(description="the approval_request's id (an inbox item's approval_id)")
    decision: Literal["allow", "deny"]
    reason: str | None = Field(default=None, max_length=MAX_REASON_LEN, description="deny: what the model is told")
    input: dict[str, Any] | None = Field(
        default=None, description="allow a bash call with an edited command: {command}; the model sees what ran"
    )
    by: str | None = Field(
        default=None, max_length=64, description="who decides, as a later conflict names them (default dashboard)"
    )


class DecideApprovalResult(_Open):
    status: Literal["accepted"] = "accepted"
    decision: Literal["allow", "deny"]
    by: str
    hv: str | None = Field(default=None, description="cluster mode: the hypivisor that recorded the decision")


REGISTRY_METHODS: dict[str, type[BaseModel]] = {
    "register": RegisterParams,
    "deregister": DeregisterParams,
    "heartbeat": HeartbeatParams,
    "list_nodes": ListNodesParams,
    "list_directories": ListDirectoriesParams,
    "spawn_agent": SpawnAgentParams,
    "list_attention": ListAttentionParams,
    "mark_read": MarkReadParams,
    "dismiss_attention": DismissAttentionParams,
    "push_config": PushConfigParams,
    "push_subscribe": PushSubscribeParams,
    "push_unsubscribe": PushUnsubscribeParams,
    "set_push_prefs": SetPushPrefsParams,
    "set_presence": SetPresenceParams,
    "get_spend": GetSpendParams,
    "get_totals": GetTotalsParams,
    "set_budget": SetBudgetParams,
    "list_budgets": ListBudgetsParams,
    "override_budget": OverrideBudgetParams,
    "list_sessions": ListSessionsParams,
    "read_session": ReadSessionParams,
    "resume_session": ResumeSessionParams,
    "search": SearchParams,
    "register_machine": RegisterMachineParams,
    "list_machines": ListMachinesParams,
    "machine_reply": MachineReplyParams,
    "machine_index_progress": MachineIndexProgressParams,
    "dial_back_result": DialBackResultParams,
    "remove_worktree": RemoveWorktreeParams,
    "decide_approval": DecideApprovalParams,
}


class InitEvent(_Open):
    event: Literal["init"] = "init"
    nodes: list[NodeInfo]
    protocol_version: str = PROTOCOL_VERSION
    hypivisor_version: str | None = None
    capabilities: list[str] = Field(default_factory=lambda: list(CAPABILITIES))
    total: int | None = Field(
        default=None,
        description="nodes on the roster; when more than ``nodes`` holds, the rest follow at once as "
        "node_joined events, or nodes_joined events to a client that connected to /ws?roster=chunks (a large "
        "roster never makes one frame over 1 MiB)",
    )
    peers: list[Annotated[str, Field(max_length=300)]] | None = Field(
        default=None,
        max_length=16,
        description="the other hypivisors' dashboard origins (--peer / HYPI_PEERS), in order, sent only to a "
        "connection that presented the token: Pi-DE moves its links there when this hypivisor is lost "
        "(specs/cluster.md §8); absent when none are configured",
    )


class NodeJoinedEvent(_Open):
    event: Literal["node_joined"] = "node_joined"
    node: NodeInfo


class NodesJoinedEvent(_Open):
    """Only to a dashboard that connected to ``/ws?roster=chunks``, up to 1 MiB of nodes per frame, each node applied
    as if by ``node_joined`` (an upsert): the nodes of a large roster past ``init``'s first chunk, sent at once after
    ``init``; later, each run of two or more ``node_joined``/``node_updated`` events fanned out together."""

    event: Literal["nodes_joined"] = "nodes_joined"
    nodes: list[NodeInfo]


class NodeUpdatedEvent(_Open):
    event: Literal["node_updated"] = "node_updated"
    node: NodeInfo


class NodeOfflineEvent(_Open):
    event: Literal["node_offline"] = "node_offline"
    id: str


class NodeRemovedEvent(_Open):
    event: Literal["node_removed"] = "node_removed"
    id: str
    reason: Literal["deregistered", "evicted", "ttl", "ghost"] | None = None


class AttentionAddedEvent(_Open):
    event: Literal["attention_added"] = "attention_added"
    item: AttentionItem


class AttentionResolvedEvent(_Open):
    event: Literal["attention_resolved"] = "attention_resolved"
    id: str
    by: Literal["cause", "read", "dismissed", "exited", "superseded"] = Field(
        description="cause: what asked for a person ended (decided, dialog closed); read: mark_read; dismissed: "
        "dismiss_attention; exited: the agent left; superseded: a newer item of the same kind replaced it"
    )


class UnreadChangedEvent(_Open):
    event: Literal["unread_changed"] = "unread_changed"
    node_id: str
    unread: int


class BudgetChangedEvent(_Open):
    """A budget was set or removed, or an agent overridden: dashboards showing budgets ask again."""

    event: Literal["budget_changed"] = "budget_changed"
    budgets: list[Budget]


class MachineJoinedEvent(_Open):
    event: Literal["machine_joined"] = "machine_joined"
    machine: MachineInfo


class MachineUpdatedEvent(_Open):
    event: Literal["machine_updated"] = "machine_updated"
    machine: MachineInfo


class MachineLeftEvent(_Open):
    """A machine went offline (its service disconnected), or, known only from agents, has none left."""

    event: Literal["machine_left"] = "machine_left"
    name: str
    machine: MachineInfo | None = Field(default=None, description="its offline entry; null when it is no longer listed")


class MachineRequestEvent(_Open):
    """Hypivisor → machine service only: do ``method`` and answer with ``machine_reply {rid, ...}``."""

    event: Literal["machine_request"] = "machine_request"
    rid: str
    method: Literal[
        "list_directories",
        "spawn_agent",
        "spawn_registered",
        "list_sessions",
        "read_session",
        "search",
        "resume_target",
    ]
    params: dict[str, Any]


class DialBackEvent(_Open):
    """Hypivisor → a bridge that registered with the ``dial_back`` capability: open one agent link back to the
    hypivisor (``GET /ws/dialback/<nonce>``, ``Upgrade: hypi-dialback``, the token as on ``/ws``) and serve it as a
    client connection. The nonce is good once, for ``expires_in`` seconds."""

    event: Literal["dial_back"] = "dial_back"
    nonce: str = Field(max_length=128)
    node_id: str | None = None
    expires_in: float = 5.0
    url: str | None = Field(
        default=None,
        max_length=2048,
        description="cluster mode: the /ws URL of the hypivisor to dial instead of the connected one (sent only to a "
        "bridge listing dial_back_url; it dials only a hypivisor of its own HYPIVISOR_WS and answers "
        "dial_back_result)",
    )


class ApprovalDecisionEvent(_Open):
    """Hypivisor → the bridge that registered ``node_id``: a person decided the open approval ``id`` through the
    registry (``decide_approval``, on any hypivisor of a cluster); the bridge applies it as the agent link's
    ``approval_decision`` (its gate judges: a decision that comes too late is refused and logged). Sent once per
    decision by the hypivisor holding the bridge's registry connection; a bridge that does not know it ignores it."""

    event: Literal["approval_decision"] = "approval_decision"
    node_id: str
    id: str = Field(description="the approval's id")
    decision: Literal["allow", "deny"]
    reason: str | None = None
    input: dict[str, Any] | None = None
    by: str | None = None


class IndexProgressEvent(_Open):
    """A machine's session index is being built (pushed about every second, and once with ``done``)."""

    event: Literal["index_progress"] = "index_progress"
    machine: str
    files_done: int
    files_total: int
    done: bool = False


class SearchResultsEvent(_Open):
    """One machine's hits for a ``search`` (to the asking connection only)."""

    event: Literal["search_results"] = "search_results"
    query_id: str
    machine: str
    hits: list[SearchHit]
    done: bool = Field(description="this machine has answered")
    error: str | None = None
    unavailable: bool = Field(
        default=False, description="the machine could not be asked (offline, gone, or no answer in time): see error"
    )
    indexing: IndexingState | None = None


RegistryEvent = Annotated[
    InitEvent
    | NodeJoinedEvent
    | NodesJoinedEvent
    | NodeUpdatedEvent
    | NodeOfflineEvent
    | NodeRemovedEvent
    | AttentionAddedEvent
    | AttentionResolvedEvent
    | UnreadChangedEvent
    | BudgetChangedEvent
    | MachineJoinedEvent
    | MachineUpdatedEvent
    | MachineLeftEvent,
    Field(discriminator="event"),
]

# ---------------------------------------------------------------------------
# Agent link: client -> bridge
# ---------------------------------------------------------------------------

DeliverAs = Literal["steer", "followUp"]


class Attachment(_Strict):
    name: str = Field(min_length=1, max_length=MAX_NAME_LEN)
    mime_type: str = Field(min_length=1, max_length=100)
    data: str = Field(description="base64 of the file's bytes")


class PromptMsg(_Strict):
    type: Literal["prompt"]
    id: Id = Field(description="client-chosen id; a repeat is acknowledged again, never re-sent to pi")
    text: str = Field(max_length=MAX_TEXT_LEN)
    attachments: list[Attachment] | None = Field(default=None, max_length=MAX_ATTACHMENTS)
    deliver_as: DeliverAs | None = None


class AbortMsg(_Strict):
    type: Literal["abort"]


class FetchHistoryMsg(_Strict):
    type: Literal["fetch_history"]
    before: int = Field(ge=0, description="absolute index (cursor) of the oldest message the client has")
    limit: int = Field(default=50, ge=1, le=HISTORY_PAGE_MAX)


class ListCommandsMsg(_Strict):
    type: Literal["list_commands"]


class ListFilesMsg(_Strict):
    type: Literal["list_files"]
    prefix: str = Field(default="", max_length=MAX_PATH_LEN)


class SetSessionNameMsg(_Strict):
    type: Literal["set_session_name"]
    name: str = Field(min_length=1, max_length=MAX_NAME_LEN)


class ApprovalRule(_Strict):
    """An allow rule: calls of ``tool`` skip the question; for bash (and powershell) only commands that start
    with ``prefix`` at a word boundary and chain nothing (no ``;``, ``&``, ``|``, redirections, substitutions or
    newlines: specs/approvals.md)."""

    tool: str = Field(min_length=1, max_length=64)
    prefix: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_RULE_PREFIX_LEN,
        exclude_if=lambda v: v is None,  # a tool rule is {tool}, as the rules file writes it
    )


class ApprovalDecisionMsg(_Strict):
    """A person's answer. Strict types: a decision is never coerced ("yes" is not ``remember: true``)."""

    model_config = ConfigDict(extra="ignore", strict=True, defer_build=True)

    type: Literal["approval_decision"]
    id: Id = Field(description="the approval_request's id")
    decision: Literal["allow", "deny"]
    reason: str | None = Field(default=None, max_length=MAX_REASON_LEN, description="deny: what the model is told")
    input: dict[str, Any] | None = Field(
        default=None, description="allow a bash call with an edited command: {command}; the model sees what ran"
    )
    remember: bool | None = Field(default=None, description="allow: add a rule so this agent does not ask again")


class SetApprovalPolicyMsg(_Strict):
    model_config = ConfigDict(extra="ignore", strict=True, defer_build=True)

    type: Literal["set_approval_policy"]
    policy: ApprovalPolicy
    rules: list[ApprovalRule] | None = Field(
        default=None, max_length=MAX_APPROVAL_RULES, description="replaces the agent's rules; absent keeps them"
    )


ThinkingLevel = Literal["off", "minimal", "low", "medium", "high", "xhigh", "max"]
THINKING_LEVELS: tuple[str, ...] = ("off", "minimal", "low", "medium", "high", "xhigh", "max")
# pi's built-in commands a client can run through `run_command` (others are pickers: model, thinking, name).
# ``quit`` ends pi (``ctx.shutdown()``, after aborting a run): a client asks a person to confirm first.
RemoteCommand = Literal["compact", "new", "reload", "quit"]


class ListModelsMsg(_Strict):
    type: Literal["list_models"]


class SetModelMsg(_Strict):
    type: Literal["set_model"]
    provider: str = Field(min_length=1, max_length=MAX_MODEL_LEN)
    id: str = Field(min_length=1, max_length=MAX_MODEL_LEN, description="the model's id at its provider")


class SetThinkingLevelMsg(_Strict):
    type: Literal["set_thinking_level"]
    level: ThinkingLevel


class RunCommandMsg(_Strict):
    """One of pi's built-in commands that has an API (specs/protocol.md §3.3 "run_command")."""

    type: Literal["run_command"]
    id: Id = Field(description="client-chosen; the ack or error carries it")
    name: RemoteCommand
    args: str | None = Field(default=None, max_length=MAX_TEXT_LEN, description="compact: custom instructions")


ClientMessage = Annotated[
    PromptMsg
    | AbortMsg
    | FetchHistoryMsg
    | ListCommandsMsg
    | ListFilesMsg
    | SetSessionNameMsg
    | ApprovalDecisionMsg
    | SetApprovalPolicyMsg
    | ListModelsMsg
    | SetModelMsg
    | SetThinkingLevelMsg
    | RunCommandMsg,
    Field(discriminator="type"),
]
# The ``type`` of every client message, in the union's order (the bridge names them in its "unknown type" error).
CLIENT_MESSAGE_TYPES: tuple[str, ...] = tuple(
    typing.get_args(model.model_fields["type"].annotation)[0]
    for model in typing.get_args(typing.get_args(ClientMessage)[0])
)
client_message_adapter: TypeAdapter[Any] = TypeAdapter(
    ClientMessage, config=ConfigDict(defer_build=True)
)  # built on first use

# ---------------------------------------------------------------------------
# Agent link: bridge -> client
# ---------------------------------------------------------------------------


class PiMessage(_Open):
    """A pi AgentMessage, passed through untouched (role user|assistant|toolResult|custom...)."""

    role: str


class ToolInfo(_Open):
    name: str
    description: str = ""
    active: bool = True


class CommandInfo(_Open):
    name: str
    description: str = ""
    source: str | None = Field(default=None, description='"builtin" (pi\'s own), "extension", "prompt", "skill"')
    available: bool = Field(default=True, description="false: this pi cannot run it from outside its terminal")
    note: str | None = Field(default=None, description="why it is unavailable, or how the dashboard runs it")


class ModelInfo(_Open):
    """One of pi's available models (`ctx.modelRegistry.getAvailable()`)."""

    provider: str
    id: str
    name: str | None = None
    input: list[str] = Field(default_factory=lambda: ["text"], description='what it takes: "text", "image"')
    reasoning: bool = False
    context_window: int | None = None


class ModelRef(_Open):
    provider: str
    id: str


class ModelsListMsg(_Open):
    type: Literal["models_list"] = "models_list"
    models: list[ModelInfo]
    current: ModelRef | None = None
    thinking_level: str | None = None
    thinking_levels: list[str] = Field(
        default_factory=list, description="levels worth offering for the current model (pi clamps the others)"
    )


class ContextUsage(_Open):
    tokens: int | None = None
    context_window: int | None = None
    percent: float | None = None


class AgentNode(_Open):
    id: str
    machine: str
    cwd: str
    port: int
    pid: int | None = None
    pi_version: str | None = None


class ApprovalPreview(_Open):
    """The call rendered for people: the bash command, or for edit/write a unified diff against the file as it
    is now (``error`` when the file could not be read or an edit's text is not in it)."""

    kind: Literal["command", "diff", "none"]
    command: str | None = None
    path: str | None = Field(default=None, description="the file, resolved against the agent's folder")
    diff: str | None = Field(default=None, description="unified diff, old file → file after the call")
    new_file: bool = False
    truncated: bool = False
    error: str | None = None


ApprovalBy = Literal["dashboard", "terminal", "rule", "timeout", "abort", "no_ui"]


class ApprovalRequestMsg(_Open):
    type: Literal["approval_request"] = "approval_request"
    id: str
    tool_call_id: str
    tool_name: str
    input: dict[str, Any]
    policy: ApprovalPolicy
    queued_at: float = Field(description="unix seconds when the call started waiting")
    preview: ApprovalPreview | None = None
    why: str | None = Field(default=None, description='why the policy asks ("bash", "write outside the folder")')
    parent_tool_call_id: str | None = None


class ApprovalRecord(_Open):
    """One decision, as the audit log holds it (the inspector's recent decisions)."""

    id: str
    tool_call_id: str
    tool_name: str
    summary: str = Field(description="one line: the command or the path")
    decision: Literal["allow", "deny"]
    by: ApprovalBy
    reason: str | None = None
    decided_at: float = Field(description="unix seconds")
    latency_ms: float


class ApprovalResolvedMsg(_Open):
    type: Literal["approval_resolved"] = "approval_resolved"
    id: str
    decision: Literal["allow", "deny"]
    by: ApprovalBy
    reason: str | None = None
    input: dict[str, Any] | None = Field(default=None, description="the edited input that ran (edit and allow)")
    record: ApprovalRecord | None = Field(default=None, description="the decision as recent_approvals lists it")


class ApprovalPolicyMsg(_Open):
    """The agent's policy and rules, to every client whenever they change (from any dashboard or a remember)."""

    type: Literal["approval_policy"] = "approval_policy"
    policy: ApprovalPolicy
    rules: list[ApprovalRule] = Field(default_factory=list)


class InitStateMsg(_Open):
    type: Literal["init_state"] = "init_state"
    protocol_version: str = PROTOCOL_VERSION
    capabilities: list[str] = Field(default_factory=lambda: list(CAPABILITIES))
    node: AgentNode
    messages: list[PiMessage]
    tools: list[ToolInfo] = Field(default_factory=list)
    commands: list[CommandInfo] = Field(default_factory=list)
    is_streaming: bool = False
    partial: PiMessage | None = Field(default=None, description="the assistant message being streamed now")
    truncated: bool = False
    total_messages: int = 0
    cursor: int = Field(0, description="absolute index of messages[0]; send as fetch_history.before")
    session_name: str | None = None
    model: str | None = None
    context_usage: ContextUsage | None = None
    tokens: TokenTotals = Field(default_factory=TokenTotals)
    cost: float = 0.0
    pending_approvals: list[ApprovalRequestMsg] = Field(
        default_factory=list, description="tool calls waiting for a decision now, oldest first"
    )
    approval_policy: ApprovalPolicy = "off"
    approval_rules: list[ApprovalRule] = Field(default_factory=list)
    recent_approvals: list[ApprovalRecord] = Field(
        default_factory=list, description="the latest decisions, newest last"
    )
    session_file: str | None = Field(
        default=None, description="pi's session file (spawn_agent.session_file resumes it)"
    )


class AckMsg(_Open):
    type: Literal["ack"] = "ack"
    id: str
    duplicate: bool = False


class HistoryPageMsg(_Open):
    type: Literal["history_page"] = "history_page"
    messages: list[PiMessage]
    cursor: int = Field(description="absolute index of messages[0]")
    before: int
    has_more: bool
    total_messages: int


class CommandsListMsg(_Open):
    type: Literal["commands_list"] = "commands_list"
    commands: list[CommandInfo]


class FileEntry(_Open):
    path: str = Field(description="relative to the agent's cwd, '/'-separated")
    is_dir: bool


class FilesListMsg(_Open):
    type: Literal["files_list"] = "files_list"
    prefix: str
    files: list[FileEntry]


class ErrorMsg(_Open):
    type: Literal["error"] = "error"
    id: str | None = None
    code: int
    message: str


class PiEvent(_Open):
    """Any of pi's native events (agent_start, message_update, tool_execution_end, ...),
    forwarded as pi emitted it, minus the partial snapshots of message_update."""

    type: str


# pi's events the shim subscribes to and the bridge forwards to its clients in pi's shape (specs/protocol.md §4.1).
# A name a pi version does not know never fires there. The shim's copy (extension/src/events.ts FORWARDED) is
# pinned to this tuple by pi_socket/tests/test_bridge_units.py.
PI_FORWARDED_EVENTS = (
    "agent_start",
    "agent_end",
    "agent_settled",
    "agent_before_settle",
    "turn_start",
    "turn_end",
    "message_start",
    "message_update",
    "message_end",
    "tool_execution_start",
    "tool_execution_update",
    "tool_execution_end",
    "queue_update",
    "session_info_changed",
    "model_select",
    "thinking_level_select",
    "auto_retry_start",
    "auto_retry_end",
    "session_before_compact",
    "session_compact",
    "session_compact_failed",
    "compaction_start",
    "compaction_end",
    "ui_prompt_start",
    "ui_prompt_end",
)
# Events in pi's shape that the shim makes itself: `context_usage` (ctx.getContextUsage() after each turn_end).
SHIM_EVENT_TYPES = ("context_usage",)
# Every `event` the shim sends and the bridge forwards. Extension-only hooks (context, before_provider_request,
# tool_call, input, ...) are internal to pi and never forwarded.
PI_EVENT_TYPES = PI_FORWARDED_EVENTS + SHIM_EVENT_TYPES

SCHEMA_MODELS: list[type[BaseModel]] = [
    NodeInfo,
    TokenTotals,
    ErrorInfo,
    RpcRequest,
    RpcResponse,
    RegisterParams,
    HeartbeatParams,
    DeregisterParams,
    ListNodesParams,
    ListDirectoriesParams,
    SpawnAgentParams,
    RegisterResult,
    OkResult,
    ListNodesResult,
    DirectoryEntry,
    ListDirectoriesResult,
    SpawnAgentResult,
    ListSessionsParams,
    SessionInfo,
    IndexingState,
    ListSessionsResult,
    ReadSessionParams,
    SessionTreeNode,
    ReadSessionResult,
    ResumeSessionParams,
    ResumeSessionResult,
    SearchParams,
    SearchResult,
    SearchHit,
    IndexProgressEvent,
    SearchResultsEvent,
    InitEvent,
    NodeJoinedEvent,
    NodesJoinedEvent,
    NodeUpdatedEvent,
    NodeOfflineEvent,
    NodeRemovedEvent,
    AttentionLive,
    AttentionRun,
    AttentionReport,
    AttentionItem,
    ListAttentionParams,
    MarkReadParams,
    DismissAttentionParams,
    ListAttentionResult,
    PushKeys,
    PushSubscription,
    PushConfigParams,
    PushSubscribeParams,
    PushUnsubscribeParams,
    SetPushPrefsParams,
    SetPresenceParams,
    PushDevice,
    PushConfigResult,
    AttentionAddedEvent,
    AttentionResolvedEvent,
    UnreadChangedEvent,
    SpendCounter,
    GetSpendParams,
    SpendRow,
    GetSpendResult,
    GetTotalsParams,
    SpendTotal,
    TotalsRow,
    GetTotalsResult,
    Budget,
    SetBudgetParams,
    ListBudgetsParams,
    NodeBudgetState,
    ListBudgetsResult,
    OverrideBudgetParams,
    BudgetHold,
    HeartbeatResult,
    BudgetChangedEvent,
    MachineFacts,
    RegisterMachineParams,
    ListMachinesParams,
    MachineReplyParams,
    MachineIndexProgressParams,
    MachineInfo,
    ListMachinesResult,
    RegisterMachineResult,
    MachineJoinedEvent,
    MachineUpdatedEvent,
    MachineLeftEvent,
    MachineRequestEvent,
    DialBackEvent,
    DialBackResultParams,
    DecideApprovalParams,
    DecideApprovalResult,
    ApprovalDecisionEvent,
    ApprovalEnded,
    Attachment,
    PromptMsg,
    AbortMsg,
    FetchHistoryMsg,
    ListCommandsMsg,
    ListFilesMsg,
    SetSessionNameMsg,
    ApprovalRule,
    ApprovalDecisionMsg,
    SetApprovalPolicyMsg,
    ListModelsMsg,
    SetModelMsg,
    SetThinkingLevelMsg,
    RunCommandMsg,
    ModelInfo,
    ModelRef,
    ModelsListMsg,
    ApprovalPreview,
    ApprovalRequestMsg,
    ApprovalResolvedMsg,
    ApprovalRecord,
    ApprovalPolicyMsg,
    PiMessage,
    ToolInfo,
    CommandInfo,
    ContextUsage,
    AgentNode,
    InitStateMsg,
    AckMsg,
    HistoryPageMsg,
    CommandsListMsg,
    FileEntry,
    FilesListMsg,
    ErrorMsg,
    PiEvent,
]


def json_schema() -> dict[str, Any]:
    """One JSON Schema document with every model under ``$defs``."""
    from pydantic.json_schema import models_json_schema

    _, top = models_json_schema([(m, "serialization") for m in SCHEMA_MODELS], ref_template="#/$defs/{model}")
    defs = top.get("$defs", {})
    defs["ErrorCode"] = {
        "title": "ErrorCode",
        "type": "integer",
        "enum": [c.value for c in ErrorCode],
        "description": "; ".join(f"{c.name}={c.value}" for c in ErrorCode),
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "HyperPiProtocol",
        "description": f"Hyper-Pi wire protocol v{PROTOCOL_VERSION}",
        "protocol_version": PROTOCOL_VERSION,
        "$defs": defs,
    }


def dump(model: BaseModel) -> dict[str, Any]:
    """Serialise an outgoing frame (None-valued optional fields are kept: explicit is clearer)."""
    return model.model_dump(mode="json")


def _main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="python -m pi_socket.protocol", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("schema", help="print the JSON Schema of every protocol model")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    args = parser.parse_args(argv)
    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
