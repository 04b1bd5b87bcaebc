import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { emptyRoster, rosterReducer } from "../model/rosterReducer";
import { DriverKeys } from "./DriverKeys";
import { ABORT_EVENT } from "./keymap";

afterEach(cleanup);

const roster = rosterReducer(emptyRoster, {
  event: "init",
  nodes: [
    { id: "a", machine: "m", cwd: "/p/api", port: 1 },
    { id: "b", machine: "m", cwd: "/p/web", port: 2 },
  ],
});

function setup(selected: string | null = "a") {
  const onSelect = vi.fn();
  const onInbox = vi.fn();
  const aborts = vi.fn();
  window.addEventListener(ABORT_EVENT, aborts);
  const r = render(
    <div>
      <section data-testid="chat-stage">
        <textarea aria-label="Prompt" />
      </section>
      <input aria-label="Other field" />
      <DriverKeys roster={roster} machines={[]} selected={selected} onSelect={onSelect} onInbox={onInbox} />
    </div>,
  );
  return { ...r, onSelect, onInbox, aborts, done: () => window.removeEventListener(ABORT_EVENT, aborts) };
}

const press = (key: string, init: KeyboardEventInit = {}, target: Element | Window = document.body) =>
  act(() => void fireEvent.keyDown(target, { key, bubbles: true, ...init }));

describe("the keyboard in Pi-DE", () => {
  it("moves between agents, opens the inbox, focuses the composer and aborts", () => {
    const t = setup("a");
    press("]");
    expect(t.onSelect).toHaveBeenLastCalledWith("b");
    press("ArrowUp", { altKey: true });
    expect(t.onSelect).toHaveBeenLastCalledWith("b"); // wraps from the first to the last
    press("i");
    expect(t.onInbox).toHaveBeenCalledTimes(1);
    press("Escape");
    expect(t.aborts).toHaveBeenCalledTimes(1);
    press("c");
    expect(document.activeElement).toBe(screen.getByLabelText("Prompt"));
    t.done();
  });

  it("single keys are typed, not obeyed, in a text field; Alt+↓ still moves", () => {
    const t = setup("a");
    const field = screen.getByLabelText("Other field");
    field.focus();
    press("]", {}, field);
    press("i", {}, field);
    press("Escape", {}, field);
    expect(t.onSelect).not.toHaveBeenCalled();
    expect(t.onInbox).not.toHaveBeenCalled();
    expect(t.aborts).not.toHaveBeenCalled();
    press("ArrowDown", { altKey: true }, field);
    expect(t.onSelect).toHaveBeenCalledWith("b");
    t.done();
  });

  it("? opens a dialog listing the keys; Esc closes it and returns the focus; other keys wait while it is open", () => {
    const t = setup("a");
    const before = screen.getByRole("button", { name: "Keyboard shortcuts" });
    before.focus();
    press("?", { shiftKey: true }, before);
    const dialog = screen.getByRole("dialog", { name: "Keyboard shortcuts" });
    expect(dialog.getAttribute("aria-modal")).toBe("true");
    expect(dialog.textContent).toContain("Next agent");
    expect(dialog.textContent).toContain("Alt+↓");
    expect(document.activeElement).toBe(screen.getByRole("button", { name: "Close keyboard shortcuts" }));
    press("]", {}, document.activeElement!);
    expect(t.onSelect).not.toHaveBeenCalled();
    press("Tab", {}, document.activeElement!); // focus stays in the dialog
    expect(dialog.contains(document.activeElement)).toBe(true);
    press("Escape", {}, document.activeElement!);
    expect(screen.queryByRole("dialog")).toBeNull();
    expect(t.aborts).not.toHaveBeenCalled(); // that Esc closed the dialog, it did not abort
    expect(document.activeElement).toBe(before);
    t.done();
  });

  it("the dialog closes on a click outside it, and opens from its link", () => {
    const t = setup(null);
    fireEvent.click(screen.getByRole("button", { name: "Keyboard shortcuts" }));
    expect(screen.getByRole("dialog")).toBeTruthy();
    fireEvent.mouseDown(screen.getByRole("dialog"));
    expect(screen.getByRole("dialog")).toBeTruthy(); // inside: stays
    fireEvent.mouseDown(screen.getByTestId("keys-backdrop"));
    expect(screen.queryByRole("dialog")).toBeNull();
    press("Escape");
    expect(t.aborts).not.toHaveBeenCalled(); // no agent open: nothing to abort
    t.done();
  });
});
