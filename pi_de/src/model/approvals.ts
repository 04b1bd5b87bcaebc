// Approval gates, as the agent link reports them (specs/approvals.md): the tool calls waiting for a
// person's decision (oldest first), the agent's policy and allow rules, and its recent decisions.
// Pure: the agent reducer hands every approval frame here with the time it arrived.
import type { ApprovalPolicyMsg, ApprovalRecord, ApprovalRequestMsg, ApprovalResolvedMsg, ApprovalRule, InitStateMsg } from "../protocol/types";

export type ApprovalPolicy = ApprovalPolicyMsg["policy"];
export type ApprovalBy = ApprovalResolvedMsg["by"];
export const APPROVAL_POLICIES: readonly ApprovalPolicy[] = ["off", "writes", "all"];
/** The bridge keeps this many; so do we. */
export const MAX_RECENT_APPROVALS = 50;
/** The error code of a decision that came too late (specs/protocol.md: CONFLICT). */
export const CONFLICT = 1013;

export interface ApprovalsView {
  /** Waiting for a decision now, oldest first: the head is the question shown. */
  pending: ApprovalRequestMsg[];
  /** Ids we answered and whose outcome has not arrived yet (their buttons stay disabled). */
  answering: string[];
  policy: ApprovalPolicy;
  rules: ApprovalRule[];
  /** Newest last, at most MAX_RECENT_APPROVALS. */
  recent: ApprovalRecord[];
  /** The latest question that closed, for a short "allowed in the terminal" note. */
  lastResolved: { record: ApprovalRecord; seq: number } | null;
}

export const initialApprovals: ApprovalsView = { pending: [], answering: [], policy: "off", rules: [], recent: [], lastResolved: null };

export function approvalsFromInit(s: ApprovalsView, f: InitStateMsg): ApprovalsView {
  // Answers sent on the old link either landed (the question is gone from pending) or were lost: a
  // question still pending after a reconnect can be answered again.
  return {
    pending: f.pending_approvals ?? [],
    answering: [],
    policy: f.approval_policy ?? "off",
    rules: f.approval_rules ?? [],
    recent: (f.recent_approvals ?? []).slice(-MAX_RECENT_APPROVALS),
    lastResolved: s.lastResolved,
  };
}

/** A new question joins the end of the queue; one already known (sent again after a bridge restart) keeps its place. */
export function approvalRequested(s: ApprovalsView, f: ApprovalRequestMsg): ApprovalsView {
  const i = s.pending.findIndex((p) => p.id === f.id);
  if (i >= 0) return { ...s, pending: s.pending.map((p, j) => (j === i ? f : p)) };
  return { ...s, pending: [...s.pending, f] };
}

/** A question closed (here, in another dashboard, in pi's terminal, by a rule, a timeout or Esc). The
 *  frame's record (the audit log's line) goes to the recent decisions; a bridge that sends none gets one
 *  made from the question it closed. A decision about no question we showed (an allow rule's) is only
 *  recorded. */
export function approvalResolved(s: ApprovalsView, f: ApprovalResolvedMsg, now: number): ApprovalsView {
  const req = s.pending.find((p) => p.id === f.id);
  const answering = s.answering.filter((id) => id !== f.id);
  const record: ApprovalRecord | null = f.record ?? (req ? recordOf(req, f, now) : null);
  const recent = record ? [...s.recent.filter((r) => r.id !== record.id), record].slice(-MAX_RECENT_APPROVALS) : s.recent;
  if (!req) return { ...s, answering, recent };
  return {
    ...s,
    pending: s.pending.filter((p) => p !== req),
    answering,
    recent,
    lastResolved: { record: record!, seq: (s.lastResolved?.seq ?? 0) + 1 },
  };
}

function recordOf(req: ApprovalRequestMsg, f: ApprovalResolvedMsg, now: number): ApprovalRecord {
  return {
    id: f.id,
    tool_call_id: req.tool_call_id,
    tool_name: req.tool_name,
    summary: approvalSummary(req, f.input),
    decision: f.decision,
    by: f.by,
    reason: f.reason ?? null,
    decided_at: now / 1000,
    latency_ms: Math.max(0, now - req.queued_at * 1000),
  };
}

export function approvalPolicyChanged(s: ApprovalsView, f: ApprovalPolicyMsg): ApprovalsView {
  return { ...s, policy: f.policy, rules: f.rules ?? [] };
}

/** We sent a decision: its buttons wait for the outcome. */
export function approvalAnswered(s: ApprovalsView, id: string): ApprovalsView {
  return s.answering.includes(id) ? s : { ...s, answering: [...s.answering, id] };
}

/** Is this error about one of the questions (rather than a prompt)? */
export function isApprovalError(s: ApprovalsView, id: string | null | undefined): boolean {
  return !!id && (s.answering.includes(id) || s.pending.some((p) => p.id === id) || s.recent.some((r) => r.id === id));
}

/** An error about a decision we sent. CONFLICT means the question is closed already: it leaves the
 *  queue (if its approval_resolved has not removed it yet) and the message says who decided, when we
 *  know. Any other error leaves the question open so it can be answered again. */
export function approvalFailed(s: ApprovalsView, id: string, code: number, message: string): { view: ApprovalsView; message: string } {
  const answering = s.answering.filter((x) => x !== id);
  if (code !== CONFLICT) return { view: { ...s, answering }, message: `${message} (the question is still open: answer again)` };
  const known = [...s.recent].reverse().find((r) => r.id === id);
  const text = known
    ? `Already decided: ${known.decision === "allow" ? "allowed" : "denied"} ${byText(known.by)}. Your answer was not used.`
    : "Already decided elsewhere (in pi's terminal, another dashboard, or it timed out). Your answer was not used.";
  return { view: { ...s, answering, pending: s.pending.filter((p) => p.id !== id) }, message: text };
}

/** Who closed a question, for people ("in the terminal", "by a rule"). */
export function byText(by: ApprovalBy | string): string {
  switch (by) {
    case "dashboard":
      return "from a dashboard";
    case "terminal":
      return "in pi's terminal";
    case "rule":
      return "by an allow rule";
    case "timeout":
      return "after the timeout";
    case "abort":
      return "because the run was aborted";
    case "no_ui":
      return "because nobody could answer";
    default:
      return `by ${by}`;
  }
}

/** One line for a call: the command, the path, or compact JSON; `ran` is the edited input that ran instead. */
export function approvalSummary(req: Pick<ApprovalRequestMsg, "tool_name" | "input" | "preview">, ran?: Record<string, unknown> | null): string {
  const input = ran ?? req.input ?? {};
  if (typeof input.command === "string") return input.command;
  if (typeof input.path === "string") return input.path;
  if (req.preview?.path) return req.preview.path;
  const s = JSON.stringify(input);
  return s.length > 200 ? s.slice(0, 199) + "…" : s;
}

/** Only bash-like tools take an edited command (the shim refuses `input` for anything else). */
export function canEditCommand(req: Pick<ApprovalRequestMsg, "tool_name" | "input">): boolean {
  return (req.tool_name === "bash" || req.tool_name === "powershell") && typeof req.input?.command === "string";
}

/** "12 s", "4 min 3 s", "1 h 2 min": how long a question has waited. */
export function waitedText(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ""}`;
  const m = Math.floor((s % 3600) / 60);
  return `${Math.floor(s / 3600)} h${m ? ` ${m} min` : ""}`;
}

export function latencyText(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : waitedText(ms / 1000);
}

export function ruleText(r: ApprovalRule): string {
  return r.prefix ? `${r.tool}: ${r.prefix}` : `${r.tool} (every call)`;
}

export function sameRule(a: ApprovalRule, b: ApprovalRule): boolean {
  return a.tool === b.tool && (a.prefix ?? null) === (b.prefix ?? null);
}

/** A rule typed by a person: trimmed, validated the way the bridge validates it (specs/approvals.md). */
export function parseRule(tool: string, prefix: string): { rule: ApprovalRule } | { error: string } {
  const t = tool.trim();
  const p = prefix.trim();
  if (!t) return { error: "name the tool (bash, edit, write, read…)" };
  if (t.length > 64 || /\s/.test(t)) return { error: "a tool name is one word of at most 64 characters" };
  if (p.length > 500) return { error: "the prefix is longer than 500 characters" };
  if (p && t !== "bash" && t !== "powershell") return { error: "only bash and powershell rules take a command prefix" };
  return { rule: p ? { tool: t, prefix: p } : { tool: t } };
}

// ---- paths ----

/** A long path kept readable in one line: its first segment, "…", and its last `tail` segments (the
 *  folder's own name is the part that matters; an ellipsis at the end would hide it). */
export function compactPath(p: string, tail = 2): string {
  const abs = p.startsWith("/");
  const parts = p.split("/").filter(Boolean);
  if (parts.length <= tail + 2) return p;
  return `${abs ? "/" : ""}${parts[0]}/…/${parts.slice(-tail).join("/")}`;
}

/** A file the call touches, relative to the agent's folder when it is inside it. */
export function pathInFolder(path: string, cwd: string): string {
  const base = cwd.replace(/\/+$/, "");
  if (base && path.startsWith(base + "/")) return path.slice(base.length + 1);
  return path;
}

// ---- unified diffs (the preview of an edit or write) ----

export interface DiffRow {
  kind: "add" | "del" | "ctx" | "hunk" | "meta";
  text: string;
}

/** A unified diff's lines, each with its kind, for colouring. File headers (---/+++) are meta. */
export function diffRows(diff: string): DiffRow[] {
  const lines = diff.replace(/\n$/, "").split("\n");
  return lines.map((text) => {
    if (text.startsWith("+++ ") || text.startsWith("--- ") || text.startsWith("\\ ") || /^(diff|index) /.test(text)) return { kind: "meta", text };
    if (text.startsWith("@@")) return { kind: "hunk", text };
    if (text.startsWith("+")) return { kind: "add", text };
    if (text.startsWith("-")) return { kind: "del", text };
    return { kind: "ctx", text };
  });
}
