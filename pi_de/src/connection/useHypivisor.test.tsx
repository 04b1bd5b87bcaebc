import { act, renderHook } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { useHypivisor } from "./useHypivisor";

// A scriptable stand-in for the browser WebSocket (the registry socket).
class FakeWS {
  static all: FakeWS[] = [];
  readyState = 0;
  onopen: (() => void) | null = null;
  onmessage: ((e: { data: string }) => void) | null = null;
  onclose: ((e: { code: number; wasClean: boolean }) => void) | null = null;
  constructor(public url: string) {
    FakeWS.all.push(this);
  }
  send() {}
  close() {}
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  recv(f: object) {
    this.onmessage?.({ data: JSON.stringify(f) });
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code, wasClean: code !== 1006 });
  }
}

const ep = { wsBase: "ws://h:1", httpBase: "http://h:1", sameOrigin: true };
const node = (id: string, port: number) => ({ id, machine: "box", cwd: `/p/${id}`, port, status: "active", pid: 1 });

beforeEach(() => {
  FakeWS.all = [];
  vi.useFakeTimers();
  vi.stubGlobal("WebSocket", FakeWS);
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

function connected() {
  const hook = renderHook(() => useHypivisor(ep, null));
  const ws = FakeWS.all[0];
  act(() => ws.open());
  act(() => ws.recv({ event: "init", nodes: [node("a", 8001), node("b", 8002)], protocol_version: "1" }));
  return { hook, ws };
}

describe("useHypivisor: a clean hypivisor stop is handled like a crash", () => {
  it("nodes reported offline as the hypivisor went away (close 1001) are listed active again", () => {
    const { hook, ws } = connected();
    act(() => {
      ws.recv({ event: "node_offline", id: "a" });
      ws.recv({ event: "node_offline", id: "b" });
    });
    expect(hook.result.current.roster.nodes.a.status).toBe("offline");
    act(() => vi.advanceTimersByTime(100));
    act(() => ws.drop(1001));
    expect(hook.result.current.phase).toBe("reconnecting");
    expect(hook.result.current.roster.nodes.a).toMatchObject({ status: "active", port: 8001 });
    expect(hook.result.current.roster.nodes.b).toMatchObject({ status: "active", port: 8002 });
  });

  it("asks for the roster in chunks; a chunk's nodes are listed and known like joined ones", () => {
    const { hook, ws } = connected();
    expect(ws.url).toBe("ws://h:1/ws?roster=chunks");
    act(() => ws.recv({ event: "nodes_joined", nodes: [node("c", 8003), node("a", 8011)] }));
    expect(hook.result.current.roster.order).toEqual(["a", "b", "c"]);
    expect(hook.result.current.roster.nodes.a.port).toBe(8011);
    act(() => ws.recv({ event: "node_offline", id: "c" }));
    act(() => ws.drop(1001));
    expect(hook.result.current.roster.nodes.c).toMatchObject({ status: "active", port: 8003 });
  });

  it("the same for a close without a code: the registry socket just ended", () => {
    const { hook, ws } = connected();
    act(() => ws.recv({ event: "node_offline", id: "b" }));
    act(() => ws.drop(1006));
    expect(hook.result.current.roster.nodes.b.status).toBe("active");
  });

  it("an agent that went offline well before the hypivisor stopped stays offline", () => {
    const { hook, ws } = connected();
    act(() => ws.recv({ event: "node_offline", id: "a" }));
    act(() => vi.advanceTimersByTime(10_000));
    act(() => ws.recv({ event: "node_offline", id: "b" }));
    act(() => ws.drop(1001));
    expect(hook.result.current.roster.nodes.a.status).toBe("offline");
    expect(hook.result.current.roster.nodes.b.status).toBe("active");
  });

  it("a node that came back before the close is left as the registry said", () => {
    const { hook, ws } = connected();
    act(() => ws.recv({ event: "node_offline", id: "a" }));
    act(() => ws.recv({ event: "node_removed", id: "a" }));
    act(() => ws.drop(1001));
    expect(hook.result.current.roster.nodes.a).toBeUndefined();
  });
});
