import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Inspector, type InspectorData } from "./Inspector";
import { attachCommand, shellWord } from "./attach";

afterEach(cleanup);

const view: InspectorData = {
  tools: [],
  commands: [],
  model: null,
  contextUsage: null,
  tokens: null,
  cost: 0,
  approvals: { policy: null, rules: [], pending: [], recent: [] },
  connected: true,
} as unknown as InspectorData;

describe("tmux attach", () => {
  it("the command: the hypivisor's names as they are, anything else quoted for the shell", () => {
    expect(attachCommand("pi-webshop-1a2b3c")).toBe("tmux attach -t pi-webshop-1a2b3c");
    expect(shellWord("a b")).toBe("'a b'");
    expect(shellWord("x';rm -rf ~;'")).toBe(`'x'\\'';rm -rf ~;'\\'''`);
  });

  it("a spawned agent's inspector shows it with the machine to run it on, and copies it", async () => {
    const writeText = vi.fn(() => Promise.resolve());
    Object.defineProperty(navigator, "clipboard", { value: { writeText }, configurable: true });
    render(<Inspector view={view} tmuxSession="pi-webshop-1a2b3c" machine="buildbox" />);
    expect(screen.getByTestId("tmux-cmd").textContent).toBe("tmux attach -t pi-webshop-1a2b3c");
    expect(screen.getByTestId("tmux-where").textContent).toContain("on buildbox");
    await act(async () => void fireEvent.click(screen.getByRole("button", { name: "Copy the tmux attach command" })));
    expect(writeText).toHaveBeenCalledWith("tmux attach -t pi-webshop-1a2b3c");
    expect(screen.getByRole("button", { name: "Copy the tmux attach command" }).textContent).toBe("Copied");
  });

  it("an agent not started by a spawn has no such section", () => {
    render(<Inspector view={view} machine="buildbox" />);
    expect(screen.queryByTestId("tmux-attach")).toBeNull();
  });
});
