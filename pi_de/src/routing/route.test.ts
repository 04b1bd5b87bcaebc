import { describe, expect, it } from "vitest";
import { parseRoute, routeHash, type Route } from "./route";

describe("routes", () => {
  it("parses every screen and falls back to the roster", () => {
    expect(parseRoute("")).toEqual({ screen: "home" });
    expect(parseRoute("#/")).toEqual({ screen: "home" });
    expect(parseRoute("#/spawn")).toEqual({ screen: "spawn" });
    expect(parseRoute("#/inbox/")).toEqual({ screen: "inbox" });
    expect(parseRoute("#/budget")).toEqual({ screen: "budget" });
    expect(parseRoute("#/agent/box-1234")).toEqual({ screen: "agent", id: "box-1234" });
    expect(parseRoute("#agent/box-1234")).toEqual({ screen: "agent", id: "box-1234" });
    expect(parseRoute("#/agent/")).toEqual({ screen: "home" });
    expect(parseRoute("#/agent/%E0%A4%A")).toEqual({ screen: "home" }); // malformed escape
    expect(parseRoute("#/nowhere")).toEqual({ screen: "home" });
  });

  it("round-trips any agent id, slashes, spaces and unicode included", () => {
    for (const id of ["a", "host-42", "a/b c", "名前#?&%", "../x"]) {
      const r: Route = { screen: "agent", id };
      const hash = routeHash(r);
      expect(hash.startsWith("#/agent/")).toBe(true);
      expect(hash.slice("#/agent/".length)).not.toMatch(/[/#? ]/);
      expect(parseRoute(hash)).toEqual(r);
    }
    for (const r of [
      { screen: "sessions" },
      { screen: "session", id: "0123abcd" },
      { screen: "session", id: "0123abcd", machine: "box b", entry: "e1/&?" },
    ] as Route[])
      expect(parseRoute(routeHash(r))).toEqual(r);
    expect(parseRoute("#/session/")).toEqual({ screen: "home" });
    for (const r of [{ screen: "home" }, { screen: "spawn" }, { screen: "inbox" }, { screen: "budget" }] as Route[]) expect(parseRoute(routeHash(r))).toEqual(r);
  });
});
