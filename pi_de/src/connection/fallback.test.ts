import { describe, expect, it } from "vitest";
import { BACKOFF_MAX_MS } from "./backoff";
import { directUrls, GOING_AWAY_WINDOW_MS, nextStep, offlineWhileGoingAway, type LinkOutcome } from "./fallback";

const target = { port: 8123, machine: "devbox" };
const o = (x: Partial<LinkOutcome>): LinkOutcome => ({ route: "proxy", opened: true, registryUp: true, target, attempt: 0, ...x });

describe("nextStep (where the agent link goes after a socket ended)", () => {
  it("a proxied link that worked drops while the registry is up: back to the proxy with backoff", () => {
    expect(nextStep(o({}))).toEqual({ route: "proxy", delayMs: 1000 });
    expect(nextStep(o({ attempt: 3 }))).toEqual({ route: "proxy", delayMs: 8000 });
  });

  it("registry down when the proxied link drops: straight to the bridge, at once", () => {
    expect(nextStep(o({ registryUp: false }))).toEqual({ route: "direct", delayMs: 0 });
  });

  it("a proxy attempt that never opened means the hypivisor is unreachable: direct at once", () => {
    expect(nextStep(o({ opened: false }))).toEqual({ route: "direct", delayMs: 0 });
    expect(nextStep(o({ opened: false, registryUp: false, attempt: 4 }))).toEqual({ route: "direct", delayMs: 0 });
  });

  it("no direct route without a known port: the proxy is retried with backoff", () => {
    expect(nextStep(o({ registryUp: false, target: null, attempt: 2 }))).toEqual({ route: "proxy", delayMs: 4000 });
    expect(nextStep(o({ opened: false, target: { port: 0, machine: "x" } }))).toEqual({ route: "proxy", delayMs: 1000 });
  });

  it("every direct candidate failed: the proxy again, with growing backoff (no tight loop)", () => {
    expect(nextStep(o({ route: "direct", opened: false, registryUp: false }))).toEqual({ route: "proxy", delayMs: 1000 });
    expect(nextStep(o({ route: "direct", opened: false, registryUp: false, attempt: 30 }))).toEqual({ route: "proxy", delayMs: BACKOFF_MAX_MS });
  });

  it("a working direct link drops after the hypivisor came back: the proxy, at once", () => {
    expect(nextStep(o({ route: "direct", opened: true, registryUp: true }))).toEqual({ route: "proxy", delayMs: 0 });
  });

  it("a working direct link drops while the hypivisor is still down: direct again after a pause", () => {
    expect(nextStep(o({ route: "direct", opened: true, registryUp: false }))).toEqual({ route: "direct", delayMs: 1000 });
  });
});

describe("directUrls", () => {
  it("page hostname first, then the node's machine, without repeats", () => {
    expect(directUrls("127.0.0.1", target)).toEqual(["ws://127.0.0.1:8123/", "ws://devbox:8123/"]);
    expect(directUrls("devbox", target)).toEqual(["ws://devbox:8123/"]);
    expect(directUrls("", target)).toEqual(["ws://devbox:8123/"]);
  });

  it("IPv6 hosts get brackets (location.hostname already has them)", () => {
    expect(directUrls("[::1]", { port: 9, machine: "fe80::1" })).toEqual(["ws://[::1]:9/", "ws://[fe80::1]:9/"]);
  });

  it("none from an https page (a secure page cannot open the bridge's plain ws)", () => {
    expect(directUrls("example.org", target, "https:")).toEqual([]);
  });
});

describe("offlineWhileGoingAway (a clean hypivisor stop is handled like a crash)", () => {
  it("picks the nodes reported offline just before the registry socket closed", () => {
    const at = new Map([
      ["a", 10_000],
      ["b", 10_000 - GOING_AWAY_WINDOW_MS],
      ["old", 10_000 - GOING_AWAY_WINDOW_MS - 1],
    ]);
    expect(offlineWhileGoingAway(at, 10_000)).toEqual(["a", "b"]);
    expect(offlineWhileGoingAway(new Map(), 10_000)).toEqual([]);
  });
});
