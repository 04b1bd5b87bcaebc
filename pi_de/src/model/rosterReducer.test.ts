import { describe, expect, it } from "vitest";
import type { NodeInfo } from "../protocol/types";
import { emptyRoster, groupByProject, MAX_EXITED, rosterReducer } from "./rosterReducer";

const node = (id: string, cwd: string, extra: Partial<NodeInfo> = {}): NodeInfo => ({ id, machine: "m", cwd, port: 1000, ...extra });

describe("roster reducer", () => {
  it("applies init, join, update, offline and removal", () => {
    let s = rosterReducer(emptyRoster, { event: "init", nodes: [node("a", "/h/app")], protocol_version: "1" });
    s = rosterReducer(s, { event: "node_joined", node: node("b", "/h/app") });
    s = rosterReducer(s, { event: "node_updated", node: node("a", "/h/app", { activity: "working" }) });
    expect(s.order).toEqual(["a", "b"]);
    expect(s.nodes.a.activity).toBe("working");
    s = rosterReducer(s, { event: "node_offline", id: "a" });
    expect(s.nodes.a.status).toBe("offline");
    s = rosterReducer(s, { event: "node_removed", id: "b" });
    expect(Object.keys(s.nodes)).toEqual(["a"]);
  });

  it("never dedupes agents that share a folder", () => {
    let s = rosterReducer(emptyRoster, { event: "init", nodes: [] });
    for (const id of ["x", "y", "z"]) s = rosterReducer(s, { event: "node_joined", node: node(id, "/h/same") });
    const groups = groupByProject(s);
    expect(groups).toHaveLength(1);
    expect(groups[0].nodes.map((n) => n.id)).toEqual(["x", "y", "z"]);
  });

  it("keeps same-named folders at different paths apart", () => {
    const s = rosterReducer(emptyRoster, { event: "init", nodes: [node("a", "/h/one/app"), node("b", "/h/two/app"), node("c", "/h/api")] });
    expect(groupByProject(s).map((g) => [g.name, g.cwd])).toEqual([
      ["api", "/h/api"],
      ["app", "/h/one/app"],
      ["app", "/h/two/app"],
    ]);
  });
});

describe("agents whose pi exited", () => {
  const base = () => rosterReducer(emptyRoster, { event: "init", nodes: [node("a", "/h/app", { session_name: "fix it" }), node("b", "/h/app")] });

  it("keeps a deregistered node as exited, with when and what it was", () => {
    const s = rosterReducer(base(), { event: "node_removed", id: "a", reason: "deregistered", receivedAt: 1234 });
    expect(s.nodes.a).toBeUndefined();
    expect(s.order).toEqual(["b"]);
    expect(s.exited.a).toEqual({ node: node("a", "/h/app", { session_name: "fix it" }), at: 1234 });
  });

  it("does not call eviction, the ttl sweep or a ghost an exit", () => {
    for (const reason of ["evicted", "ttl", "ghost", null] as const) {
      const s = rosterReducer(base(), { event: "node_removed", id: "a", reason });
      expect(s.exited).toEqual({});
      expect(s.nodes.a).toBeUndefined();
    }
  });

  it("forgets the exit when the same id registers again, and across a new init", () => {
    let s = rosterReducer(base(), { event: "node_removed", id: "a", reason: "deregistered", receivedAt: 1 });
    s = rosterReducer(s, { event: "node_joined", node: node("a", "/h/app") });
    expect(s.exited).toEqual({});
    s = rosterReducer(s, { event: "node_removed", id: "b", reason: "deregistered", receivedAt: 2 });
    s = rosterReducer(s, { event: "init", nodes: [node("a", "/h/app")] });
    expect(Object.keys(s.exited)).toEqual(["b"]); // a hypivisor restart does not bring an exited pi back
    s = rosterReducer(s, { event: "init", nodes: [node("b", "/h/app")] });
    expect(s.exited).toEqual({});
  });

  it("keeps only the latest MAX_EXITED", () => {
    let s = emptyRoster;
    for (let i = 0; i < MAX_EXITED + 5; i++) {
      s = rosterReducer(s, { event: "node_joined", node: node(`n${i}`, "/h") });
      s = rosterReducer(s, { event: "node_removed", id: `n${i}`, reason: "deregistered", receivedAt: i });
    }
    expect(Object.keys(s.exited)).toHaveLength(MAX_EXITED);
    expect(s.exited.n0).toBeUndefined();
    expect(s.exited[`n${MAX_EXITED + 4}`]).toBeDefined();
  });

  it("a nodes_joined chunk is the same roster as one node_joined per node, in one copy", () => {
    // random rosters and chunks (with repeats, known ids and exited ones) against the one-by-one reducer
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let round = 0; round < 50; round++) {
      let base = rosterReducer(emptyRoster, { event: "init", nodes: Array.from({ length: rnd(5) }, (_, i) => node(`n${i}`, "/h")) });
      base = rosterReducer(base, { event: "node_joined", node: node("gone", "/h") });
      base = rosterReducer(base, { event: "node_removed", id: "gone", reason: "deregistered", receivedAt: 1 });
      const chunk = Array.from({ length: rnd(8) }, (_, i) => node(rnd(3) ? `n${rnd(10)}` : "gone", `/h/${round}-${i}`));
      let one = base;
      for (const n of chunk) one = rosterReducer(one, { event: "node_joined", node: n });
      const many = rosterReducer(base, { event: "nodes_joined", nodes: chunk });
      expect(many).toEqual(one);
    }
    const s = rosterReducer(emptyRoster, { event: "init", nodes: [] });
    expect(rosterReducer(s, { event: "nodes_joined", nodes: [] })).toBe(s);
  });
});
