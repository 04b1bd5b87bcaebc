import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import type { ReadSessionResult } from "../protocol/types";
import { SessionView } from "./SessionView";

afterEach(cleanup);

const page = (leaf: string, text: string, extra: Partial<ReadSessionResult> = {}): ReadSessionResult => ({
  machine: "alpha",
  id: "sid1",
  path: "/h/.pi/agent/sessions/--w--/s.jsonl",
  session_id: "pi1",
  cwd: "/h/w",
  messages: [{ role: "user", content: [{ type: "text", text }], timestamp: 1 }] as unknown as ReadSessionResult["messages"],
  entry_ids: ["e1"],
  cursor: 0,
  before: 0,
  end: 1,
  has_more: false,
  total_messages: 1,
  leaf_id: leaf,
  ...extra,
});

describe("a past session's tree", () => {
  it("switches branch at a branch point, links the parent it was forked from and its forks", async () => {
    const calls: Record<string, unknown>[] = [];
    const branches = (current: string): ReadSessionResult["branches"] => [
      { entry_id: "e1", at: 2, options: [
        { entry_id: "b1", leaf_id: "L1", preview: "about elephants", current: current === "L1" },
        { entry_id: "b2", leaf_id: "L2", preview: "about zebras", current: current === "L2" },
      ] },
    ];
    const request = <T,>(method: string, params: Record<string, unknown> = {}) => {
      expect(method).toBe("read_session");
      calls.push(params);
      const leaf = (params.leaf_id as string) ?? "L2";
      return Promise.resolve(page(leaf, leaf === "L1" ? "the elephants branch" : "the zebras branch", {
        branches: branches(leaf),
        parent: { id: "parent-sid", path: "/h/p.jsonl" },
        forks: [{ id: "fork-sid", path: "/h/f.jsonl", name: "my fork" }],
      }) as T);
    };
    render(<SessionView request={request} connected id="sid1" machine="alpha" onBack={() => undefined} onAgent={() => undefined} />);
    const options = await screen.findAllByTestId("branch-option");
    expect(options.map((o) => o.getAttribute("aria-pressed"))).toEqual(["false", "true"]);
    expect(screen.getByTestId("branch-point").textContent).toContain("After message 2");
    await act(async () => fireEvent.click(options[0]));
    expect(calls.at(-1)).toEqual({ path: "sid1", limit: 100, machine: "alpha", leaf_id: "L1" });
    expect(screen.getAllByTestId("branch-option").map((o) => o.getAttribute("aria-pressed"))).toEqual(["true", "false"]);
    expect(screen.getByTestId("session-parent").querySelector("a")!.getAttribute("href")).toBe("#/session/parent-sid?machine=alpha");
    const fork = screen.getByTestId("session-forks").querySelector("a")!;
    expect(fork.textContent).toBe("my fork");
    expect(fork.getAttribute("href")).toBe("#/session/fork-sid?machine=alpha");
  });

  it("shows no tree bar for a straight session", async () => {
    const request = <T,>() => Promise.resolve(page("L", "straight", { branches: [], forks: [], parent: null }) as T);
    render(<SessionView request={request} connected id="sid1" onBack={() => undefined} onAgent={() => undefined} />);
    await screen.findByText(/alpha · \/h\/w/);
    expect(screen.queryByTestId("session-nav")).toBeNull();
  });
});
