import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { WorktreeSection } from "./WorktreeSection";

afterEach(cleanup);

const wt = { path: "/h/app-worktrees/feat-x", repo: "/h/app", branch: "feat/x", removable: true };

describe("WorktreeSection", () => {
  it("lists the worktree and offers no removal while the agent runs", () => {
    render(<WorktreeSection worktree={{ ...wt, removable: false }} onRemove={async () => {}} />);
    expect(screen.getByTestId("worktree-path").textContent).toBe("/h/app-worktrees/feat-x");
    expect(screen.getByTestId("worktree").textContent).toContain("/h/app");
    expect(screen.queryByRole("button", { name: "Remove worktree…" })).toBeNull();
  });

  it("removes only after a confirmation, and offers force when the machine says it is dirty", async () => {
    const calls: [string, boolean][] = [];
    const onRemove = async (path: string, force: boolean) => {
      calls.push([path, force]);
      if (!force) throw Object.assign(new Error("the worktree has uncommitted changes"), { code: 1013 });
    };
    render(<WorktreeSection worktree={wt} onRemove={onRemove} />);
    fireEvent.click(screen.getByRole("button", { name: "Remove worktree…" }));
    expect(calls).toEqual([]);
    fireEvent.click(screen.getByRole("button", { name: "Remove" }));
    await screen.findByRole("button", { name: "Remove anyway" });
    expect(screen.getByTestId("worktree-error").textContent).toContain("uncommitted");
    fireEvent.click(screen.getByRole("button", { name: "Remove anyway" }));
    await screen.findByTestId("worktree-removed");
    expect(calls).toEqual([[wt.path, false], [wt.path, true]]);
  });
});
