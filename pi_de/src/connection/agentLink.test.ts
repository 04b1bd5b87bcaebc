import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { AgentServerFrame } from "../protocol/frames";
import { AgentLinkMachine, type AgentLinkDeps, type LinkSocket } from "./agentLink";
import { DIRECT_OPEN_TIMEOUT_MS, type DirectTarget, type Route } from "./fallback";

class Sock implements LinkSocket {
  readyState = 0;
  sent: string[] = [];
  closed = false;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: unknown) => void) | null = null;
  constructor(public url: string) {}
  send(d: string) {
    this.sent.push(d);
  }
  close() {
    this.closed = true;
  }
  open() {
    this.readyState = 1;
    this.onopen?.(null);
  }
  recv(f: unknown) {
    this.onmessage?.({ data: typeof f === "string" ? f : JSON.stringify(f) });
  }
  drop() {
    this.readyState = 3;
    this.onclose?.(null);
  }
}

function rig(opts: { active?: boolean; registryUp?: boolean; target?: DirectTarget | null; direct?: string[] } = {}) {
  const socks: Sock[] = [];
  const log: string[] = [];
  const frames: AgentServerFrame[] = [];
  const world = { active: opts.active ?? true, registryUp: opts.registryUp ?? true, target: opts.target ?? null, direct: opts.direct ?? [] };
  const deps: AgentLinkDeps = {
    open: (url) => {
      if (url.startsWith("bad:")) throw new Error("refused");
      const s = new Sock(url);
      socks.push(s);
      return s;
    },
    proxyUrl: "ws://hv/ws/agent/n1",
    directUrls: () => world.direct,
    isActive: () => world.active,
    registryUp: () => world.registryUp,
    target: () => world.target,
    onFrame: (f) => frames.push(f),
    onStatus: (s) => log.push(s),
    onRoute: (r: Route | null) => log.push(`route:${r}`),
    onOpen: (send) => send("resent"),
  };
  const m = new AgentLinkMachine(deps);
  return { m, socks, log, frames, world, last: () => socks[socks.length - 1] };
}

const INIT = { type: "init_state", node: { id: "n1", cwd: "/", machine: "m", port: 1 }, messages: [] };

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe("AgentLinkMachine", () => {
  it("dials the proxy, resends on open, reports the route after init_state and passes frames on", () => {
    const { m, socks, log, frames, last } = rig();
    m.start();
    expect(socks.map((s) => s.url)).toEqual(["ws://hv/ws/agent/n1"]);
    expect(m.send("x")).toBe(false); // not open yet
    last().open();
    expect(last().sent).toEqual(["resent"]);
    last().recv(INIT);
    last().recv({ type: "agent_start" });
    last().recv("not json");
    last().recv({ no: "type" });
    last().recv(null);
    expect(frames.map((f) => f.type)).toEqual(["init_state", "agent_start"]);
    expect(log).toEqual(["connecting", "route:proxy"]);
    expect(m.send("y")).toBe(true);
    expect(last().sent).toEqual(["resent", "y"]);
  });

  it("redials the proxy with backoff after a drop, and a healthy link resets the backoff", () => {
    const { m, socks, log, last } = rig();
    m.start();
    last().open();
    last().recv(INIT);
    last().drop();
    expect(log.slice(-2)).toEqual(["route:null", "lost"]);
    expect(socks).toHaveLength(1);
    vi.advanceTimersByTime(999);
    expect(socks).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(socks).toHaveLength(2); // 1 s after a healthy link
    last().drop(); // never opened: next wait doubles
    vi.advanceTimersByTime(1999);
    expect(socks).toHaveLength(2);
    vi.advanceTimersByTime(1);
    expect(socks).toHaveLength(3);
  });

  it("waits instead of dialling while the node is inactive, and dials when it is active again", () => {
    const { m, socks, log, world } = rig({ active: false });
    m.start();
    expect(socks).toHaveLength(0);
    expect(log).toEqual(["lost"]);
    m.setActive(true);
    expect(socks).toHaveLength(1);
    world.active = true;
    m.setActive(true); // not waiting any more: no second socket
    expect(socks).toHaveLength(1);
  });

  it("an inactive node drops a proxy link, but a healthy direct link stays", () => {
    const { m, socks, log, world, last } = rig({ registryUp: false, target: { port: 7000, machine: "box" }, direct: ["ws://box:7000/ws"] });
    m.start();
    last().drop(); // the proxy is down and the registry too: go direct at once
    expect(last().url).toBe("ws://box:7000/ws");
    last().open();
    last().recv(INIT);
    expect(log).toContain("route:direct");
    world.active = false;
    m.setActive(false);
    expect(last().closed).toBe(false);
    expect(socks).toHaveLength(2);
  });

  it("a direct socket that does not open in time is dropped and the next candidate tried", () => {
    const { m, socks, last } = rig({ registryUp: false, target: { port: 7000, machine: "box" }, direct: ["bad:x", "ws://a:7000/ws", "ws://b:7000/ws"] });
    m.start();
    last().drop();
    expect(last().url).toBe("ws://a:7000/ws"); // bad: threw, skipped
    vi.advanceTimersByTime(DIRECT_OPEN_TIMEOUT_MS);
    expect(socks[1].closed).toBe(true);
    expect(last().url).toBe("ws://b:7000/ws");
  });

  it("after stop nothing reports and no timer dials again", () => {
    const { m, socks, log, frames, last } = rig();
    m.start();
    const s = last();
    m.stop();
    expect(s.closed).toBe(true);
    const before = log.length;
    s.recv(INIT); // handlers were detached; a late event does nothing
    s.drop();
    m.setActive(false);
    vi.advanceTimersByTime(60_000);
    expect(log.length).toBe(before);
    expect(frames).toHaveLength(0);
    expect(socks).toHaveLength(1);
    expect(m.send("x")).toBe(false);
  });
});
