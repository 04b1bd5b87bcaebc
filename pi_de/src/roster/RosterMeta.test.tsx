import { cleanup, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { emptyRoster, rosterReducer } from "../model/rosterReducer";
import type { NodeInfo } from "../protocol/types";
import { Roster } from "./Roster";

afterEach(() => {
  cleanup();
  vi.useRealTimers();
});

function renderNodes(nodes: NodeInfo[]) {
  const roster = rosterReducer(emptyRoster, { event: "init", nodes });
  return render(<Roster roster={roster} selected={null} onSelect={() => {}} />);
}

describe("what a card shows", () => {
  it("the branch and how long the agent has worked or idled, never port or pid", () => {
    vi.useFakeTimers({ now: 10_000_000 });
    const now = 10_000;
    renderNodes([
      { id: "a", machine: "box", cwd: "/h/api", port: 8123, pid: 4242, git_branch: "feat/login", activity: "working", activity_since: now - 125 },
      { id: "b", machine: "box", cwd: "/h/web", port: 8124, pid: 4343, activity: "idle", activity_since: now - 3 * 3600 },
    ]);
    const [a, b] = screen.getAllByTestId("node-card");
    expect(a.textContent).toContain("⎇ feat/login");
    expect(a.textContent).toContain("working 2m");
    expect(b.textContent).toContain("idle 3h");
    expect(screen.getAllByTestId("branch")).toHaveLength(1);
    for (const card of [a, b]) expect(card.textContent).not.toMatch(/812[34]|pid|4242|box/);
    expect(a.getAttribute("title")).toContain("box:8123 · pid 4242"); // still there for whoever needs it
  });

  it("names the machine on every card when agents run on several", () => {
    renderNodes([
      { id: "a", machine: "laptop", cwd: "/h/api", port: 1 },
      { id: "b", machine: "server", cwd: "/h/api", port: 2 },
    ]);
    expect(screen.getAllByTestId("machine").map((m) => m.textContent)).toEqual(["laptop", "server"]);
  });
});
