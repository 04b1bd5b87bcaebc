import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { emptyRoster, rosterReducer } from "../model/rosterReducer";
import type { NodeInfo } from "../protocol/types";
import { Roster } from "./Roster";

const HIDDEN = /[\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069\u2028\u2029]/;

afterEach(cleanup);

function renderNodes(nodes: NodeInfo[]) {
  const roster = rosterReducer(emptyRoster, { event: "init", nodes });
  return render(<Roster roster={roster} selected={null} onSelect={() => {}} />);
}

describe("Roster with hostile names", () => {
  it("never puts a raw bidi override into the DOM (cwd /home/u/evil\\u202Egnp.exe)", () => {
    const { container } = renderNodes([{ id: "n1", machine: "m", cwd: "/home/u/evil\u202Egnp.exe", port: 9000 }]);
    const text = container.textContent ?? "";
    expect(text).not.toContain("\u202E");
    expect(text).toContain("evil\\u202Egnp.exe");
    for (const el of container.querySelectorAll("[title]")) expect(el.getAttribute("title")).not.toMatch(HIDDEN);
  });

  it("shows newlines, controls and bidi characters in every name visibly and inertly", () => {
    const { container } = renderNodes([
      {
        id: "n2",
        machine: "box\u2067\nroot",
        cwd: "/srv/-rf\n\u001B[2Jx",
        port: 9001,
        session_name: "fix\u202Dbug\r\nnow",
        model: "gpt\u200F-\u2066x",
        git_branch: "main\u202E\nx",
      },
      { id: "n2b", machine: "other", cwd: "/srv/ok", port: 9003 }, // two machines: each card names its own
    ]);
    const text = container.textContent ?? "";
    expect(text).not.toMatch(HIDDEN);
    expect(text).toContain("-rf↵\\u001B[2Jx");
    expect(text).toContain("box\\u2067↵root");
    expect(text).toContain("fix\\u202Dbug↵now");
    expect(text).toContain("gpt\\u200F-\\u2066x");
    expect(text).toContain("main\\u202E↵x");
    for (const el of container.querySelectorAll("[title]")) expect(el.getAttribute("title")).not.toMatch(HIDDEN);
    // each name is isolated, so right-to-left text in it cannot reorder the card around it
    expect(container.querySelectorAll("bdi").length).toBeGreaterThanOrEqual(5);
    expect(screen.getAllByTestId("node-card")).toHaveLength(2);
  });

  it("leaves ordinary names alone", () => {
    const { container } = renderNodes([{ id: "n3", machine: "laptop", cwd: "/home/u/app", port: 9002, session_name: "refactor", model: "m1" }]);
    expect(container.textContent).toContain("refactor");
    expect(container.textContent).toContain("refactor");
    expect(container.textContent).not.toContain("laptop"); // one machine: not worth a word on every card
    expect(container.querySelector(".has-hidden")).toBeNull();
  });
});

describe("Roster: approvals", () => {
  it("a card says the agent waits for you, how many calls, and its policy", () => {
    renderNodes([
      { id: "a", machine: "m", cwd: "/h/api", port: 1, pending_approvals: 1, approval_policy: "writes" },
      { id: "b", machine: "m", cwd: "/h/api", port: 2, pending_approvals: 3, approval_policy: "all" },
      { id: "c", machine: "m", cwd: "/h/api", port: 3 },
    ]);
    const badges = screen.getAllByTestId("waiting-badge").map((b) => b.textContent);
    expect(badges).toEqual(["waiting for you", "waiting for you · 3"]);
    expect(screen.getAllByTestId("policy-tag").map((t) => t.textContent)).toEqual(["asks: writes", "asks: all"]);
    expect(screen.getAllByTestId("node-card").map((c) => c.getAttribute("data-waiting"))).toEqual(["1", "3", "0"]);
  });

  it("an offline agent asks nobody; a collapsed folder still says how many calls wait in it", () => {
    renderNodes([
      { id: "a", machine: "m", cwd: "/h/api", port: 1, pending_approvals: 2 },
      { id: "b", machine: "m", cwd: "/h/api", port: 2, pending_approvals: 5, status: "offline" },
    ]);
    expect(screen.getAllByTestId("waiting-badge")).toHaveLength(1);
    expect(screen.queryByTestId("group-waiting")).toBeNull(); // open: each card says it
    fireEvent.click(document.querySelector("button.group-head")!);
    expect(screen.queryAllByTestId("node-card")).toHaveLength(0);
    expect(screen.getByTestId("group-waiting").textContent).toBe("waiting · 2");
  });
});

describe("Roster: titles and worktrees", () => {
  it("gives two unnamed agents in one folder different titles, the later started one '· 2'", () => {
    renderNodes([
      { id: "b", machine: "m", cwd: "/home/u/api", port: 9001, started_at: 200 },
      { id: "a", machine: "m", cwd: "/home/u/api", port: 9000, started_at: 100 },
    ]);
    const titles = screen.getAllByTestId("node-card").map((c) => c.querySelector(".node-title")?.textContent);
    expect(titles.sort()).toEqual(["api", "api · 2"]);
    expect(document.querySelector("[data-node-id=b] .node-title")?.textContent).toBe("api · 2");
  });

  it("marks an agent that runs in a git worktree, and only that one", () => {
    renderNodes([
      { id: "w", machine: "m", cwd: "/home/u/api-wt", port: 9001, git_branch: "fix", worktree: "/home/u/api-wt", worktree_of: "/home/u/api" },
      { id: "p", machine: "m", cwd: "/home/u/api", port: 9000, git_branch: "main" },
    ]);
    const tag = document.querySelector("[data-node-id=w] [data-testid=worktree-tag]");
    expect(tag?.textContent).toBe("worktree");
    expect(tag?.getAttribute("title")).toContain("/home/u/api");
    expect(document.querySelector("[data-node-id=p] [data-testid=worktree-tag]")).toBeNull();
  });
});

describe("Roster: compact cards", () => {
  it("puts the waiting and unread chips on one row, and names the model without its provider", () => {
    renderNodes([{ id: "c", machine: "m", cwd: "/home/u/api", port: 9001, pending_approvals: 1, unread: 2, model: "anthropic/claude-x" }]);
    const tags = document.querySelector("[data-node-id=c] .node-tags");
    expect(tags?.querySelector("[data-testid=waiting-badge]")).not.toBeNull();
    expect(tags?.querySelector("[data-testid=unread-badge]")).not.toBeNull();
    const meta = [...document.querySelectorAll("[data-node-id=c] .node-meta")].pop()!;
    expect(meta.textContent).toContain("claude-x");
    expect(meta.textContent).not.toContain("anthropic/");
    expect(meta.querySelector("[title='anthropic/claude-x']")).not.toBeNull();
  });
});

describe("Roster: the stats line", () => {
  it("holds activity, model and cost as separate parts (the line wraps between them, see roster.css)", () => {
    renderNodes([{ id: "s", machine: "m", cwd: "/home/u/api", port: 9001, model: "p/a-very-long-model-name-indeed", cost: 1.5 }]);
    const line = document.querySelector("[data-node-id=s] .node-stats") as HTMLElement;
    expect(line.querySelector("[data-testid=card-cost]")?.textContent).toBe("$1.500");
    expect(line.textContent).toMatch(/^idle · a-very-long-model-name-indeed · \$1\.500$/);
  });
});
