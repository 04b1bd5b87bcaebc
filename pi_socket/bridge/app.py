"""The bridge process: wires the shim link, the state, the agent server and the registry together.

Lifecycle: read the shim's ``hello`` (3 s at most), bind the agent port,
write ``ready``, load the session's history, register with the hypivisor;
then apply shim lines as they come. ``bye`` or stdin EOF (pi exiting) →
deregister (≤ 1 s), close clients, exit 0.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import time
from collections import deque
from typing import Any

import structlog

from pi_socket import oplog
from pi_socket.protocol import (
    CAPABILITIES,
    MAX_ID_LEN,
    MAX_NAME_LEN,
    MAX_PATH_LEN,
    AgentNode,
    ApprovalDecisionMsg,
    ApprovalEnded,
    ApprovalPreview,
    ApprovalRequestMsg,
    AttentionReport,
    HeartbeatParams,
    InitStateMsg,
    PiEvent,
    RegisterParams,
    TokenTotals,
)
from pi_socket.shimwire import (
    ApprovalEndLine,
    ApprovalLine,
    ByeLine,
    HelloLine,
    LogLine,
    PolicyLine,
    ReadyLine,
    SessionFacts,
    SessionLine,
    ShimLineError,
    WatchLine,
    event_body,
    parse_shim_line,
)

from . import faults, gitinfo
from .approvals import ApprovalBook
from .attention import AttentionTracker
from .budget import BudgetGuard, SpendMeter
from .clients import Client, ClientSet
from .config import BridgeConfig
from .frames import frame
from .handlers import Handlers
from .hypivisor_client import HypivisorClient
from .preview import build_preview
from .server import AgentServer
from .shimlink import ShimError, ShimLink
from .state import AgentState, Effect
from .watchdog import Thresholds, Watchdog

log = structlog.get_logger()  # lazy proxy: resolves the config set up in __main__
ENDED_REPORTED = 5  # settled approvals sent with each register and heartbeat (the owner needs the newest)
ENDED_WINDOW_S = 600.0  # ... settled within this long: a quiet agent's heartbeats carry none
SHIM_LOG_LEVELS = {"debug": "debug", "info": "info", "warn": "warning", "warning": "warning", "error": "error"}


def _cpu_seconds() -> float | None:
    """CPU this bridge used in its life (user + system): what Hyper-Pi cost this pi, in the log at exit."""
    try:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
    except (ImportError, OSError):  # no resource module off Unix
        return None
    return round(usage.ru_utime + usage.ru_stime, 3)


class Bridge:
    def __init__(self, config: BridgeConfig, shim: ShimLink) -> None:
        self.config = config
        self.shim = shim
        self.state = AgentState()
        self.clients = ClientSet()
        self.node_id = config.node_id
        self.cwd = config.cwd or os.getcwd()  # the hello's cwd replaces it
        self.approvals = ApprovalBook()
        self.attention = AttentionTracker()
        self.watchdog = Watchdog(
            Thresholds(
                stall_s=config.stall_s, loop_n=config.loop_n, retry_k=config.retry_k, context_pct=config.context_pct
            )  # fmt: skip
        )
        self.handlers = Handlers(shim, self.state, lambda: self.cwd, self.apply_effect, self.approvals)
        self.spend = SpendMeter()
        self.budget = BudgetGuard()
        self.handlers.budget_gate = self._budget_gate
        self.server = AgentServer(
            config, ready=self.wait_ready, join=self.attach, leave=self.detach, dispatch=self.handlers.dispatch
        )
        self.pi_pid: int | None = None
        self.pi_version: str | None = None
        self.started_at = time.time()
        self.registry: HypivisorClient | None = None
        self._hello = asyncio.Event()
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._shut_down = False
        self._session_gen = 0
        self._change_pending = False  # a session change whose history load was replaced by a newer one
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ended: deque[str] = deque(maxlen=64)  # approvals settled lately (a diff still being read is dropped)

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> int:
        reader = asyncio.create_task(self.shim.run(self.on_line))
        reader.add_done_callback(lambda _t: self._stop.set())
        waiters = {asyncio.create_task(self._hello.wait()), asyncio.create_task(self._stop.wait())}
        await asyncio.wait(waiters, timeout=self.config.hello_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        if not self._hello.is_set():
            if self._stop.is_set():
                return 0  # pi went away before saying hello
            log.warning("no hello from the shim; using environment defaults")
        self.node_id = self.node_id or f"{self.config.machine}-{self.pi_pid or os.getpid()}"
        port = await self.server.start()
        url = f"ws://{self._url_host()}:{port}/"
        # `watch`: this bridge tells the shim when it has clients; only then does the shim send client-only events (§4.2)
        await self.shim.send(ReadyLine(port=port, url=url, watch=True, watching=len(self.clients) > 0))
        log.info("agent server listening", port=port, host=self.config.host, node=self.node_id)
        if self.state.session_id is None and not self.state.loading_history:
            self._load_session(changed=True)  # no session line yet: load whatever pi has
        self._start_registry()
        self.spawn(self._watch(), "watchdog")
        await self._stop.wait()
        await self.shutdown()
        reader.cancel()
        if reader.done() and not reader.cancelled() and reader.exception() is not None:
            raise reader.exception()  # type: ignore[misc]  # an error out of the shim link ends this bridge
        return 0

    def stop(self) -> None:
        """Deregister and end :meth:`run` (a polite kill of the bridge process; the machine service closing)."""
        self._stop.set()

    async def shutdown(self) -> None:
        """Deregister within ~1 s, then close every client; never raises; runs once."""
        if self._shut_down:
            return
        self._shut_down = True
        try:
            if self.registry is not None:
                await self.registry.stop(self.node_id, timeout=1.0)
            await self.server.close()
        except Exception as exc:  # noqa: BLE001 - exiting anyway
            oplog.log_boundary_error("shutdown", exc)
        for task in list(self._tasks):
            task.cancel()
        log.info("bridge exiting", cpu_s=_cpu_seconds())

    def _url_host(self) -> str:
        host = self.config.host
        if host in ("0.0.0.0", "::", ""):
            return self.config.machine
        return f"[{host}]" if ":" in host else host

    def _start_registry(self) -> None:
        if self.config.registry_error:  # a bad HYPIVISOR_WS: standalone, said once (the agent runs as ever)
            log.warning("HYPIVISOR_WS not used; running standalone", error=self.config.registry_error)
        if not self.config.registry_enabled:
            return
        self.registry = HypivisorClient(
            self.config.hypivisors,
            self.config.token,
            self.register_params,
            self.heartbeat_params,
            self.config.reconnect_first_s,
            on_standalone=self._notify_standalone,
            node_secret=self.config.node_secret,
        )
        self.registry.on_answer = self._on_registry_answer
        self.registry.adopt = self.server.adopt if self.server.can_adopt else None  # dial-back links (dialback.py)
        self.registry.on_approval_decision = self._on_registry_decision
        self.spawn(self.registry.run(), "registry")

    # ------------------------------------------------------------------ budgets (specs/budgets.md)
    def _on_registry_answer(self, result: Any) -> None:
        was = self.budget.reason
        if self.budget.answer(result, self.state.working):
            self._budget_abort()
        if self.budget.reason != was:
            log.info("budget hold" if self.budget.held else "budget hold lifted", reason=self.budget.reason)

    def _budget_abort(self) -> None:
        """A budget holds this agent: stop its run (pi's abort keeps the partial turn) and say why in pi."""
        log.info("budget reached: aborting the run", reason=self.budget.reason)
        self.spawn(self._quiet_request("abort"), "budget.abort")
        message = f"Hyper-Pi: {self.budget.reason} (run aborted)"
        self.spawn(self._quiet_request("notify", message=message, level="warning"), "notify")

    async def _budget_gate(self) -> str | None:
        """Why a prompt is held, or None. Asked afresh while held (a person may just have raised the budget or
        overridden it); no hold while the hypivisor is out of reach (it keeps the ledger)."""
        registry = self.registry
        if not self.budget.held or registry is None or not registry.registered:
            return None
        await registry.refresh()
        return self.budget.reason if registry.registered else None

    async def _notify_standalone(self) -> None:
        url = f"ws://{self._url_host()}:{self.server.port}/"
        message = f"Hyper-Pi: hypivisor not reachable; this agent is still served at {url} (retrying)"
        self.spawn(self._quiet_request("notify", message=message, level="info"), "notify")

    async def _quiet_request(self, op: str, **fields: Any) -> None:
        try:
            await self.shim.request(op, timeout=5.0, **fields)
        except ShimError:
            pass

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """A tracked background task whose failure is logged for hardening, never propagated."""

        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - outer boundary of a background task
                oplog.log_boundary_error(name, exc)

        task = asyncio.create_task(guarded(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def wait_ready(self, timeout: float) -> None:
        """Connections wait (bounded) for the first history load so init_state is complete."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            pass

    # ------------------------------------------------------------------ clients
    def attach(self, client: Client) -> int:
        """Queue init_state and join the broadcast in one synchronous step: no event can fall in between.
        Returns the number of clients."""
        client.enqueue(frame(self.init_state()))
        self.clients.add(client)
        if len(self.clients) == 1:
            self.shim.send_nowait(WatchLine(on=True))
        return len(self.clients)

    def detach(self, client: Client) -> int:
        """Leave the broadcast; the last one out tells the shim nobody watches. Returns the number of clients."""
        had = len(self.clients)
        self.clients.remove(client)
        if had and not len(self.clients):
            self.shim.send_nowait(WatchLine(on=False))
        return len(self.clients)

    def init_state(self) -> InitStateMsg:
        """The state's init_state plus the approval gate's open questions, policy and latest decisions."""
        msg = self.state.init_state(self.agent_node())
        book = self.approvals
        msg.pending_approvals = book.pending_list()
        msg.approval_policy = book.policy  # type: ignore[assignment]
        msg.approval_rules = list(book.rules)
        msg.recent_approvals = list(book.recent)
        return msg

    def agent_node(self) -> AgentNode:
        return AgentNode(
            id=self.node_id or "unknown",
            machine=self.config.machine,
            cwd=self.cwd,
            port=self.server.port or 1,
            pid=self.pi_pid,
            pi_version=self.pi_version,
        )

    # ------------------------------------------------------------------ shim lines
    def on_line(self, line: dict[str, Any]) -> None:
        """Boundary ``stdin.line``: one bad line is logged and skipped, the next one is read.

        An ``event`` line (the hot path) gets a type check of its envelope and goes straight to the
        state; the rarer kinds are validated into their ``shimwire`` models. A line whose envelope is
        wrong is dropped (the first of its kind logged); an unknown kind is ignored."""
        try:
            faults.maybe_fail("stdin.line")
            if line.get("t") == "event":
                event = event_body(line)
                self.apply_effect(self.state.apply_event(event))
                now = time.time()
                noticed = self.attention.observe(event, self.state.settled_supported, now)
                if self.spend.observe(event):
                    noticed = True  # the hypivisor counts it now (and may answer that a budget holds us)
                if event.get("type") == "agent_start" and self.budget.run_started():
                    self._budget_abort()
                if self.watchdog.observe(event, now) or noticed:
                    self._roster_changed()
                return
            msg = parse_shim_line(line)
            if isinstance(msg, HelloLine):
                self._on_hello(msg)
            elif isinstance(msg, SessionLine):
                self._on_session(msg)
            elif isinstance(msg, LogLine):
                self._on_shim_log(msg)
            elif isinstance(msg, ApprovalLine):
                self._on_approval(msg)
            elif isinstance(msg, ApprovalEndLine):
                self._on_approval_end(msg)
            elif isinstance(msg, PolicyLine):
                self.clients.broadcast(frame(self.approvals.set_policy(msg.policy, msg.rules)))
                self._roster_changed()
            elif isinstance(msg, ByeLine):
                log.info("shim said bye", reason=msg.reason)
                self._stop.set()
        except ShimLineError as exc:
            self.shim.bad_line(exc)
        except Exception as exc:  # noqa: BLE001 - outer boundary
            oplog.log_boundary_error("stdin.line", exc, line_type=str(line.get("t"))[:40])

    def _on_hello(self, hello: HelloLine) -> None:
        if hello.node_id:
            self.node_id = hello.node_id
        if hello.cwd:
            self.cwd = hello.cwd
        if hello.pid is not None:
            self.pi_pid = hello.pid
        if hello.pi_version is not None:
            self.pi_version = hello.pi_version[:64]
            self.state.settled_supported = has_agent_settled(self.pi_version)
        self._hello.set()
        if hello.approval is not None:
            snap = hello.approval
            self.approvals.snapshot(snap.policy, snap.rules, snap.pending, self.cwd, self._preview_now)
        if hello.session is not None:
            self._on_session(hello.session)

    # ------------------------------------------------------------------ approval gate
    def _preview_now(self, raw: Any, cwd: str) -> ApprovalPreview | None:
        """A restarted bridge's previews of open questions (few, at start-up): computed in line."""
        if not isinstance(raw, dict):
            return None
        try:
            return build_preview(str(raw.get("tool_name", "")), raw.get("input"), cwd)
        except Exception as exc:  # noqa: BLE001 - a preview never stops a question
            oplog.log_boundary_error("approval.preview", exc)
            return None

    def _on_approval(self, line: ApprovalLine) -> None:
        """A call waits for a decision: a shell call is shown at once; a file call after its diff is read."""
        if line.tool_name in ("write", "edit"):
            self.spawn(self._ask_with_diff(line), "approval.preview")
            return
        self._ask(line, build_preview(line.tool_name, line.input, self.cwd))

    async def _ask_with_diff(self, line: ApprovalLine) -> None:
        try:
            preview = await asyncio.wait_for(
                asyncio.to_thread(build_preview, line.tool_name, line.input, self.cwd), timeout=5.0
            )
        except Exception as exc:  # noqa: BLE001 - a preview never stops a question
            if not isinstance(exc, TimeoutError):
                oplog.log_boundary_error("approval.preview", exc)
            preview = ApprovalPreview(kind="diff", error="the preview could not be made in time")
        if line.id not in self._ended:
            self._ask(line, preview)

    def _ask(self, line: ApprovalLine, preview: ApprovalPreview | None) -> None:
        msg: ApprovalRequestMsg = self.approvals.ask(line, preview)
        self.clients.broadcast(frame(msg))
        self._roster_changed()

    def _on_approval_end(self, line: ApprovalEndLine) -> None:
        self._ended.append(line.id)
        was_open = line.id in self.approvals.pending
        self.clients.broadcast(frame(self.approvals.end(line, time.time())))
        if was_open:
            self._roster_changed()
        log.info(
            "approval decided",
            approval=line.id,
            tool=line.tool_name,
            decision=line.decision,
            by=line.by,
            latency_ms=round(line.latency_ms, 1),
        )

    def _on_registry_decision(self, event: dict[str, Any]) -> None:
        """A decision made through the registry (``decide_approval``, specs/cluster.md §5), applied as the agent link's
        ``approval_decision``; a refusal (the gate already answered, a bad event) is logged, nobody else is told."""
        try:
            msg = ApprovalDecisionMsg.model_validate(
                {"type": "approval_decision", **{k: event.get(k) for k in ("id", "decision", "reason", "input")}}
            )
        except ValueError as exc:
            log.info("registry approval decision ignored: malformed", error=str(exc)[:200])
            return
        if event.get("node_id") not in (None, self.node_id):
            log.info("registry approval decision ignored: another node's", node=str(event.get("node_id"))[:128])
            return
        self.spawn(self._apply_registry_decision(msg, str(event.get("by") or "")[:64]), "approval.registry")

    async def _apply_registry_decision(self, msg: ApprovalDecisionMsg, by: str) -> None:
        problem = await self.handlers.apply_decision(msg)
        if problem is None:
            log.info("registry approval decision passed to pi", approval=msg.id, decision=msg.decision, by=by)
        else:
            log.info("registry approval decision not applied", approval=msg.id, decision=msg.decision, by=by,
                     problem=problem[:200])  # fmt: skip

    def _roster_changed(self) -> None:
        if self.registry is not None:
            self.registry.poke()

    async def _watch(self, every: float = 10.0) -> None:
        """The watchdogs' clock: a stall is the absence of events, so time alone can make (or end) a finding."""
        while True:
            await asyncio.sleep(every)
            if self.watchdog.tick(time.time(), len(self.approvals.pending)):
                self._roster_changed()

    def _on_session(self, info: SessionFacts) -> None:
        changed = self.state.begin_session(info.facts())
        self._load_session(changed)
        if self.registry is not None:
            self.registry.poke()  # name/model may differ in the new session

    def _load_session(self, changed: bool) -> None:
        # A load that replaces one still running inherits its "the session changed": pi 1.5.x fires
        # session_start twice for an RPC new_session, and the second (same id) must still resync the clients.
        changed = changed or self._change_pending
        self._change_pending = changed
        self._session_gen += 1
        self.state.begin_history()
        self.spawn(self._load(self._session_gen, changed), "session.load")

    async def _load(self, gen: int, changed: bool) -> None:
        """Fetch pi's history and state; resend init_state to clients if the session changed."""
        messages: Any = None
        try:
            faults.maybe_fail("session.load")
            data = await self.shim.request("history", timeout=15.0)
            messages = data.get("messages") if isinstance(data, dict) else data
        except ShimError as exc:
            log.warning("history unavailable", error=str(exc))
        finally:
            if gen == self._session_gen:
                self._change_pending = False
                self.state.finish_history(messages)
                if changed and self._ready.is_set():
                    self.resync_clients()  # they got the previous session's init_state
                self._ready.set()
        if gen == self._session_gen:
            await self._refresh_state(initial=gen == 1)

    def resync_clients(self) -> None:
        """A new session (/new, /resume, /fork): every client gets a fresh init_state and starts over."""
        text = frame(self.init_state())
        self.clients.broadcast(text)

    async def _refresh_state(self, initial: bool = False) -> None:
        """Context usage, model and name from pi. On the first load only, ``is_streaming`` is
        trusted too: a restarted bridge may join a run whose ``agent_start`` it never saw."""
        epoch = self.state.roster_epoch
        try:
            data = await self.shim.request("state", timeout=5.0)
        except ShimError:
            return
        if not isinstance(data, dict):
            return
        if epoch != self.state.roster_epoch:  # an event renamed/switched meanwhile: it is newer
            data = {k: v for k, v in data.items() if k not in ("session_name", "model")}
        changed = self.state.apply_state(data)
        if initial and data.get("is_streaming") is True and not self.state.working:
            self.state.working = changed = True
        pct = self.state.context.percent if self.state.context is not None else None
        if self.watchdog.set_context(pct, time.time()):
            changed = True
        if changed and self.registry is not None:
            self.registry.poke()

    def apply_effect(self, effect: Effect) -> None:
        """Carry out what a state change asks for (a pi event, or a rename a client made): broadcast
        the trimmed event, resync clients, nudge the roster, refresh pi's state."""
        if len(self.clients):  # no client: nothing to validate and serialise
            if effect.resync_clients:  # they got our stale partial copy in init_state (protocol §4.2)
                self.resync_clients()
            elif effect.forward is not None:
                self.clients.broadcast(frame(PiEvent.model_validate(effect.forward)))
        if effect.heartbeat_now and self.registry is not None:
            self.registry.poke()
        if effect.refresh_state:
            self.spawn(self._refresh_state(), "session.load")

    def _on_shim_log(self, line: LogLine) -> None:
        method = SHIM_LOG_LEVELS.get(line.level.lower(), "info")
        extra = line.model_extra or {}
        fields = {k: v for k, v in extra.items() if k not in ("component", "event", "ts")}
        getattr(log, method)(line.msg[:2000], component="shim", **fields)

    # ------------------------------------------------------------------ registry
    def _roster_fields(self) -> dict[str, Any]:
        """Fields shared by register and heartbeat, clipped to the registry's limits: a long name
        typed in pi's TUI must not make every registration attempt fail validation."""
        return {
            "id": clip(self.node_id or "unknown", MAX_ID_LEN),
            "activity": "working" if self.state.working else "idle",
            "session_name": clip(self.state.session_name, MAX_NAME_LEN),
            "model": clip(self.state.model, 200),
            "tokens": TokenTotals(**self.state.tokens),
            "cost": self.state.cost,
            "git_branch": clip(gitinfo.git_branch(self.cwd), 200),  # a few small reads, no subprocess
            "approval_policy": self.approvals.policy,
            "pending_approvals": len(self.approvals.pending),
            "attention": self._attention(),
            "approvals_ended": self._approvals_ended(),
            "spend": self.spend.counter(),
            "session_file": clip(self.state.session_file, MAX_PATH_LEN),  # resume_session: one writer per file
        }

    def _approvals_ended(self) -> list[ApprovalEnded] | None:
        """The gate's latest settled approvals (what cluster mode's owner writes to the shared record), or None."""
        since = time.time() - ENDED_WINDOW_S
        recent = [r for r in list(self.approvals.recent)[-ENDED_REPORTED:] if r.decided_at >= since]
        if not recent:
            return None
        return [ApprovalEnded(id=r.id[:128], decision=r.decision, by=r.by, reason=clip(r.reason, 300)) for r in recent]

    def _attention(self) -> AttentionReport:
        report = self.attention.report(self.approvals)
        report.live += self.watchdog.live()
        return report

    def register_params(self) -> RegisterParams:
        """What ``register`` sends. The hypivisor dials the peer address of this registry connection and honours
        ``host`` only when it is that address or both are loopback, so ``host`` is sent only for a loopback bind:
        a bridge on 127.0.0.1 whose registry connection came over ::1 (or the reverse) is still reachable.
        ``node_secret`` is added by the registry client (it may be issued by the hypivisor)."""
        host = self.config.host if _is_loopback_address(self.config.host) else None
        return RegisterParams(
            **self._roster_fields(),
            machine=clip(self.config.machine, 255) or "unknown",
            cwd=clip(self.cwd, MAX_PATH_LEN) or "/",
            port=self.config.advertise_port or self.server.port,
            pid=self.pi_pid if self.pi_pid is not None and self.pi_pid >= 0 else None,
            host=host,
            started_at=self.started_at,
            pi_version=self.pi_version,
            spawn_id=self.config.spawn_id,
            tmux_session=self.config.tmux_session,
            capabilities=list(CAPABILITIES),
            **gitinfo.worktree_fields(self.cwd, MAX_PATH_LEN),  # a linked git worktree: listed with the agent
        )

    def heartbeat_params(self) -> HeartbeatParams:
        return HeartbeatParams(**self._roster_fields())


def _is_loopback_address(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def has_agent_settled(pi_version: str) -> bool:
    """pi ≥ 1 ends a run with agent_settled (specs/pi-runtime.md §3); unknown versions fall back to
    agent_end, and the state learns otherwise from the first agent_settled it sees."""
    major = re.match(r"\s*(\d+)\.", pi_version)
    return major is not None and int(major.group(1)) >= 1
