import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Composer } from "./Composer";

afterEach(cleanup);

const commands = [
  { name: "compact", source: "builtin", available: true },
  { name: "new", source: "builtin", available: false, note: "pi 0.73.1 cannot run it from outside its terminal" },
  { name: "todo", source: "extension", available: true },
];

function mount(running: boolean) {
  const p = {
    onSend: vi.fn(),
    onAbort: vi.fn(),
    onRunCommand: vi.fn(),
  };
  render(
    <Composer
      running={running}
      connected
      commands={commands}
      files={null}
      onSend={p.onSend}
      onAbort={p.onAbort}
      onListCommands={() => {}}
      onListFiles={() => {}}
      dropped={[]}
      onRunCommand={p.onRunCommand}
    />,
  );
  const box = screen.getByLabelText("Prompt") as HTMLTextAreaElement;
  const type = (t: string) => fireEvent.change(box, { target: { value: t, selectionStart: t.length } });
  return { p, box, type };
}

describe("composer while pi works", () => {
  it("Enter queues a follow-up, Alt+Enter steers, Esc stops", () => {
    const { p, box, type } = mount(true);
    type("later");
    fireEvent.keyDown(box, { key: "Enter" });
    expect(p.onSend).toHaveBeenLastCalledWith("later", [], {});
    type("now");
    fireEvent.keyDown(box, { key: "Enter", altKey: true });
    expect(p.onSend).toHaveBeenLastCalledWith("now", [], { deliverAs: "steer" });
    fireEvent.keyDown(box, { key: "Escape" });
    expect(p.onAbort).toHaveBeenCalledTimes(1);
    expect(screen.getByRole("button", { name: "Steer" })).toBeTruthy();
  });
  it("Esc does nothing to an idle pi", () => {
    const { p, box } = mount(false);
    fireEvent.keyDown(box, { key: "Escape" });
    expect(p.onAbort).not.toHaveBeenCalled();
    expect(screen.queryByRole("button", { name: "Steer" })).toBeNull();
  });
});

describe("composer: pi's commands", () => {
  it("runs a built-in through the link, refuses what this pi cannot run, and marks extension commands", () => {
    const { p, box, type } = mount(false);
    type("/compact be brief");
    fireEvent.click(screen.getByRole("button", { name: "Send" }));
    expect(p.onRunCommand).toHaveBeenCalledWith("compact", "be brief");
    type("/new");
    fireEvent.click(screen.getByRole("button", { name: "Send" }));
    expect(screen.getByTestId("composer-problem").textContent).toMatch(/\/new cannot be run from here: pi 0.73.1/);
    expect(box.value).toBe("/new");
    type("/todo buy milk");
    fireEvent.click(screen.getByRole("button", { name: "Send" }));
    expect(p.onSend).toHaveBeenCalledWith("/todo buy milk", [], { noEcho: true });
    expect(p.onSend).toHaveBeenCalledTimes(1);
  });
});
