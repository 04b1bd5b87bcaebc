import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { LinkSocket } from "../connection/agentLink";
import { agentAction, type ActionFrame } from "./agentAction";

class Sock implements LinkSocket {
  readyState = 0;
  sent: Record<string, unknown>[] = [];
  closed = false;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: unknown) => void) | null = null;
  send(d: string) {
    this.sent.push(JSON.parse(d));
  }
  close() {
    this.closed = true;
  }
  recv(f: object) {
    this.onmessage?.({ data: JSON.stringify(f) });
  }
}

let sock: Sock;
const run = (frame: ActionFrame, opts: { timeoutMs?: number; quietMs?: number } = {}) => {
  sock = new Sock();
  const urls: string[] = [];
  const p = agentAction(frame, { open: (u) => (urls.push(u), sock), url: "ws://h/ws/agent/n1", ...opts });
  return { p, urls };
};

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe("an inbox action on a short-lived agent link", () => {
  it("sends an approval decision after init_state and is done when it is resolved", async () => {
    const { p, urls } = run({ type: "approval_decision", id: "ap1", decision: "deny", reason: "no" });
    expect(urls).toEqual(["ws://h/ws/agent/n1"]);
    sock.recv({ type: "pi_event" });
    expect(sock.sent).toEqual([]); // nothing before init_state
    sock.recv({ type: "init_state", pending_approvals: [{ id: "ap1" }] });
    expect(sock.sent).toEqual([{ type: "approval_decision", id: "ap1", decision: "deny", reason: "no" }]);
    sock.recv({ type: "approval_resolved", id: "other", decision: "allow", by: "dashboard" });
    sock.recv({ type: "approval_resolved", id: "ap1", decision: "deny", by: "dashboard" });
    await expect(p).resolves.toBeUndefined();
    expect(sock.closed).toBe(true);
  });

  it("a question that is no longer pending is not sent: already decided", async () => {
    const { p } = run({ type: "approval_decision", id: "ap1", decision: "allow" });
    sock.recv({ type: "init_state", pending_approvals: [] });
    await expect(p).rejects.toThrow("already decided elsewhere");
    expect(sock.sent).toEqual([]);
    expect(sock.closed).toBe(true);
  });

  it("the bridge's refusal is the error", async () => {
    const { p } = run({ type: "approval_decision", id: "ap1", decision: "allow" });
    sock.recv({ type: "init_state", pending_approvals: [{ id: "ap1" }] });
    sock.recv({ type: "error", id: "ap1", code: 1013, message: "decision not applied: conflict" });
    await expect(p).rejects.toThrow("already decided elsewhere");
  });

  it("a prompt is done on its ack", async () => {
    const { p } = run({ type: "prompt", id: "p1", text: "go on" });
    sock.recv({ type: "init_state" });
    sock.recv({ type: "error", id: "p0", code: 1, message: "someone else's" });
    sock.recv({ type: "ack", id: "p1" });
    await expect(p).resolves.toBeUndefined();
  });

  it("an abort is done after a quiet time, or fails on an error", async () => {
    const a = run({ type: "abort" }, { quietMs: 1000 });
    sock.recv({ type: "init_state" });
    expect(sock.sent).toEqual([{ type: "abort" }]);
    vi.advanceTimersByTime(1000);
    await expect(a.p).resolves.toBeUndefined();
    const b = run({ type: "abort" }, { quietMs: 1000 });
    sock.recv({ type: "init_state" });
    sock.recv({ type: "error", code: 1012, message: "abort failed: pi is gone" });
    await expect(b.p).rejects.toThrow("abort failed");
  });

  it("a link that closes or never answers fails, bounded in time", async () => {
    const a = run({ type: "prompt", id: "p1", text: "x" });
    sock.onclose?.({});
    await expect(a.p).rejects.toThrow("offline");
    const b = run({ type: "prompt", id: "p1", text: "x" }, { timeoutMs: 5000 });
    vi.advanceTimersByTime(5000);
    await expect(b.p).rejects.toThrow("no answer from the agent in 5 s");
    expect(sock.closed).toBe(true);
  });
});

describe("roster actions on the same link", () => {
  it("quit is done on its ack, or when the link closes after it was sent (pi is gone)", async () => {
    let r = run({ type: "run_command", id: "q1", name: "quit" });
    sock.recv({ type: "init_state" });
    expect(sock.sent).toEqual([{ type: "run_command", id: "q1", name: "quit" }]);
    sock.recv({ type: "ack", id: "q1" });
    await expect(r.p).resolves.toBeUndefined();
    r = run({ type: "run_command", id: "q2", name: "quit" });
    sock.recv({ type: "init_state" });
    sock.onclose?.({});
    await expect(r.p).resolves.toBeUndefined();
    r = run({ type: "run_command", id: "q3", name: "quit" });
    sock.onclose?.({}); // never sent: the agent was not reachable
    await expect(r.p).rejects.toThrow("cannot reach the agent");
  });

  it("a rename is done on session_info_changed, or after a quiet time (an unchanged name has no answer)", async () => {
    let r = run({ type: "set_session_name", name: "x" });
    sock.recv({ type: "init_state" });
    sock.recv({ type: "session_info_changed", name: "x" });
    await expect(r.p).resolves.toBeUndefined();
    r = run({ type: "set_session_name", name: "x" }, { quietMs: 500 });
    sock.recv({ type: "init_state" });
    vi.advanceTimersByTime(600);
    await expect(r.p).resolves.toBeUndefined();
    r = run({ type: "set_session_name", name: "x" });
    sock.recv({ type: "init_state" });
    sock.recv({ type: "error", code: 1012, message: "rename failed: pi session is not ready" });
    await expect(r.p).rejects.toThrow("rename failed");
  });
});
