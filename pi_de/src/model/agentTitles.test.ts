import { describe, expect, it } from "vitest";
import { agentTitles, baseTitle } from "./agentTitles";

const node = (id: string, extra: Record<string, unknown> = {}) => ({ id, machine: "m", cwd: "/home/u/api", port: 1, ...extra });

describe("agentTitles", () => {
  it("names an agent after its session, else its folder", () => {
    expect(baseTitle({ cwd: "/home/u/api", session_name: "  " })).toBe("api");
    expect(agentTitles([node("a", { session_name: "fix login" })])).toEqual({ a: "fix login" });
  });

  it("tells two unnamed agents in one folder apart, in the order they started, whatever the list order", () => {
    const first = node("zz", { started_at: 100 });
    const second = node("aa", { started_at: 200 });
    const want = { zz: "api", aa: "api · 2" };
    expect(agentTitles([first, second])).toEqual(want);
    expect(agentTitles([second, first])).toEqual(want); // a reload may list them in another order
  });

  it("falls back to the id when the start time is unknown, and leaves distinct titles alone", () => {
    expect(agentTitles([node("b"), node("a"), node("c", { cwd: "/home/u/web" })])).toEqual({ a: "api", b: "api · 2", c: "web" });
  });

  it("counts equal session names too, but not the same title on two machines", () => {
    const t = agentTitles([node("a", { session_name: "x", started_at: 1 }), node("b", { session_name: "x", started_at: 2 }), node("c", { machine: "n" })]);
    expect(t).toEqual({ a: "x", b: "x · 2", c: "api" });
  });
});
