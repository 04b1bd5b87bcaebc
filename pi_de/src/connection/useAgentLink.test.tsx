import { act, renderHook } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { useAgentLink } from "./useAgentLink";

// A scriptable stand-in for the browser WebSocket: tests open, feed and drop links by hand.
class FakeWS {
  static all: FakeWS[] = [];
  static OPEN = 1;
  readyState = 0;
  sent: any[] = [];
  /** list_models frames (asked for on every init_state), kept apart so `sent` shows what a test does. */
  asked: any[] = [];
  closed = false;
  onopen: (() => void) | null = null;
  onmessage: ((e: { data: string }) => void) | null = null;
  onclose: (() => void) | null = null;
  constructor(
    public url: string,
    public protocols: string[],
  ) {
    FakeWS.all.push(this);
  }
  send(d: string) {
    const f = JSON.parse(d);
    (f.type === "list_models" ? this.asked : this.sent).push(f);
  }
  close() {
    this.closed = true;
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  recv(f: object) {
    this.onmessage?.({ data: JSON.stringify(f) });
  }
  drop() {
    this.readyState = 3;
    this.onclose?.();
  }
}

const ep = { wsBase: "ws://h:1", httpBase: "http://h:1", sameOrigin: true };
const init = (extra = {}) => ({ type: "init_state", node: {}, messages: [], total_messages: 0, cursor: 0, capabilities: ["remote_commands"], ...extra });

beforeEach(() => {
  FakeWS.all = [];
  vi.useFakeTimers();
  vi.stubGlobal("WebSocket", FakeWS);
  // deliver batched frames synchronously-ish: rAF → timer
  vi.stubGlobal("requestAnimationFrame", (cb: () => void) => setTimeout(cb, 0));
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

const flush = () => act(() => vi.advanceTimersByTime(150));

describe("useAgentLink", () => {
  it("connects with the token subprotocols to /ws/agent/<id>", () => {
    renderHook(() => useAgentLink(ep, "tok", "node-1", true));
    expect(FakeWS.all[0].url).toBe("ws://h:1/ws/agent/node-1");
    expect(FakeWS.all[0].protocols).toEqual(["hypi.v1", "hypi-token.dG9r"]);
  });

  it("resends an unacknowledged prompt after a reconnect with the same id, exactly once", async () => {
    const { result } = renderHook(() => useAgentLink(ep, null, "n", true));
    const ws1 = FakeWS.all[0];
    act(() => ws1.open());
    act(() => ws1.recv(init()));
    await flush();
    act(() => result.current.sendPrompt("hello"));
    const id = ws1.sent[0].id;
    expect(ws1.sent[0]).toMatchObject({ type: "prompt", text: "hello" });
    act(() => ws1.drop());
    await flush();
    expect(result.current.view.status).toBe("lost");
    act(() => vi.advanceTimersByTime(1000)); // first backoff step
    const ws2 = FakeWS.all[1];
    act(() => ws2.open());
    expect(ws2.sent).toEqual([expect.objectContaining({ type: "prompt", id, text: "hello" })]);
    act(() => ws2.recv(init()));
    act(() => ws2.recv({ type: "ack", id }));
    await flush();
    expect(result.current.view.pending).toEqual([expect.objectContaining({ id, state: "acked" })]);
    // a second reconnect does not resend an acknowledged prompt
    act(() => ws2.drop());
    act(() => vi.advanceTimersByTime(1000));
    act(() => FakeWS.all[2].open());
    expect(FakeWS.all[2].sent).toEqual([]);
  });

  it("while the agent runs: a steer goes at once, a follow-up is held (editable, cancellable) until the run ends; abort", async () => {
    const { result } = renderHook(() => useAgentLink(ep, null, "n", true));
    const ws = FakeWS.all[0];
    act(() => (ws.open(), ws.recv(init({ is_streaming: true, partial: { role: "assistant", content: [] } }))));
    await flush();
    act(() => result.current.sendPrompt("change of plan", [], { deliverAs: "steer" }));
    expect(ws.sent).toEqual([expect.objectContaining({ type: "prompt", text: "change of plan", deliver_as: "steer" })]);
    act(() => result.current.sendPrompt("and also"));
    act(() => result.current.sendPrompt("and this too"));
    expect(ws.sent).toHaveLength(1); // held here, not in pi's queue
    const [, held, other] = result.current.view.pending;
    expect(held).toMatchObject({ text: "and also", state: "held" });
    act(() => result.current.editHeld(held.id, "and also, edited"));
    act(() => result.current.dropHeld(other.id));
    expect(result.current.view.pending.map((p) => p.text)).toEqual(["change of plan", "and also, edited"]);
    act(() => result.current.abort());
    expect(ws.sent[1]).toEqual({ type: "abort" });
    act(() => ws.recv({ type: "agent_end" }));
    await flush();
    // the run ended: the follow-up goes now, as an ordinary prompt with the edited text
    expect(ws.sent[2]).toEqual({ type: "prompt", id: held.id, text: "and also, edited" });
    expect(ws.sent).toHaveLength(3);
    expect(result.current.view.pending.find((p) => p.id === held.id)?.state).toBe("sending");
  });

  it("asks for pi's models on every init_state, and sends pickers' and commands' frames", async () => {
    const { result } = renderHook(() => useAgentLink(ep, null, "n", true));
    const ws = FakeWS.all[0];
    act(() => (ws.open(), ws.recv(init())));
    await flush();
    expect(ws.asked).toEqual([{ type: "list_models" }]);
    act(() => ws.recv(init()));
    await flush();
    expect(ws.asked).toHaveLength(2);
    act(() => ws.recv(init({ capabilities: [] }))); // a bridge without them is not asked
    await flush();
    expect(ws.asked).toHaveLength(2);
    act(() => (result.current.setModel("fake", "fake-vision"), result.current.setThinkingLevel("high"), result.current.runCommand("compact", "short")));
    expect(ws.sent.slice(0, 2)).toEqual([
      { type: "set_model", provider: "fake", id: "fake-vision" },
      { type: "set_thinking_level", level: "high" },
    ]);
    expect(ws.sent[2]).toMatchObject({ type: "run_command", name: "compact", args: "short" });
    expect(result.current.view.command).toEqual({ id: ws.sent[2].id, name: "compact" });
    act(() => ws.recv({ type: "ack", id: ws.sent[2].id }));
    await flush();
    expect(result.current.view.command).toBeNull();
    expect(result.current.view.notice).toBe("Conversation compacted");
  });

  it("switching agents closes the old link and ignores its late frames", async () => {
    const { result, rerender } = renderHook(({ id }) => useAgentLink(ep, null, id, true), { initialProps: { id: "a" } });
    const wa = FakeWS.all[0];
    act(() => (wa.open(), wa.recv(init({ messages: [{ role: "user", content: "from A" }], total_messages: 1 }))));
    await flush();
    rerender({ id: "b" });
    expect(wa.closed).toBe(true);
    expect(wa.onmessage).toBeNull();
    const wb = FakeWS.all[1];
    act(() => wb.open());
    act(() => wb.recv(init({ messages: [{ role: "user", content: "from B" }], total_messages: 1 })));
    await flush();
    expect(result.current.view.messages.map((m) => m.content)).toEqual(["from B"]);
  });

  it("does not connect to an offline agent, and asks for older pages from the cursor once", async () => {
    renderHook(() => useAgentLink(ep, null, "n", false));
    expect(FakeWS.all).toHaveLength(0);
    const { result } = renderHook(() => useAgentLink(ep, null, "m", true));
    const ws = FakeWS.all[0];
    act(() => (ws.open(), ws.recv(init({ messages: [{ role: "user", content: "x" }], total_messages: 80, cursor: 79, truncated: true }))));
    await flush();
    act(() => (result.current.fetchOlder(), result.current.fetchOlder()));
    expect(ws.sent).toEqual([{ type: "fetch_history", before: 79, limit: 50 }]);
  });

  describe("direct fallback while the hypivisor is down", () => {
    const page = { hostname: "127.0.0.1", protocol: "http:" };
    const target = { port: 8123, machine: "devbox" };
    type P = { registryUp: boolean; active: boolean };
    const mount = (initial: P = { registryUp: true, active: true }) =>
      renderHook(({ registryUp, active }: P) => useAgentLink(ep, "tok", "n", active, { registryUp, target, page }), { initialProps: initial });
    const openSockets = () => FakeWS.all.filter((w) => !w.closed && w.readyState !== 3);

    it("registry down and the proxied link drops: the bridge's own port at once, same token, pending prompt resent once", async () => {
      const { result, rerender } = mount();
      const proxy = FakeWS.all[0];
      act(() => (proxy.open(), proxy.recv(init())));
      await flush();
      expect(result.current.route).toBe("proxy");
      act(() => result.current.sendPrompt("while it dies"));
      const id = proxy.sent[0].id;
      rerender({ registryUp: false, active: true });
      act(() => proxy.drop());
      const d = FakeWS.all[1];
      expect(d.url).toBe("ws://127.0.0.1:8123/");
      expect(d.protocols).toEqual(["hypi.v1", "hypi-token.dG9r"]);
      act(() => d.open());
      expect(d.sent).toEqual([expect.objectContaining({ type: "prompt", id, text: "while it dies" })]);
      act(() => (d.recv(init()), d.recv({ type: "ack", id, duplicate: false })));
      await flush();
      expect(result.current.route).toBe("direct");
      expect(result.current.view.status).toBe("open");
      expect(openSockets()).toEqual([d]);
      // the hypivisor comes back: the working direct link stays, no second socket is opened
      rerender({ registryUp: true, active: true });
      act(() => vi.advanceTimersByTime(30_000));
      expect(FakeWS.all).toHaveLength(2);
      expect(result.current.route).toBe("direct");
      // when it drops, the proxy again, at once
      act(() => d.drop());
      expect(FakeWS.all[2].url).toBe("ws://h:1/ws/agent/n");
      expect(FakeWS.all[2].sent).toEqual([]); // the acked prompt is not resent
    });

    it("a proxy attempt that never opens: candidates one at a time, each with a short timeout, then the proxy", async () => {
      const { result } = mount();
      const proxy = FakeWS.all[0];
      act(() => (proxy.open(), proxy.recv(init())));
      await flush();
      act(() => proxy.drop()); // registry still looks up: the proxy is retried first
      act(() => vi.advanceTimersByTime(1000));
      const retry = FakeWS.all[1];
      expect(retry.url).toBe("ws://h:1/ws/agent/n");
      act(() => retry.drop()); // refused before the upgrade: hypivisor unreachable
      const first = FakeWS.all[2];
      expect(first.url).toBe("ws://127.0.0.1:8123/");
      act(() => vi.advanceTimersByTime(1499));
      expect(FakeWS.all).toHaveLength(3);
      act(() => vi.advanceTimersByTime(1)); // open timeout: closed and forgotten before the next one
      expect(first.closed).toBe(true);
      expect(first.onmessage).toBeNull();
      const second = FakeWS.all[3];
      expect(second.url).toBe("ws://devbox:8123/");
      expect(openSockets()).toEqual([second]);
      act(() => second.drop());
      expect(FakeWS.all).toHaveLength(4);
      act(() => vi.advanceTimersByTime(1999));
      expect(FakeWS.all).toHaveLength(4);
      act(() => vi.advanceTimersByTime(1)); // back to the proxy after the next backoff step (1 s, 2 s, …)
      expect(FakeWS.all[4].url).toBe("ws://h:1/ws/agent/n");
      // a late frame from the timed-out candidate never reaches the view
      act(() => first.recv(init({ messages: [{ role: "user", content: "stale" }], total_messages: 1 })));
      await flush();
      expect(result.current.view.messages.map((m) => m.content)).toEqual([]);
    });

    it("a restarted registry that does not list the node yet leaves a working direct link alone", async () => {
      const { result, rerender } = mount({ registryUp: false, active: true });
      const proxy = FakeWS.all[0];
      act(() => proxy.drop());
      const d = FakeWS.all[1];
      act(() => (d.open(), d.recv(init())));
      await flush();
      expect(result.current.route).toBe("direct");
      rerender({ registryUp: true, active: false });
      expect(d.closed).toBe(false);
      expect(result.current.view.status).toBe("open");
      // the node gone from the registry and the direct link dropped: wait for the node, no dialling
      act(() => d.drop());
      act(() => vi.advanceTimersByTime(30_000));
      expect(FakeWS.all).toHaveLength(2);
      rerender({ registryUp: true, active: true });
      expect(FakeWS.all[2].url).toBe("ws://h:1/ws/agent/n");
    });

    it("hypivisor and agent both unreachable: proxy and direct alternate with the usual backoff, never a tight loop", () => {
      mount({ registryUp: false, active: true });
      const proxyTimes: number[] = [];
      for (let t = 0; t <= 60_000; t += 50) {
        for (const w of FakeWS.all) {
          if (w.readyState !== 0 || w.closed) continue;
          if (w.url.includes("/ws/agent/")) proxyTimes.push(t);
          act(() => w.drop()); // refused
        }
        act(() => vi.advanceTimersByTime(50));
      }
      const gaps = proxyTimes.slice(1).map((t, i) => t - proxyTimes[i]);
      expect(gaps.slice(0, 4)).toEqual([1000, 2000, 4000, 8000]);
      expect(Math.max(...gaps)).toBeLessThanOrEqual(10_000);
      expect(proxyTimes.length).toBeLessThan(12);
      // each proxy failure is followed by the two direct candidates, nothing else
      expect(FakeWS.all.length).toBe(proxyTimes.length * 3);
    });

    it("a proxied link is closed when the node goes offline (no fallback for an offline agent)", () => {
      const { rerender } = mount();
      const proxy = FakeWS.all[0];
      act(() => (proxy.open(), proxy.recv(init())));
      rerender({ registryUp: true, active: false });
      expect(proxy.closed).toBe(true);
      act(() => vi.advanceTimersByTime(30_000));
      expect(FakeWS.all).toHaveLength(1);
    });
  });
});
