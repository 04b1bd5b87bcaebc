// The one reducer for the agent link: every frame from `/ws/agent/<id>` (init_state, pi's native
// events, replies) and every local action (send, link up/down) becomes view state here. Components
// only render this state; the connection hook only feeds it.
//
// Messages carry absolute indexes (cursor + i) so a history page is prepended only when it ends
// exactly where our oldest message starts: a late or repeated page can never duplicate messages.
import type { AgentPiEvent, ChatMessage, ToolCallBlock, ToolResultLike } from "../protocol/pi";
import { textOf } from "../protocol/pi";
import type { CommandInfo, ContextUsage, FileEntry, HistoryPageMsg, InitStateMsg, ModelInfo, ModelsListMsg, TokenTotals, ToolInfo } from "../protocol/types";
import { isBridgeFrame, piEventView, type AgentServerFrame, type BridgeFrame } from "../protocol/frames";
import { versionWarning } from "../protocol/version";
import {
  approvalAnswered,
  approvalFailed,
  approvalPolicyChanged,
  approvalRequested,
  approvalResolved,
  approvalsFromInit,
  CONFLICT,
  initialApprovals,
  isApprovalError,
  type ApprovalsView,
} from "./approvals";

export type LinkStatus = "connecting" | "open" | "lost";

export interface PendingPrompt {
  id: string;
  text: string;
  attachments: { name: string; mime_type: string; data: string }[];
  deliverAs?: "followUp" | "steer";
  /** held: a follow-up this page keeps until pi's run ends (it can still be edited or cancelled: pi has no
   *  API to withdraw a message from its own queue); sending: not yet acknowledged (resent after a reconnect);
   *  acked: pi has it, not echoed yet. */
  state: "held" | "sending" | "acked";
  /** An extension command: pi runs it and echoes no user message, so the ack settles it. */
  noEcho?: boolean;
}

/** A prompt shown in the queue above the composer (held here, or waiting in pi's queue), not in the conversation. */
export function isQueued(p: PendingPrompt): boolean {
  return p.state === "held" || !!p.deliverAs;
}

/** pi's models and thinking level (models_list, then model_select / thinking_level_select). */
export interface ModelsView {
  models: ModelInfo[];
  current: { provider: string; id: string } | null;
  thinkingLevel: string | null;
  thinkingLevels: string[];
}

export interface LiveTool {
  toolCallId: string;
  toolName: string;
  args: unknown;
  /** Output so far (tool_execution_update), then the result (tool_execution_end). */
  result?: ToolResultLike;
  done: boolean;
}

export interface AgentView {
  status: LinkStatus;
  initialized: boolean;
  /** Bumped by every init_state (first connect, reconnect, pi session switch). */
  initSeq: number;
  messages: ChatMessage[];
  /** Absolute index of messages[0]; send as fetch_history.before. */
  cursor: number;
  total: number;
  loadingOlder: boolean;
  /** The assistant message being streamed (from message_start/update, or init_state.partial). */
  streaming: ChatMessage | null;
  /** A run is active (agent_start … agent_end), even between messages. */
  running: boolean;
  liveTools: Record<string, LiveTool>;
  pending: PendingPrompt[];
  /** pi's echoes of user messages that arrived while our prompts were sent but not yet acked (pi
   *  can echo a prompt before the bridge's ack reaches us): each one settles the next ack. */
  earlyEchoes: number;
  tools: ToolInfo[];
  commands: CommandInfo[];
  model: string | null;
  sessionName: string | null;
  /** pi's session file (init_state), for "Resume in a new pi" once this pi has exited. */
  sessionFile: string | null;
  contextUsage: ContextUsage | null;
  tokens: TokenTotals | null;
  cost: number;
  files: { prefix: string; files: FileEntry[] } | null;
  errors: { id: number; message: string }[];
  versionWarning: string | null;
  /** Bumped on agent_end/agent_settled/error so the page can notify once per finished run. */
  finishedRuns: number;
  lastFinish: { kind: "done" | "error"; text: string } | null;
  /** Tool calls waiting for a person, the policy, rules and recent decisions (model/approvals.ts). */
  approvals: ApprovalsView;
  /** The bridge speaks list_models, set_model, set_thinking_level and run_command (init_state.capabilities). */
  remoteCommands: boolean;
  /** null until the first models_list. */
  models: ModelsView | null;
  /** A /compact, /new or /reload sent and not answered yet. */
  command: { id: string; name: string } | null;
  /** A short note after a command finished ("Conversation compacted"). */
  notice: string | null;
}

export const initialAgentView: AgentView = {
  status: "connecting",
  initialized: false,
  initSeq: 0,
  messages: [],
  cursor: 0,
  total: 0,
  loadingOlder: false,
  streaming: null,
  running: false,
  liveTools: {},
  pending: [],
  earlyEchoes: 0,
  tools: [],
  commands: [],
  model: null,
  sessionName: null,
  sessionFile: null,
  contextUsage: null,
  tokens: null,
  cost: 0,
  files: null,
  errors: [],
  versionWarning: null,
  finishedRuns: 0,
  lastFinish: null,
  approvals: initialApprovals,
  remoteCommands: false,
  models: null,
  command: null,
  notice: null,
};

export type AgentAction =
  /** `now`: when the frames arrived (ms), for the decisions' times; the page's clock when absent. */
  | { kind: "frames"; frames: AgentServerFrame[]; now?: number }
  | { kind: "status"; status: LinkStatus }
  | { kind: "send"; prompt: PendingPrompt }
  /** A held follow-up: new text, or removed (cancelled, or taken back into the composer). */
  | { kind: "edit_held"; id: string; text: string }
  | { kind: "drop_held"; id: string }
  /** Held follow-ups about to be sent (pi's run ended): they become ordinary prompts. */
  | { kind: "release_held"; ids: string[] }
  | { kind: "command_sent"; id: string; name: string }
  | { kind: "dismiss_notice" }
  | { kind: "older_requested" }
  | { kind: "dismiss_error"; id: number }
  | { kind: "approval_answered"; id: string }
  | { kind: "local_error"; message: string };

export function agentReducer(s: AgentView, a: AgentAction): AgentView {
  switch (a.kind) {
    case "frames": {
      const now = a.now ?? Date.now();
      return a.frames.reduce((v, f) => applyFrame(v, f, now), s);
    }
    case "status":
      // A lost link ends the page request; pending prompts stay and are resent on reconnect.
      // A command's answer is lost with the link: stop showing it as running.
      return { ...s, status: a.status, loadingOlder: a.status === "open" ? s.loadingOlder : false, command: a.status === "open" ? s.command : null };
    case "send":
      return { ...s, pending: [...s.pending.filter((p) => p.id !== a.prompt.id), a.prompt] };
    case "edit_held":
      return { ...s, pending: s.pending.map((p) => (p.id === a.id && p.state === "held" ? { ...p, text: a.text } : p)) };
    case "drop_held":
      return { ...s, pending: s.pending.filter((p) => !(p.id === a.id && p.state === "held")) };
    case "release_held": {
      const ids = new Set(a.ids);
      return { ...s, pending: s.pending.map((p) => (ids.has(p.id) && p.state === "held" ? { ...p, state: "sending", deliverAs: undefined } : p)) };
    }
    case "command_sent":
      return { ...s, command: { id: a.id, name: a.name }, notice: null };
    case "dismiss_notice":
      return { ...s, notice: null };
    case "older_requested":
      return { ...s, loadingOlder: true };
    case "dismiss_error":
      return { ...s, errors: s.errors.filter((e) => e.id !== a.id) };
    case "approval_answered":
      return { ...s, approvals: approvalAnswered(s.approvals, a.id) };
    case "local_error":
      return withError(s, a.message);
  }
}

let errorSeq = 0;
function withError(s: AgentView, message: string): AgentView {
  return { ...s, errors: [...s.errors.slice(-4), { id: ++errorSeq, message }] };
}

export function applyFrame(s: AgentView, frame: AgentServerFrame, now: number = Date.now()): AgentView {
  return isBridgeFrame(frame) ? applyBridgeFrame(s, frame, now) : applyPiEvent(s, piEventView(frame));
}

function applyBridgeFrame(s: AgentView, f: BridgeFrame, now: number): AgentView {
  switch (f.type) {
    case "init_state":
      return applyInit(s, f);
    case "history_page":
      return applyHistoryPage(s, f);
    case "ack":
      if (s.command?.id === f.id) return { ...s, command: null, notice: commandDone(s.command.name) };
      return applyAck(s, f.id);
    case "models_list":
      return { ...s, models: modelsFrom(f) };
    case "commands_list":
      return { ...s, commands: f.commands ?? [] };
    case "files_list":
      return { ...s, files: { prefix: f.prefix ?? "", files: f.files ?? [] } };
    case "error": {
      if (f.id && s.command?.id === f.id) return withError({ ...s, command: null }, f.message ?? "the command failed");
      if (f.id && (f.code === CONFLICT || isApprovalError(s.approvals, f.id))) {
        const { view, message } = approvalFailed(s.approvals, f.id, f.code, f.message ?? "agent error");
        return withError({ ...s, approvals: view }, message);
      }
      // An error about one of our prompts means pi never got it: drop it so it isn't resent forever.
      const pending = f.id ? s.pending.filter((p) => p.id !== f.id) : s.pending;
      return withError({ ...s, pending, loadingOlder: false }, f.message ?? "agent error");
    }
    case "approval_request":
      return { ...s, approvals: approvalRequested(s.approvals, f) };
    case "approval_resolved":
      return { ...s, approvals: approvalResolved(s.approvals, f, now) };
    case "approval_policy":
      return { ...s, approvals: approvalPolicyChanged(s.approvals, f) };
  }
}

function applyPiEvent(s: AgentView, f: AgentPiEvent): AgentView {
  switch (f.type) {
    case "agent_start":
      return { ...s, running: true };
    case "agent_end":
    case "agent_settled":
      return finishRun(s, f);
    case "message_start":
      return messageStart(s, f.message);
    case "message_update":
      return messageUpdate(s, f);
    case "message_end":
      return messageEnd(s, f.message);
    case "tool_execution_start":
      return setTool(s, f.toolCallId, { toolCallId: f.toolCallId, toolName: f.toolName, args: f.args, done: false });
    case "tool_execution_update":
      return setTool(s, f.toolCallId, { result: f.partialResult });
    case "tool_execution_end":
      return setTool(s, f.toolCallId, { result: { ...(f.result ?? {}), isError: !!f.isError }, done: true });
    case "session_info_changed":
      return { ...s, sessionName: f.name ?? f.session_name ?? s.sessionName };
    case "model_select":
      return { ...s, model: modelName(f.model) ?? s.model, models: s.models && modelSelected(s.models, f.model) };
    case "thinking_level_select":
      return { ...s, models: s.models && typeof f.level === "string" ? { ...s.models, thinkingLevel: f.level } : s.models };
    case "context_usage":
      // pi's event is camelCase {tokens, contextWindow, percent}; init_state uses the snake_case model.
      return { ...s, contextUsage: { tokens: f.tokens ?? null, context_window: f.contextWindow ?? f.context_window ?? null, percent: f.percent ?? null } };
    default:
      return s; // turn_start/end, queue_update, and anything pi adds later: nothing to show.
  }
}

function modelName(m: unknown): string | null {
  if (typeof m === "string") return m;
  if (m && typeof m === "object" && "id" in m) {
    const { id, provider } = m as { id: unknown; provider?: unknown };
    return provider ? `${String(provider)}/${String(id)}` : String(id);
  }
  return null;
}

function commandDone(name: string): string {
  return name === "compact" ? "Conversation compacted" : name === "new" ? "New session started" : name === "reload" ? "pi reloaded" : `/${name} done`;
}

function modelsFrom(f: ModelsListMsg): ModelsView {
  const cur = f.current as { provider?: unknown; id?: unknown } | null | undefined;
  return {
    models: f.models ?? [],
    current: cur && typeof cur.provider === "string" && typeof cur.id === "string" ? { provider: cur.provider, id: cur.id } : null,
    thinkingLevel: f.thinking_level ?? null,
    thinkingLevels: f.thinking_levels ?? [],
  };
}

/** pi's model_select carries the model as "provider/id" (the shim's form) or as pi's object. */
function modelSelected(m: ModelsView, model: unknown): ModelsView {
  const name = modelName(model);
  if (!name) return m;
  const found = m.models.find((x) => `${x.provider}/${x.id}` === name);
  return found ? { ...m, current: { provider: found.provider, id: found.id } } : m;
}

/** The current model's entry, when the models are known. */
export function currentModel(v: AgentView): ModelInfo | null {
  const c = v.models?.current;
  return (c && v.models?.models.find((m) => m.provider === c.provider && m.id === c.id)) || null;
}

function applyInit(s: AgentView, f: InitStateMsg): AgentView {
  const messages = (f.messages ?? []) as ChatMessage[];
  const streaming = f.is_streaming && f.partial ? cloneMessage(f.partial as ChatMessage) : null;
  const pending = settleAfterReconnect(s, messages, f.cursor ?? null, !!f.is_streaming);
  return {
    ...s,
    status: "open",
    initialized: true,
    initSeq: s.initSeq + 1,
    messages,
    cursor: f.cursor ?? Math.max(0, (f.total_messages ?? messages.length) - messages.length),
    total: f.total_messages ?? messages.length,
    loadingOlder: false,
    streaming,
    running: !!f.is_streaming,
    liveTools: {},
    pending,
    earlyEchoes: 0,
    tools: f.tools ?? [],
    commands: f.commands ?? [],
    model: f.model ?? s.model,
    sessionName: f.session_name ?? null,
    sessionFile: f.session_file ?? null,
    contextUsage: f.context_usage ?? null,
    tokens: f.tokens ?? null,
    cost: typeof f.cost === "number" ? f.cost : 0,
    versionWarning: versionWarning("This agent", f.protocol_version),
    approvals: approvalsFromInit(s.approvals, f),
    remoteCommands: (f.capabilities ?? []).includes("remote_commands"),
  };
}

// Pending prompts and pi's echoes. pi's echo of a user message carries no prompt id, and its text
// is not ours either (the bridge appends text attachments), so an echo is matched by the ack's id
// and by order: pi takes the prompts it acknowledged in the order it acknowledged them, so the
// oldest acked prompt is the one pi just started. Text is never compared.

function applyAck(s: AgentView, id: string): AgentView {
  const p = s.pending.find((x) => x.id === id);
  if (!p || p.state === "acked" || p.state === "held") return s;
  if (p.noEcho) return { ...s, pending: s.pending.filter((x) => x !== p) };
  // pi echoed it before the ack reached us: it is delivered and shown already.
  if (s.earlyEchoes > 0) return { ...s, pending: s.pending.filter((x) => x !== p), earlyEchoes: s.earlyEchoes - 1 };
  return { ...s, pending: s.pending.map((x) => (x === p ? { ...x, state: "acked" } : x)) };
}

/** pi echoed a user message: settle the oldest acked prompt, or the next ack if none is acked yet. */
function settleEcho(s: AgentView): Pick<AgentView, "pending" | "earlyEchoes"> {
  const i = s.pending.findIndex((p) => p.state === "acked");
  if (i >= 0) return { pending: s.pending.filter((_, j) => j !== i), earlyEchoes: s.earlyEchoes };
  // Not one of ours in flight: a message typed in pi's own terminal.
  const inFlight = s.status === "open" ? s.pending.filter((p) => p.state === "sending").length : 0;
  return { pending: s.pending, earlyEchoes: Math.min(inFlight, s.earlyEchoes + 1) };
}

/** After a reconnect: prompts never acked stay (they are resent); acked ones pi has taken meanwhile
 *  go. An idle pi has taken every prompt it acknowledged; a busy one has taken as many as the user
 *  messages that joined its history since our last view (the oldest acked first). */
function settleAfterReconnect(s: AgentView, messages: ChatMessage[], cursor: number | null, streaming: boolean): PendingPrompt[] {
  const acked = s.pending.filter((p) => p.state === "acked");
  if (acked.length === 0) return s.pending;
  if (!streaming) return s.pending.filter((p) => p.state !== "acked");
  const start = cursor ?? 0;
  let taken = 0;
  if (s.initialized)
    messages.forEach((m, i) => {
      if (m.role === "user" && start + i >= s.total) taken++;
    });
  const drop = new Set(acked.slice(0, taken));
  return s.pending.filter((p) => !drop.has(p));
}

function applyHistoryPage(s: AgentView, f: HistoryPageMsg): AgentView {
  const page = (f.messages ?? []) as ChatMessage[];
  // Only a page that ends exactly at our oldest message is glued on: anything else is stale
  // (a reconnect replaced the history meanwhile) or a repeat, and would duplicate messages.
  if (f.before !== s.cursor || f.cursor + page.length !== s.cursor) return { ...s, loadingOlder: false };
  return {
    ...s,
    messages: page.length ? [...page, ...s.messages] : s.messages,
    cursor: f.cursor,
    total: f.total_messages ?? s.total,
    loadingOlder: false,
  };
}

function finishRun(s: AgentView, f: { type: "agent_end" | "agent_settled" }): AgentView {
  if (!s.running && f.type === "agent_settled") return s; // agent_end already counted this run
  const last = [...s.messages].reverse().find((m) => m.role === "assistant");
  const failed = last?.stopReason === "error";
  return {
    ...s,
    running: false,
    streaming: null,
    liveTools: {},
    finishedRuns: s.finishedRuns + 1,
    lastFinish: failed
      ? { kind: "error", text: last?.errorMessage ?? "the run failed" }
      : { kind: "done", text: textOf(last?.content).slice(0, 140) },
  };
}

function cloneMessage(m: ChatMessage): ChatMessage {
  return { ...m, content: Array.isArray(m.content) ? m.content.map((b) => ({ ...b })) : m.content };
}

function messageStart(s: AgentView, m: ChatMessage): AgentView {
  if (!m) return s;
  // The assistant message streams; user and tool results are final at message_end.
  if (m.role === "assistant") return { ...s, running: true, streaming: cloneMessage(m) };
  return s;
}

function messageEnd(s: AgentView, m: ChatMessage): AgentView {
  if (!m) return s;
  // pi echoes every user message (typed in its TUI or sent by us): the echo replaces our pending row.
  const settled = m.role === "user" ? settleEcho(s) : { pending: s.pending, earlyEchoes: s.earlyEchoes };
  return {
    ...s,
    ...settled,
    messages: [...s.messages, m],
    total: s.total + 1,
    streaming: m.role === "assistant" ? null : s.streaming,
    cost: s.cost + (m.role === "assistant" ? (m.usage?.cost?.total ?? 0) : 0),
    tokens: m.role === "assistant" && m.usage ? addUsage(s.tokens, m.usage) : s.tokens,
  };
}

/** init_state carries the session's totals; each finished assistant message adds its usage. */
function addUsage(t: TokenTotals | null, u: NonNullable<ChatMessage["usage"]> & { cacheRead?: number; cacheWrite?: number }): TokenTotals {
  const b = t ?? { input: 0, output: 0, cache_read: 0, cache_write: 0, total: 0 };
  return {
    ...b,
    input: (b.input ?? 0) + (u.input ?? 0),
    output: (b.output ?? 0) + (u.output ?? 0),
    cache_read: (b.cache_read ?? 0) + (u.cacheRead ?? 0),
    cache_write: (b.cache_write ?? 0) + (u.cacheWrite ?? 0),
    total: (b.total ?? 0) + (u.totalTokens ?? (u.input ?? 0) + (u.output ?? 0)),
  };
}

function messageUpdate(s: AgentView, f: Extract<AgentPiEvent, { type: "message_update" }>): AgentView {
  // The bridge strips pi's full snapshots (O(n²) traffic); rebuild the partial from the deltas.
  if (f.message && Array.isArray(f.message.content)) return { ...s, streaming: cloneMessage(f.message) };
  const ev = f.assistantMessageEvent ?? f.assistant_message_event;
  if (!ev || typeof ev.contentIndex !== "number") return s;
  const base = s.streaming ?? { role: "assistant", content: [] };
  const content = Array.isArray(base.content) ? [...base.content] : [];
  const i = ev.contentIndex as number;
  const cur = content[i] as any;
  switch (ev.type) {
    case "text_start":
      content[i] = { type: "text", text: "" };
      break;
    case "text_delta":
      content[i] = { type: "text", text: (cur?.text ?? "") + (ev.delta ?? "") };
      break;
    case "text_end":
      content[i] = { type: "text", text: typeof ev.content === "string" ? ev.content : (cur?.text ?? "") };
      break;
    case "thinking_start":
      content[i] = { type: "thinking", thinking: "" };
      break;
    case "thinking_delta":
      content[i] = { type: "thinking", thinking: (cur?.thinking ?? "") + (ev.delta ?? "") };
      break;
    case "thinking_end":
      content[i] = { type: "thinking", thinking: typeof ev.content === "string" ? ev.content : (cur?.thinking ?? "") };
      break;
    case "toolcall_start":
      content[i] = { type: "toolCall", id: ev.toolCall?.id ?? ev.id ?? "", name: ev.toolCall?.name ?? ev.name ?? "", arguments: {}, partialJson: "" };
      break;
    case "toolcall_delta": {
      const tc = (cur ?? { type: "toolCall", id: "", name: "", arguments: {} }) as ToolCallBlock;
      const partialJson = (tc.partialJson ?? "") + (ev.delta ?? "");
      content[i] = { ...tc, partialJson, arguments: parsePartialArgs(partialJson) ?? tc.arguments };
      break;
    }
    case "toolcall_end":
      if (ev.toolCall) content[i] = { ...ev.toolCall };
      break;
    default:
      return s;
  }
  return { ...s, running: true, streaming: { ...base, content } };
}

/** The arguments of a tool call still being streamed: the last prefix that parses (closing an open
 *  string and object if needed), so a card can show `bash ls -l…` while the model types it. */
export function parsePartialArgs(json: string): Record<string, unknown> | null {
  for (const tail of ["", "}", '"}', '"]}', "]}"]) {
    try {
      const v = JSON.parse(json + tail);
      if (v && typeof v === "object" && !Array.isArray(v)) return v as Record<string, unknown>;
    } catch {
      /* try the next closing */
    }
  }
  return null;
}

function setTool(s: AgentView, id: string, patch: Partial<LiveTool>): AgentView {
  if (!id) return s;
  const prev = s.liveTools[id] ?? { toolCallId: id, toolName: patch.toolName ?? "", args: patch.args, done: false };
  return { ...s, liveTools: { ...s.liveTools, [id]: { ...prev, ...patch } } };
}

/** toolCallId → its toolResult message, for pairing results with the calls that made them. */
export function resultsByCallId(messages: ChatMessage[]): Map<string, ChatMessage> {
  const map = new Map<string, ChatMessage>();
  for (const m of messages) if (m.role === "toolResult" && m.toolCallId) map.set(m.toolCallId, m);
  return map;
}
