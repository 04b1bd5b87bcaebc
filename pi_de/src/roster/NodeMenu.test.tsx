import { act, cleanup, fireEvent, render, screen, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { emptyRoster, rosterReducer } from "../model/rosterReducer";
import type { NodeInfo } from "../protocol/types";
import { Roster, nodeTitle } from "./Roster";
import type { NodeActions } from "./useNodeActions";

afterEach(cleanup);

const nodes: NodeInfo[] = [
  { id: "n-raw-id-1", machine: "box", cwd: "/home/u/projects/webshop", port: 1 },
  { id: "n-raw-id-2", machine: "box", cwd: "/home/u/projects/api", port: 2, session_name: "fix login" },
];

function renderRoster(actions?: NodeActions) {
  const roster = rosterReducer(emptyRoster, { event: "init", nodes });
  return render(<Roster roster={roster} selected={null} onSelect={() => {}} actions={actions} />);
}

function fakeActions() {
  let finish: (err?: Error) => void = () => {};
  const pending = () => new Promise<void>((res, rej) => (finish = (err) => (err ? rej(err) : res())));
  const actions = { stop: vi.fn(pending), rename: vi.fn(pending) };
  return { actions, finish: (err?: Error) => finish(err) };
}

describe("a card's title", () => {
  it("is pi's session name, else the folder, never the id", () => {
    expect(nodeTitle({ session_name: "fix login", cwd: "/a/b" })).toBe("fix login");
    expect(nodeTitle({ session_name: null, cwd: "/home/u/webshop/" })).toBe("webshop");
    expect(nodeTitle({ session_name: "  ", cwd: "/home/u/webshop" })).toBe("webshop");
    renderRoster();
    const titles = screen.getAllByTestId("node-card").map((c) => c.querySelector(".node-title")!.textContent);
    expect(titles).toEqual(["fix login", "webshop"]);
    expect(document.body.textContent).not.toMatch(/n-raw-id|unnamed session/);
  });
});

describe("a card's actions", () => {
  it("without actions there is no menu", () => {
    renderRoster();
    expect(screen.queryByRole("button", { name: /Actions for/ })).toBeNull();
  });

  it("stop asks first; Cancel sends nothing; confirming stops that agent and closes once done", async () => {
    const { actions, finish } = fakeActions();
    renderRoster(actions);
    fireEvent.click(screen.getByRole("button", { name: "Actions for webshop" }));
    fireEvent.click(screen.getByRole("menuitem", { name: "Stop agent…" }));
    let dialog = screen.getByRole("alertdialog");
    expect(dialog.textContent).toContain("Stop webshop?");
    expect(dialog.textContent).not.toContain("tmux"); // started by hand: no tmux session to end
    fireEvent.click(within(dialog).getByRole("button", { name: "Cancel" }));
    expect(screen.queryByRole("alertdialog")).toBeNull();
    expect(actions.stop).not.toHaveBeenCalled();

    fireEvent.click(screen.getByRole("button", { name: "Actions for webshop" }));
    fireEvent.click(screen.getByRole("menuitem", { name: "Stop agent…" }));
    dialog = screen.getByRole("alertdialog");
    fireEvent.click(within(dialog).getByRole("button", { name: "Stop agent" }));
    expect(actions.stop).toHaveBeenCalledWith("n-raw-id-1");
    expect((within(dialog).getByRole("button", { name: "Stopping…" }) as HTMLButtonElement).disabled).toBe(true);
    await act(async () => finish());
    expect(screen.queryByRole("alertdialog")).toBeNull();
  });

  it("a refused stop is said in the dialog, which stays open", async () => {
    const { actions, finish } = fakeActions();
    renderRoster(actions);
    fireEvent.click(screen.getByRole("button", { name: "Actions for webshop" }));
    fireEvent.click(screen.getByRole("menuitem", { name: "Stop agent…" }));
    fireEvent.click(screen.getByRole("button", { name: "Stop agent" }));
    await act(async () => finish(new Error("cannot reach the agent (offline?)")));
    expect(screen.getByRole("alert").textContent).toContain("cannot reach the agent");
    expect(screen.getByRole("alertdialog")).toBeTruthy();
  });

  it("rename starts from the current name and sends the new one; Esc closes the menu", async () => {
    const { actions, finish } = fakeActions();
    renderRoster(actions);
    fireEvent.click(screen.getByRole("button", { name: "Actions for fix login" }));
    fireEvent.keyDown(window, { key: "Escape" });
    expect(screen.queryByRole("menu")).toBeNull();
    fireEvent.click(screen.getByRole("button", { name: "Actions for fix login" }));
    fireEvent.click(screen.getByRole("menuitem", { name: "Rename…" }));
    const input = screen.getByRole("textbox", { name: "New session name" }) as HTMLInputElement;
    expect(input.value).toBe("fix login");
    fireEvent.change(input, { target: { value: "  fix signup " } });
    fireEvent.submit(screen.getByRole("dialog"));
    expect(actions.rename).toHaveBeenCalledWith("n-raw-id-2", "fix signup");
    await act(async () => finish());
    expect(screen.queryByRole("dialog")).toBeNull();
  });
});
