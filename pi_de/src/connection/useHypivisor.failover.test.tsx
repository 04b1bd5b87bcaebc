// The registry link's fail-over to the peers the page's own hypivisor named (specs/cluster.md §8), with a
// scriptable WebSocket: which URL is tried when, with which token, and which hypivisor `endpoints` names.
import { act, renderHook } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { useHypivisor } from "./useHypivisor";

class FakeWS {
  static all: FakeWS[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((e: { data: string }) => void) | null = null;
  onclose: ((e: { code: number }) => void) | null = null;
  constructor(
    public url: string,
    public protocols: string[],
  ) {
    FakeWS.all.push(this);
  }
  send() {}
  close() {}
  open() {
    this.onopen?.();
  }
  recv(f: object) {
    this.onmessage?.({ data: JSON.stringify(f) });
  }
  drop() {
    this.onclose?.({ code: 1006 });
  }
}

const own = { wsBase: "ws://a:5180", httpBase: "http://a:5180", sameOrigin: true };
const node = (id: string) => ({ id, machine: "box", cwd: `/p/${id}`, port: 8001, status: "active", pid: 1 });
const init = (ids: string[], peers?: unknown) => ({ event: "init", nodes: ids.map(node), protocol_version: "1", ...(peers ? { peers } : {}) });
const last = () => FakeWS.all[FakeWS.all.length - 1];

beforeEach(() => {
  FakeWS.all = [];
  vi.useFakeTimers();
  vi.stubGlobal("WebSocket", FakeWS);
  vi.stubGlobal("fetch", vi.fn(async () => ({ status: 200 })));
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

function onOwn(token: string | null, peers: unknown, endpoints = own) {
  const hook = renderHook(() => useHypivisor(endpoints, token));
  const ws = FakeWS.all[0];
  act(() => ws.open());
  act(() => ws.recv(init(["x"], peers)));
  return hook;
}

describe("useHypivisor: fail-over to the own hypivisor's peers", () => {
  it("moves to the next peer at once, shows its roster, names it, and sends the own token there", async () => {
    const hook = onOwn("tok", ["http://b:5181", "https://c.example"]);
    expect(hook.result.current.endpoints).toBe(own);
    expect(hook.result.current.canFailOver).toBe(true);
    await act(async () => FakeWS.all[0].drop());
    expect(hook.result.current.phase).toBe("reconnecting");
    act(() => vi.advanceTimersByTime(0));
    const b = last();
    expect(b.url).toBe("ws://b:5181/ws?roster=chunks");
    expect(b.protocols).toEqual(FakeWS.all[0].protocols); // the own origin's token, because A named B
    act(() => b.open());
    act(() => b.recv(init(["y"], ["http://evil:1"])));
    expect(hook.result.current.phase).toBe("connected");
    expect(hook.result.current.endpoints).toMatchObject({ wsBase: "ws://b:5181", sameOrigin: false });
    expect(Object.keys(hook.result.current.roster.nodes)).toEqual(["y"]);
    // sticky on B; when B is lost the next is C (a peer's own peers were ignored), then A, with the backoff
    await act(async () => b.drop());
    act(() => vi.advanceTimersByTime(0));
    expect(last().url).toBe("wss://c.example/ws?roster=chunks");
    await act(async () => last().drop());
    act(() => vi.advanceTimersByTime(999));
    expect(last().url).toBe("wss://c.example/ws?roster=chunks");
    act(() => vi.advanceTimersByTime(1));
    expect(last().url).toBe("ws://a:5180/ws?roster=chunks");
    act(() => last().open());
    expect(hook.result.current.endpoints).toBe(own);
  });

  it("a lone hypivisor, or one that named no peers, is retried with the backoff as before", async () => {
    const hook = onOwn("tok", undefined);
    expect(hook.result.current.canFailOver).toBe(false);
    await act(async () => FakeWS.all[0].drop());
    act(() => vi.advanceTimersByTime(999));
    expect(FakeWS.all).toHaveLength(1);
    act(() => vi.advanceTimersByTime(1));
    expect(last().url).toBe("ws://a:5180/ws?roster=chunks");
    expect(hook.result.current.endpoints).toBe(own);
  });

  it("peers are not taken without a token (no authenticated link) nor when the page points elsewhere", async () => {
    for (const [token, endpoints] of [
      [null, own],
      ["tok", { ...own, sameOrigin: false }],
    ] as const) {
      FakeWS.all = [];
      const hook = onOwn(token, ["http://b:5181"], endpoints);
      await act(async () => FakeWS.all[0].drop());
      act(() => vi.advanceTimersByTime(1000));
      expect(FakeWS.all.map((w) => w.url)).toEqual(["ws://a:5180/ws?roster=chunks", "ws://a:5180/ws?roster=chunks"]);
      hook.unmount();
    }
  });
});
