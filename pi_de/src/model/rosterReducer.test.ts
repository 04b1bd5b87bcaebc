import { describe, expect, it } from "vitest";
import type { NodeInfo } from "../protocol/types";
import { emptyRoster, groupByProject, rosterReducer } from "./rosterReducer";

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
