import { describe, expect, it } from "vitest";
import { agentTitles, baseTitle, titlesWithExited } from "./agentTitles";

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

  it("keeps the live cards' titles beside an exited agent, and tells the exited one apart", () => {
    const early = node("old", { started_at: 1 });
    const late = node("new", { started_at: 2 });
    // the exited agent started first: the live one is plain "api" on its card, so the exited one says so
    expect(titlesWithExited([late], early)).toEqual({ new: "api", old: "api · exited" });
    // the exited agent started second: it keeps "api · 2", the title it had
    expect(titlesWithExited([early], late)).toEqual({ old: "api", new: "api · 2" });
    // another machine, or nothing open: no suffix
    expect(titlesWithExited([late], node("x", { machine: "n", started_at: 0 }))).toEqual({ new: "api", x: "api" });
    expect(titlesWithExited([late], undefined)).toEqual({ new: "api" });
  });
});
