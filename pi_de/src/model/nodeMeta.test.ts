import { describe, expect, it } from "vitest";
import type { NodeInfo } from "../protocol/types";
import { activityText, duration, severalMachines, shortModel } from "./nodeMeta";

const node = (extra: Partial<NodeInfo> = {}): NodeInfo => ({ id: "a", machine: "m", cwd: "/h/p", port: 1, ...extra });

describe("node meta", () => {
  it("reads durations at a glance", () => {
    expect([0, 45, 60, 719, 3600, 3660 + 300, 86_399, 86_400 * 3].map(duration)).toEqual(["<1m", "<1m", "1m", "11m", "1h", "1h 6m", "23h 59m", "3d"]);
    expect(duration(-5)).toBe("<1m"); // a clock a little ahead of the hypivisor's
  });

  it("says how long an agent has worked or idled", () => {
    expect(activityText(node({ activity: "working", activity_since: 1000 }), 1125)).toBe("working 2m");
    expect(activityText(node({ activity: "idle", activity_since: 1000 }), 1000 + 7200)).toBe("idle 2h");
    expect(activityText(node({ activity: "idle" }), 5)).toBe("idle");
    expect(activityText(node({ status: "offline", activity_since: 1 }), 5)).toBe("offline");
  });

  it("shows the machine only when there are several", () => {
    expect(severalMachines([])).toBe(false);
    expect(severalMachines([node(), node({ id: "b" })])).toBe(false);
    expect(severalMachines([node(), node({ id: "b", machine: "other" })])).toBe(true);
  });
});

describe("shortModel", () => {
  it("drops the provider, keeps the rest of a nested id, and leaves odd ids whole", () => {
    expect(shortModel("fake/fake-model")).toBe("fake-model");
    expect(shortModel("openrouter/anthropic/claude-x")).toBe("anthropic/claude-x");
    expect(shortModel("gpt-5")).toBe("gpt-5");
    expect(shortModel("/x")).toBe("/x");
    expect(shortModel("x/")).toBe("x/");
  });
});
