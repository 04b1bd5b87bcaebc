import { act, renderHook } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { useHypivisor } from "./useHypivisor";

// A scriptable registry socket that records what the page sends.
class FakeWS {
  static all: FakeWS[] = [];
  readyState = 0;
  sent: { id: string; method: string; params: Record<string, unknown> }[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((e: { data: string }) => void) | null = null;
  onclose: ((e: { code: number; wasClean: boolean }) => void) | null = null;
  constructor(public url: string) {
    FakeWS.all.push(this);
  }
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  close() {}
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  recv(f: object) {
    this.onmessage?.({ data: JSON.stringify(f) });
  }
  drop() {
    this.readyState = 3;
    this.onclose?.({ code: 1006, wasClean: false });
  }
  request(method: string) {
    return this.sent.find((f) => f.method === method);
  }
}

const ep = { wsBase: "ws://h:1", httpBase: "http://h:1", sameOrigin: true };
const item = (id: string, node_id = "n1") => ({ id, node_id, kind: "finished", summary: "done", created_at: 1 });

beforeEach(() => {
  FakeWS.all = [];
  vi.useFakeTimers();
  vi.stubGlobal("WebSocket", FakeWS);
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

async function answer(ws: FakeWS, method: string, result: object) {
  const req = ws.request(method);
  expect(req, `${method} was sent`).toBeTruthy();
  await act(async () => {
    ws.recv({ id: req!.id, result });
  });
}

describe("useHypivisor: the inbox", () => {
  it("asks list_attention on connect and applies the attention events", async () => {
    const hook = renderHook(() => useHypivisor(ep, null));
    const ws = FakeWS.all[0];
    act(() => ws.open());
    await answer(ws, "list_attention", { items: [item("a1")], unread: { n1: 2 } });
    expect(Object.keys(hook.result.current.inbox.items)).toEqual(["a1"]);
    expect(hook.result.current.inbox.unread).toEqual({ n1: 2 });
    act(() => {
      ws.recv({ event: "attention_added", item: item("a2", "n2") });
      ws.recv({ event: "attention_resolved", id: "a1", by: "read" });
      ws.recv({ event: "unread_changed", node_id: "n1", unread: 0 });
    });
    expect(Object.keys(hook.result.current.inbox.items)).toEqual(["a2"]);
    expect(hook.result.current.inbox.unread).toEqual({});
    // inbox events are not roster events
    expect(hook.result.current.roster.order).toEqual([]);
  });

  it("after a reconnect the new snapshot replaces the list: nothing twice, nothing stale", async () => {
    const hook = renderHook(() => useHypivisor(ep, null));
    const first = FakeWS.all[0];
    act(() => first.open());
    await answer(first, "list_attention", { items: [item("a1"), item("a2")], unread: {} });
    act(() => first.drop());
    act(() => vi.advanceTimersByTime(60_000));
    const second = FakeWS.all[1];
    act(() => second.open());
    // the old list stays on screen until the answer
    expect(Object.keys(hook.result.current.inbox.items).sort()).toEqual(["a1", "a2"]);
    act(() => second.recv({ event: "attention_added", item: item("a3") }));
    await answer(second, "list_attention", { items: [item("a2"), item("a3")], unread: {} });
    expect(Object.keys(hook.result.current.inbox.items).sort()).toEqual(["a2", "a3"]);
  });

  it("a hypivisor without an inbox (METHOD_NOT_FOUND) leaves it empty", async () => {
    const hook = renderHook(() => useHypivisor(ep, null));
    const ws = FakeWS.all[0];
    act(() => ws.open());
    const req = ws.request("list_attention")!;
    await act(async () => ws.recv({ id: req.id, error: { code: -32601, message: "no such method" } }));
    expect(hook.result.current.inbox.items).toEqual({});
    expect(hook.result.current.inbox.loaded).toBe(false);
  });
});
