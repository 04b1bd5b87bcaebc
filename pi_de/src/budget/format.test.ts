import { describe, expect, it } from "vitest";
import { bars, budgetBadge, money, tokens, labelled, shortPath } from "./format";

describe("budget formatting", () => {
  it("money and tokens read well at every size and never show NaN", () => {
    expect(money(0)).toBe("$0");
    expect(money(0.004213)).toBe("$0.0042");
    expect(money(1.254)).toBe("$1.25");
    expect(money(1234.5)).toBe("$1,234.50");
    expect(money(Number.NaN)).toBe("$0");
    expect(money(-3)).toBe("$0");
    expect(money(undefined)).toBe("$0");
    expect(tokens(950)).toBe("950");
    expect(tokens(12_345)).toBe("12.3k");
    expect(tokens(4_500_000)).toBe("4.5M");
    expect(tokens(Number.POSITIVE_INFINITY)).toBe("0");
  });

  it("the badge shows from 80 % and says when runs are held", () => {
    expect(budgetBadge({})).toBeNull();
    expect(budgetBadge({ budget_level: null })).toBeNull();
    const near = budgetBadge({ budget_level: "near", budget_pct: 84.4, budget_note: "the day's budget (all agents) of $1" });
    expect(near).toEqual({ level: "near", text: "$ 84 %", title: "the day's budget (all agents) of $1: 84 % used" });
    expect(budgetBadge({ budget_level: "held", budget_pct: 120, budget_note: "this agent's budget of 50 tokens" })?.text).toBe("$ budget reached");
    expect(budgetBadge({ budget_level: "over", budget_pct: 130 })?.title).toBe("a budget: over budget on an override");
  });

  it("bars share the width, the tallest fills the height, small values stay visible", () => {
    const b = bars(
      [
        { key: "a", value: 0 },
        { key: "b", value: 10 },
        { key: "c", value: 0.001 },
        { key: "d", value: Number.NaN },
      ],
      100,
      50,
    );
    expect(b.map((x) => x.height)).toEqual([0, 50, 1, 0]);
    expect(b[1].y).toBe(0);
    expect(b.map((x) => Math.round(x.x))).toEqual([1, 26, 51, 76]);
    expect(b.every((x) => x.width === 23)).toBe(true);
    expect(bars([], 100, 50)).toEqual([]);
    expect(bars([{ key: "a", value: 0 }], 100, 50)[0].height).toBe(0);
    const one = bars([{ key: "a", value: 3 }], 560, 120)[0];
    expect([one.width, one.x, one.height]).toEqual([48, 256, 120]); // one bar: not the whole width
  });
});

describe("shortPath and labelled", () => {
  it("keeps a deep folder's last two parts, and paths of up to three parts whole", () => {
    expect(shortPath("/tmp/a/b/work/api-server")).toBe("…/work/api-server");
    expect(shortPath("/srv/app")).toBe("/srv/app");
    expect(shortPath("/srv/projects/web")).toBe("/srv/projects/web");
    expect(shortPath("C:\\Users\\u\\app")).toBe("…/u/app");
    expect(shortPath("/home/u", "/home/u")).toBe("~");
    expect(shortPath("/home/u/work/site", "/home/u/")).toBe("~/work/site");
    expect(shortPath("/home/u/a/work/site", "/home/u")).toBe("…/work/site");
    expect(shortPath("/home/user2/x", "/home/u")).toBe("/home/user2/x");
    expect(shortPath("/tmp/a/b/work/site", null)).toBe("…/work/site");
  });

  it("labels every bar of a week, and at most 8 of a month with today among them", () => {
    expect([...Array(7).keys()].every((i) => labelled(i, 7))).toBe(true);
    const month = [...Array(30).keys()].filter((i) => labelled(i, 30));
    expect(month.length).toBeLessThanOrEqual(8);
    expect(month).toContain(29);
  });
});
