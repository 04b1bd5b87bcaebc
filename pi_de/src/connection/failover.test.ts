// The same cases as the Python Failover's (pi_socket/tests/test_hypivisors.py): one rule set for every client.
import { describe, expect, it } from "vitest";
import { endpointsOf, Failover, hostOf, MAX_PEERS, peerBases } from "./failover";

const A = "ws://a:5180";
const B = "ws://b:5180";
const C = "wss://c.example";

describe("Failover (the rules of pi_socket/hypivisors.py)", () => {
  it("one URL backs off as before: 1 s doubling to 10 s, reset by a success", () => {
    const f = new Failover([A]);
    expect([1, 2, 3, 4, 5, 6].map(() => f.failed())).toEqual([1000, 2000, 4000, 8000, 10000, 10000]);
    expect(f.url).toBe(A);
    f.succeeded();
    expect(f.failed()).toBe(1000);
  });

  it("a list moves on at once, then one backoff sequence across the whole list", () => {
    const f = new Failover([A, B, C]);
    expect(f.url).toBe(A);
    expect([f.failed(), f.url]).toEqual([0, B]);
    expect([f.failed(), f.url]).toEqual([1000, C]);
    expect([f.failed(), f.url]).toEqual([2000, A]);
    expect([f.failed(), f.url]).toEqual([4000, B]);
  });

  it("sticks to the one that works and moves on when it is lost", () => {
    const f = new Failover([A, B]);
    f.failed(); // A down: B at once
    f.succeeded();
    expect(f.url).toBe(B); // no return to A while B works
    expect([f.failed(), f.url]).toEqual([0, A]); // B lost: A at once
    expect([f.failed(), f.url]).toEqual([1000, B]);
    f.succeeded();
    expect([f.failed(), f.url]).toEqual([0, A]); // a success resets the immediate fail-over and the backoff
    expect(f.failed()).toBe(1000);
  });

  it("needs a URL; duplicates are dropped", () => {
    expect(() => new Failover([])).toThrow();
    expect(new Failover([A, B, A]).urls).toEqual([A, B]);
  });

  it("a new list keeps the current URL current, else starts from the first", () => {
    const f = new Failover([A]);
    f.setUrls([A, B, C]);
    expect(f.url).toBe(A);
    expect([f.failed(), f.url]).toEqual([0, B]);
    f.succeeded();
    f.setUrls([A, C, B]);
    expect(f.url).toBe(B);
    f.setUrls([A]);
    expect(f.url).toBe(A);
    f.setUrls([]); // ignored: there is always one
    expect(f.urls).toEqual([A]);
  });
});

describe("peerBases: the init's peers as WebSocket bases", () => {
  it("maps http(s) origins to ws(s), in order, without the own one or duplicates", () => {
    expect(peerBases(["http://b:5180", "https://C.Example/", "http://b:5180", "http://a:5180"], A)).toEqual([B, C]);
    expect(peerBases(["http://[::1]:5181"], A)).toEqual(["ws://[::1]:5181"]);
  });
  it("skips anything that is not a plain origin, and takes at most 16", () => {
    const odd = ["ws://b:1", "http://b:1/ws", "http://u@b:1", "javascript:alert(1)", "http://b c:1", 42, null, "http://" + "x".repeat(400)];
    expect(peerBases(odd, A)).toEqual([]);
    expect(peerBases(undefined, A)).toEqual([]);
    expect(peerBases("http://b:1", A)).toEqual([]);
    expect(peerBases(Array.from({ length: 20 }, (_, i) => `http://h${i}:1`), A)).toHaveLength(MAX_PEERS);
  });
});

describe("endpointsOf / hostOf", () => {
  const own = { wsBase: A, httpBase: "http://a:5180", sameOrigin: true };
  it("the own hypivisor keeps its endpoints; a peer is never same-origin", () => {
    expect(endpointsOf(A, own)).toBe(own);
    expect(endpointsOf(C, own)).toEqual({ wsBase: C, httpBase: "https://c.example", sameOrigin: false });
  });
  it("shows host:port", () => {
    expect(hostOf(B)).toBe("b:5180");
    expect(hostOf(C)).toBe("c.example");
  });
});
