"""What each client message does. One method per message type; replies go to the asking client only.

Every call into pi goes through the shim (``ShimLink.request``); a shim that
refuses or does not answer becomes an ``error`` frame with code 1012
(agent unavailable), never a silent drop. The handlers see only what they use:
the shim link, the agent state, the session's cwd and an effect sink (what a
state change means for clients and the roster is carried out by the caller).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from pydantic import BaseModel

from pi_socket import oplog
from pi_socket.protocol import (
    INIT_HISTORY_BUDGET_BYTES,
    AbortMsg,
    AckMsg,
    ApprovalDecisionMsg,
    CommandsListMsg,
    ErrorCode,
    ErrorMsg,
    FetchHistoryMsg,
    FileEntry,
    FilesListMsg,
    HistoryPageMsg,
    ListCommandsMsg,
    ListFilesMsg,
    ListModelsMsg,
    ModelsListMsg,
    PiMessage,
    PromptMsg,
    RunCommandMsg,
    SetApprovalPolicyMsg,
    SetModelMsg,
    SetSessionNameMsg,
    SetThinkingLevelMsg,
)

from . import faults
from .approvals import ApprovalBook
from .attachments import AttachmentError, bundle
from .clients import Client
from .files import list_files
from .frames import frame
from .prompt_ledger import Decision, PromptLedger
from .shimlink import ShimError, ShimLink
from .state import AgentState, Effect

SEND_TIMEOUT_S = 15.0
COMPACT_TIMEOUT_S = 300.0  # a compaction is one model call over the whole conversation
SESSION_COMMAND_TIMEOUT_S = 30.0
log = structlog.get_logger()  # lazy proxy: resolves the config set up in __main__


def error(code: ErrorCode, message: str, msg_id: str | None = None) -> str:
    return frame(ErrorMsg(id=msg_id, code=code, message=message))


class Handlers:
    """Client message → action. Holds the prompt ledger (shared by all connections)."""

    def __init__(
        self,
        shim: ShimLink,
        state: AgentState,
        cwd: Callable[[], str],
        apply_effect: Callable[[Effect], None],
        approvals: ApprovalBook,
    ) -> None:
        self.shim = shim
        self.approvals = approvals  # read only: the shim's lines change it
        self.state = state
        self.cwd = cwd  # a getter: the shim's hello may set the session's cwd after start-up
        self.apply_effect = apply_effect
        self.ledger: PromptLedger[Client] = PromptLedger()
        # While a budget holds this agent: why (prompts are refused with BUDGET_EXCEEDED); None lets them through.
        self.budget_gate: Callable[[], Awaitable[str | None]] | None = None

    async def dispatch(self, client: Client, msg: BaseModel) -> None:
        handler = {
            PromptMsg: self.prompt,
            AbortMsg: self.abort,
            FetchHistoryMsg: self.fetch_history,
            ListCommandsMsg: self.list_commands,
            ListFilesMsg: self.list_files,
            SetSessionNameMsg: self.set_session_name,
            ApprovalDecisionMsg: self.approval_decision,
            SetApprovalPolicyMsg: self.set_approval_policy,
            ListModelsMsg: self.list_models,
            SetModelMsg: self.set_model,
            SetThinkingLevelMsg: self.set_thinking_level,
            RunCommandMsg: self.run_command,
        }[type(msg)]
        await handler(client, msg)  # type: ignore[operator]

    async def _shim(self, op: str, timeout: float = 10.0, **fields: Any) -> Any:
        """Boundary ``shim.request``: an unexpected failure is logged for hardening and reported
        to the client like any refused request (ShimError), so callers handle one exception type."""
        try:
            faults.maybe_fail("shim.request")
            return await self.shim.request(op, timeout=timeout, **fields)
        except (ShimError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - outer boundary of one request
            oplog.log_boundary_error("shim.request", exc, op=op)
            raise ShimError(f"internal error in the bridge ({type(exc).__name__})") from exc

    # ---------------------------------------------------------------- prompt
    async def prompt(self, client: Client, msg: PromptMsg) -> None:
        """Validate, bundle attachments, then send once per id and ack every frame carrying that id."""
        if not msg.text.strip() and not msg.attachments:
            client.enqueue(
                error(ErrorCode.INVALID_PARAMS, "empty prompt: text is blank and nothing is attached", msg.id)
            )
            return
        known = self.ledger.is_done(msg.id) or self.ledger.is_pending(msg.id)  # a resend is answered as before
        held = await self.budget_gate() if self.budget_gate is not None and not known else None
        if held is not None:
            client.enqueue(error(ErrorCode.BUDGET_EXCEEDED, held, msg.id))
            return
        try:
            content = bundle(msg.text, msg.attachments)
        except AttachmentError as exc:
            client.enqueue(frame(ErrorMsg(id=msg.id, **exc.to_wire())))
            return
        decision = self.ledger.submit(msg.id, client)
        if decision is Decision.ACK_DUPLICATE:
            client.enqueue(frame(AckMsg(id=msg.id, duplicate=True)))
            return
        if decision is Decision.WAIT:
            return
        fields: dict[str, Any] = {"text": content.text, "prompt_id": msg.id}
        if content.images:
            fields["images"] = content.images
        if msg.deliver_as:
            fields["deliverAs"] = msg.deliver_as
        try:
            result = await self._shim("send", timeout=SEND_TIMEOUT_S, **fields)
        except ShimError as exc:
            for waiter in self.ledger.fail(msg.id):
                waiter.enqueue(error(ErrorCode.AGENT_UNAVAILABLE, f"prompt not delivered: {exc}", msg.id))
            log.warning("prompt not delivered", reason=str(exc))
            return
        except BaseException:
            for waiter in self.ledger.fail(msg.id):
                waiter.enqueue(error(ErrorCode.INTERNAL_ERROR, "prompt not delivered: internal error", msg.id))
            raise
        # The shim remembers delivered prompt ids too (on globalThis): after a bridge restart
        # it answers a resent id with duplicate:true instead of giving it to pi again.
        seen_by_shim = isinstance(result, dict) and result.get("duplicate") is True
        for n, waiter in enumerate(self.ledger.confirm(msg.id)):
            waiter.enqueue(frame(AckMsg(id=msg.id, duplicate=seen_by_shim or n > 0)))

    # ---------------------------------------------------------------- others
    async def abort(self, client: Client, _msg: AbortMsg) -> None:
        try:
            await self._shim("abort")
        except ShimError as exc:
            client.enqueue(error(ErrorCode.AGENT_UNAVAILABLE, f"abort failed: {exc}"))

    async def fetch_history(self, client: Client, msg: FetchHistoryMsg) -> None:
        """A contiguous page ending before ``msg.before``; its ``cursor`` is the next ``before``."""
        window = self.state.history.page(msg.before, msg.limit, INIT_HISTORY_BUDGET_BYTES)
        page = HistoryPageMsg(
            messages=[PiMessage.model_validate(m) for m in window.messages],
            cursor=window.cursor,
            before=msg.before,
            has_more=window.cursor > 0,
            total_messages=window.total,
        )
        client.enqueue(frame(page))

    async def list_commands(self, client: Client, _msg: ListCommandsMsg) -> None:
        """Fresh from pi when the shim answers quickly, else the list from the last session line."""
        state = self.state
        try:
            data = await self._shim("commands", timeout=3.0)
            commands = data.get("commands") if isinstance(data, dict) else data
            state.apply_state({"commands": commands})
        except ShimError:
            pass
        client.enqueue(frame(CommandsListMsg(commands=state.commands)))

    async def list_files(self, client: Client, msg: ListFilesMsg) -> None:
        entries = await asyncio.to_thread(list_files, self.cwd(), msg.prefix)
        client.enqueue(frame(FilesListMsg(prefix=msg.prefix, files=[FileEntry(**e) for e in entries])))

    async def set_session_name(self, client: Client, msg: SetSessionNameMsg) -> None:
        """pi's own session name; every client hears ``session_info_changed`` and the roster a heartbeat."""
        name = msg.name.strip()
        if not name:
            client.enqueue(error(ErrorCode.INVALID_PARAMS, "session name is blank"))
            return
        try:
            await self._shim("set_session_name", name=name)
        except ShimError as exc:
            client.enqueue(error(ErrorCode.AGENT_UNAVAILABLE, f"rename failed: {exc}"))
            return
        self.apply_effect(self.state.set_session_name(name))

    # ---------------------------------------------------------------- models and pi's commands
    async def list_models(self, client: Client, _msg: ListModelsMsg) -> None:
        await self._models_reply(client, "models", "models not listed")

    async def set_model(self, client: Client, msg: SetModelMsg) -> None:
        """pi's ``model_select`` tells every client; the asker also gets the fresh ``models_list``."""
        await self._models_reply(client, "set_model", "model not changed", provider=msg.provider, model_id=msg.id)

    async def set_thinking_level(self, client: Client, msg: SetThinkingLevelMsg) -> None:
        await self._models_reply(client, "set_thinking_level", "thinking level not changed", thinking_level=msg.level)

    async def _models_reply(self, client: Client, op: str, failed: str, **fields: Any) -> None:
        try:
            data = await self._shim(op, timeout=10.0, **fields)
            reply = ModelsListMsg.model_validate(data if isinstance(data, dict) else {"models": []})
        except ShimError as exc:
            client.enqueue(error(shim_error_code(str(exc)), f"{failed}: {exc}"))
            return
        except ValueError as exc:  # pydantic: the shim's answer does not fit the model
            client.enqueue(error(ErrorCode.INTERNAL_ERROR, f"{failed}: unexpected answer from the shim ({exc})"))
            return
        client.enqueue(frame(reply))

    async def run_command(self, client: Client, msg: RunCommandMsg) -> None:
        """pi's /compact, /new, /reload or /quit through its API: ``ack {id}`` once done, else ``error {id}``
        (1014 when this pi has no API for it, 1011 while pi works, 1012 when it failed)."""
        try:
            if msg.name == "compact":
                fields: dict[str, Any] = {"instructions": msg.args} if msg.args and msg.args.strip() else {}
                await self._shim("compact", timeout=COMPACT_TIMEOUT_S, **fields)
            elif msg.name == "quit":  # acked once pi took it; pi then exits and the bridge deregisters
                await self._shim("quit", timeout=10.0)
            else:
                await self._shim("session_command", timeout=SESSION_COMMAND_TIMEOUT_S, name=msg.name)
        except ShimError as exc:
            client.enqueue(error(shim_error_code(str(exc)), f"/{msg.name} failed: {exc}", msg.id))
            return
        client.enqueue(frame(AckMsg(id=msg.id)))

    # ---------------------------------------------------------------- approval gate
    async def approval_decision(self, client: Client, msg: ApprovalDecisionMsg) -> None:
        """A person's answer. Refused here when it cannot apply; the shim judges again (first answer wins) and
        every client then hears ``approval_resolved`` from the shim's ``approval_end``."""
        problem = await self.apply_decision(msg)
        if problem is None:
            return
        if problem.startswith("conflict"):
            code = ErrorCode.CONFLICT
        elif problem.startswith("invalid") or problem.startswith("input:") or problem.startswith("decision"):
            code = ErrorCode.INVALID_PARAMS
        else:
            code = ErrorCode.AGENT_UNAVAILABLE
        client.enqueue(error(code, f"decision not applied: {problem}", msg.id))

    async def apply_decision(self, msg: ApprovalDecisionMsg) -> str | None:
        """Pass a decision to the shim (from an agent link, or from the registry connection); why it was not
        applied ("conflict: ...", "invalid: ...", the shim's refusal), or None."""
        problem = self.approvals.check_decision(msg.id, msg.decision, msg.input)
        if problem is not None:
            return problem
        fields: dict[str, Any] = {"approval_id": msg.id, "decision": msg.decision}
        if msg.reason is not None and msg.reason.strip():
            fields["reason"] = msg.reason
        if msg.input is not None:
            fields["input"] = msg.input
        if msg.remember:
            fields["remember"] = True
        try:
            await self._shim("approval_decision", timeout=5.0, **fields)
        except ShimError as exc:
            return str(exc)
        return None

    async def set_approval_policy(self, client: Client, msg: SetApprovalPolicyMsg) -> None:
        """The agent's policy (and rules) for the rest of pi's life; everyone hears ``approval_policy``."""
        fields: dict[str, Any] = {"policy": msg.policy}
        if msg.rules is not None:
            fields["rules"] = [r.model_dump(exclude_none=True) for r in msg.rules]
        try:
            await self._shim("set_approval_policy", timeout=5.0, **fields)
        except ShimError as exc:
            client.enqueue(error(ErrorCode.AGENT_UNAVAILABLE, f"policy not changed: {exc}"))


def shim_error_code(problem: str) -> ErrorCode:
    """The shim's refusal text starts with what kind it is (pi_socket/extension/src/requests.ts)."""
    if problem.startswith("unsupported:"):
        return ErrorCode.UNSUPPORTED
    if problem.startswith("busy:"):
        return ErrorCode.AGENT_BUSY
    if problem.startswith("not found:"):
        return ErrorCode.NOT_FOUND
    return ErrorCode.AGENT_UNAVAILABLE
