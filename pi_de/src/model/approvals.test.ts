import { describe, expect, it } from "vitest";
import { agentReducer, initialAgentView, type AgentView } from "./agentReducer";
import { approvalSummary, canEditCommand, compactPath, diffRows, pathInFolder, parseRule, waitedText, latencyText, MAX_RECENT_APPROVALS } from "./approvals";

const T0 = 1_800_000_000; // unix seconds
const feed = (s: AgentView, now: number, ...frames: any[]) => agentReducer(s, { kind: "frames", frames, now });
const init = (extra: any = {}) =>
  feed(initialAgentView, T0 * 1000, { type: "init_state", protocol_version: "1", node: { id: "n", machine: "m", cwd: "/c", port: 1 }, messages: [], ...extra });
const req = (id: string, command = "touch made.txt", extra: any = {}) => ({
  type: "approval_request",
  id,
  tool_call_id: `call-${id}`,
  tool_name: "bash",
  input: { command },
  policy: "writes",
  queued_at: T0,
  preview: { kind: "command", command },
  why: "bash",
  ...extra,
});

describe("approvals: init_state", () => {
  it("takes the waiting questions in order, the policy, the rules and the recent decisions", () => {
    const rec = { id: "old", tool_call_id: "c0", tool_name: "bash", summary: "ls", decision: "allow", by: "rule", decided_at: T0 - 5, latency_ms: 0 };
    const s = init({ pending_approvals: [req("a1"), req("a2", "ls -la")], approval_policy: "writes", approval_rules: [{ tool: "bash", prefix: "git status" }], recent_approvals: [rec] });
    expect(s.approvals.pending.map((p) => p.id)).toEqual(["a1", "a2"]);
    expect(s.approvals.policy).toBe("writes");
    expect(s.approvals.rules).toEqual([{ tool: "bash", prefix: "git status" }]);
    expect(s.approvals.recent).toEqual([rec]);
  });

  it("an agent that does not report approvals is policy off with nothing waiting", () => {
    const s = init();
    expect(s.approvals).toMatchObject({ pending: [], policy: "off", rules: [], recent: [] });
  });

  it("a reconnect replaces the queue and forgets answers in flight, so a question still open can be answered again", () => {
    let s = init({ pending_approvals: [req("a1")] });
    s = agentReducer(s, { kind: "approval_answered", id: "a1" });
    expect(s.approvals.answering).toEqual(["a1"]);
    s = feed(s, T0 * 1000, { type: "init_state", protocol_version: "1", node: { id: "n", machine: "m", cwd: "/c", port: 1 }, messages: [], pending_approvals: [req("a1")] });
    expect(s.approvals.answering).toEqual([]);
    expect(s.approvals.pending.map((p) => p.id)).toEqual(["a1"]);
  });
});

describe("approvals: frames", () => {
  it("questions queue in arrival order; one sent again after a bridge restart keeps its place", () => {
    let s = init();
    s = feed(s, T0 * 1000, req("a1"), req("a2", "ls"), req("a1"));
    expect(s.approvals.pending.map((p) => p.id)).toEqual(["a1", "a2"]);
  });

  it("approval_resolved closes the question and records the decision (newest last) with its latency", () => {
    let s = init({ pending_approvals: [req("a1"), req("a2", "ls")] });
    s = agentReducer(s, { kind: "approval_answered", id: "a1" });
    s = feed(s, (T0 + 12) * 1000, { type: "approval_resolved", id: "a1", decision: "deny", by: "terminal", reason: "not now" });
    expect(s.approvals.pending.map((p) => p.id)).toEqual(["a2"]);
    expect(s.approvals.answering).toEqual([]);
    expect(s.approvals.recent.at(-1)).toMatchObject({
      id: "a1",
      tool_name: "bash",
      summary: "touch made.txt",
      decision: "deny",
      by: "terminal",
      reason: "not now",
      decided_at: T0 + 12,
      latency_ms: 12_000,
    });
    expect(s.approvals.lastResolved?.record.id).toBe("a1");
  });

  it("an edited command is recorded as the command that ran", () => {
    let s = init({ pending_approvals: [req("a1", "rm -rf build")] });
    s = feed(s, T0 * 1000, { type: "approval_resolved", id: "a1", decision: "allow", by: "dashboard", input: { command: "rm -rf build/tmp" } });
    expect(s.approvals.recent[0].summary).toBe("rm -rf build/tmp");
  });

  it("keeps at most the latest 50 decisions", () => {
    let s = init();
    for (let i = 0; i < MAX_RECENT_APPROVALS + 5; i++)
      s = feed(s, T0 * 1000, req(`a${i}`), { type: "approval_resolved", id: `a${i}`, decision: "allow", by: "dashboard" });
    expect(s.approvals.recent).toHaveLength(MAX_RECENT_APPROVALS);
    expect(s.approvals.recent.at(-1)!.id).toBe(`a${MAX_RECENT_APPROVALS + 4}`);
  });

  it("approval_resolved of an unknown question without a record changes nothing", () => {
    const s = init({ pending_approvals: [req("a1")] });
    const t = feed(s, T0 * 1000, { type: "approval_resolved", id: "zz", decision: "allow", by: "dashboard" });
    expect(t.approvals.pending).toHaveLength(1);
    expect(t.approvals.recent).toHaveLength(0);
  });

  it("the bridge's record is what the recent decisions list, also for a call an allow rule let through", () => {
    const record = (id: string, by: string) => ({ id, tool_call_id: `c-${id}`, tool_name: "bash", summary: "git status", decision: "allow", by, decided_at: T0 + 1, latency_ms: 3 });
    let s = init({ pending_approvals: [req("a1")] });
    s = feed(s, (T0 + 99) * 1000, { type: "approval_resolved", id: "r1", decision: "allow", by: "rule", record: record("r1", "rule") });
    expect(s.approvals.pending).toHaveLength(1);
    expect(s.approvals.lastResolved).toBeNull(); // nothing on screen closed
    s = feed(s, (T0 + 99) * 1000, { type: "approval_resolved", id: "a1", decision: "allow", by: "dashboard", record: record("a1", "dashboard") });
    expect(s.approvals.pending).toEqual([]);
    expect(s.approvals.recent).toEqual([record("r1", "rule"), record("a1", "dashboard")]);
    expect(s.approvals.lastResolved?.record).toEqual(record("a1", "dashboard"));
  });

  it("approval_policy replaces the policy and the rules", () => {
    let s = init({ approval_policy: "off" });
    s = feed(s, T0 * 1000, { type: "approval_policy", policy: "all", rules: [{ tool: "read" }] });
    expect(s.approvals.policy).toBe("all");
    expect(s.approvals.rules).toEqual([{ tool: "read" }]);
  });
});

describe("approvals: errors", () => {
  it("CONFLICT after the terminal answered says who decided, and drops nothing else", () => {
    let s = init({ pending_approvals: [req("a1"), req("a2")] });
    s = agentReducer(s, { kind: "approval_answered", id: "a1" });
    s = feed(s, T0 * 1000, { type: "approval_resolved", id: "a1", decision: "allow", by: "terminal" });
    s = feed(s, T0 * 1000, { type: "error", id: "a1", code: 1013, message: "approval a1 is already decided" });
    expect(s.errors.at(-1)!.message).toBe("Already decided: allowed in pi's terminal. Your answer was not used.");
    expect(s.approvals.pending.map((p) => p.id)).toEqual(["a2"]);
  });

  it("CONFLICT before the outcome arrived closes the question with a clear message", () => {
    let s = init({ pending_approvals: [req("a1")] });
    s = agentReducer(s, { kind: "approval_answered", id: "a1" });
    s = feed(s, T0 * 1000, { type: "error", id: "a1", code: 1013, message: "conflict" });
    expect(s.approvals.pending).toEqual([]);
    expect(s.approvals.answering).toEqual([]);
    expect(s.errors.at(-1)!.message).toMatch(/^Already decided elsewhere \(in pi's terminal, another dashboard, or it timed out\)/);
  });

  it("any other error about a decision re-enables the question", () => {
    let s = init({ pending_approvals: [req("a1")] });
    s = agentReducer(s, { kind: "approval_answered", id: "a1" });
    s = feed(s, T0 * 1000, { type: "error", id: "a1", code: 1003, message: "decision not applied: input: command must be a non-empty string" });
    expect(s.approvals.pending).toHaveLength(1);
    expect(s.approvals.answering).toEqual([]);
    expect(s.errors.at(-1)!.message).toBe("decision not applied: input: command must be a non-empty string (the question is still open: answer again)");
  });

  it("an error about a prompt still drops that prompt, not a question", () => {
    let s = init({ pending_approvals: [req("a1")] });
    s = agentReducer(s, { kind: "send", prompt: { id: "p1", text: "x", attachments: [], state: "sending" } });
    s = feed(s, T0 * 1000, { type: "error", id: "p1", code: 1003, message: "bad prompt" });
    expect(s.pending).toEqual([]);
    expect(s.approvals.pending).toHaveLength(1);
    expect(s.errors.at(-1)!.message).toBe("bad prompt");
  });
});

describe("approvals: helpers", () => {
  it("summarises a call by its command, path, or compact JSON", () => {
    expect(approvalSummary({ tool_name: "bash", input: { command: "ls" } })).toBe("ls");
    expect(approvalSummary({ tool_name: "edit", input: { path: "a.txt", edits: [] } })).toBe("a.txt");
    expect(approvalSummary({ tool_name: "mcp", input: { q: 1 } })).toBe('{"q":1}');
    expect(approvalSummary({ tool_name: "mcp", input: { q: "x".repeat(500) } })).toHaveLength(200);
  });

  it("offers Edit and allow only for bash-like calls with a command", () => {
    expect(canEditCommand({ tool_name: "bash", input: { command: "ls" } })).toBe(true);
    expect(canEditCommand({ tool_name: "powershell", input: { command: "dir" } })).toBe(true);
    expect(canEditCommand({ tool_name: "edit", input: { path: "a" } })).toBe(false);
    expect(canEditCommand({ tool_name: "bash", input: {} })).toBe(false);
  });

  it("formats waiting times and latencies", () => {
    expect(waitedText(-3)).toBe("0 s");
    expect(waitedText(12.7)).toBe("12 s");
    expect(waitedText(60)).toBe("1 min");
    expect(waitedText(243)).toBe("4 min 3 s");
    expect(waitedText(3720)).toBe("1 h 2 min");
    expect(latencyText(340)).toBe("340 ms");
    expect(latencyText(12_345)).toBe("12.3 s");
  });

  it("validates a typed rule the way the bridge does", () => {
    expect(parseRule(" bash ", " git status ")).toEqual({ rule: { tool: "bash", prefix: "git status" } });
    expect(parseRule("read", "")).toEqual({ rule: { tool: "read" } });
    expect(parseRule("", "")).toHaveProperty("error");
    expect(parseRule("two words", "")).toHaveProperty("error");
    expect(parseRule("edit", "src/")).toEqual({ error: "only bash and powershell rules take a command prefix" });
    expect(parseRule("bash", "x".repeat(501))).toHaveProperty("error");
  });

  it("colours a unified diff by line kind", () => {
    const rows = diffRows("--- a.txt\n+++ a.txt\n@@ -1,2 +1,2 @@\n keep\n-x\n+y\n\\ No newline at end of file\n");
    expect(rows.map((r) => r.kind)).toEqual(["meta", "meta", "hunk", "ctx", "del", "add", "meta"]);
  });

  it("keeps the end of a long path, which names the folder", () => {
    expect(compactPath("/tmp/pytest-of-u/pytest-9/test_x/pi/work")).toBe("/tmp/…/pi/work");
    expect(compactPath("~/src/app")).toBe("~/src/app");
    expect(compactPath("/srv/projects/api")).toBe("/srv/projects/api");
  });

  it("shows a file inside the agent's folder relative to it, one outside in full", () => {
    expect(pathInFolder("/h/u/app/src/a.ts", "/h/u/app")).toBe("src/a.ts");
    expect(pathInFolder("/h/u/app/src/a.ts", "/h/u/app/")).toBe("src/a.ts");
    expect(pathInFolder("/h/u/application/a.ts", "/h/u/app")).toBe("/h/u/application/a.ts");
    expect(pathInFolder("/etc/passwd", "/h/u/app")).toBe("/etc/passwd");
  });
});
