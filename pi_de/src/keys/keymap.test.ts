import { describe, expect, it } from "vitest";
import { emptyRoster, rosterReducer } from "../model/rosterReducer";
import type { NodeInfo } from "../protocol/types";
import { agentOrder, isTypingTarget, KEY_MAP, keyAction, stepAgent, type KeyPress } from "./keymap";

const key = (k: string, mods: Partial<KeyPress> = {}): KeyPress => ({ key: k, altKey: false, ctrlKey: false, metaKey: false, ...mods });
const idle = { typing: false, dialogOpen: false };
const typing = { typing: true, dialogOpen: false };

describe("what a key does", () => {
  it("single keys outside text fields", () => {
    expect(keyAction(key("]"), idle)).toBe("next-agent");
    expect(keyAction(key("["), idle)).toBe("prev-agent");
    expect(keyAction(key("c"), idle)).toBe("focus-composer");
    expect(keyAction(key("i"), idle)).toBe("open-inbox");
    expect(keyAction(key("?", { shiftKey: true } as Partial<KeyPress>), idle)).toBe("help");
    expect(keyAction(key("Escape"), idle)).toBe("abort");
    expect(keyAction(key("x"), idle)).toBeNull();
    expect(keyAction(key("C"), idle)).toBeNull(); // Shift+c is not c
  });

  it("single keys never fire while typing; Alt+↑/↓ move between agents even from the composer", () => {
    for (const k of ["]", "[", "c", "i", "?", "Escape"]) expect(keyAction(key(k), typing)).toBeNull();
    expect(keyAction(key("ArrowDown", { altKey: true }), typing)).toBe("next-agent");
    expect(keyAction(key("ArrowUp", { altKey: true }), typing)).toBe("prev-agent");
    expect(keyAction(key("ArrowDown"), idle)).toBeNull(); // plain arrows scroll
  });

  it("leaves Ctrl/Cmd, Alt+letters, IME composition and open dialogs alone", () => {
    expect(keyAction(key("c", { ctrlKey: true }), idle)).toBeNull();
    expect(keyAction(key("i", { metaKey: true }), idle)).toBeNull();
    expect(keyAction(key("ArrowDown", { altKey: true, ctrlKey: true }), idle)).toBeNull();
    expect(keyAction(key("ArrowLeft", { altKey: true }), idle)).toBeNull(); // the browser's Back
    expect(keyAction(key("c", { altKey: true }), idle)).toBeNull();
    expect(keyAction(key("c", { isComposing: true }), idle)).toBeNull();
    expect(keyAction(key("]"), { typing: false, dialogOpen: true })).toBeNull();
    expect(keyAction(key("ArrowDown", { altKey: true }), { typing: false, dialogOpen: true })).toBeNull();
  });

  it("the overlay's table names every action once", () => {
    const actions = KEY_MAP.map((b) => b.action);
    expect(new Set(actions).size).toBe(actions.length);
    expect(actions.sort()).toEqual(["abort", "focus-composer", "help", "next-agent", "open-inbox", "prev-agent"]);
  });
});

describe("text fields", () => {
  it("inputs that take text, textareas, selects and editable elements count as typing", () => {
    expect(isTypingTarget({ tagName: "TEXTAREA" })).toBe(true);
    expect(isTypingTarget({ tagName: "input", type: "text" })).toBe(true);
    expect(isTypingTarget({ tagName: "INPUT", type: "password" })).toBe(true);
    expect(isTypingTarget({ tagName: "INPUT" })).toBe(true);
    expect(isTypingTarget({ tagName: "SELECT" })).toBe(true);
    expect(isTypingTarget({ tagName: "DIV", isContentEditable: true })).toBe(true);
    expect(isTypingTarget({ tagName: "INPUT", type: "checkbox" })).toBe(false);
    expect(isTypingTarget({ tagName: "BUTTON" })).toBe(false);
    expect(isTypingTarget({ tagName: "BODY" })).toBe(false);
    expect(isTypingTarget(null)).toBe(false);
  });
});

describe("moving between agents", () => {
  const nodes: NodeInfo[] = [
    { id: "w2", machine: "m", cwd: "/p/web", port: 2 },
    { id: "a1", machine: "m", cwd: "/p/api", port: 1 },
    { id: "w1", machine: "m", cwd: "/p/web", port: 3 },
    { id: "z", machine: "m", cwd: "/p/zzz", port: 4, status: "offline" },
  ];
  const roster = rosterReducer(emptyRoster, { event: "init", nodes });

  it("follows the roster's order (folders by name) and skips offline agents", () => {
    expect(agentOrder(roster, [])).toEqual(["a1", "w2", "w1"]);
  });

  it("machines first when there are several, as the roster groups them", () => {
    const two = rosterReducer(emptyRoster, { event: "init", nodes: [...nodes, { id: "b", machine: "box", cwd: "/p/api", port: 9 }] });
    const machines = [
      { name: "m", online: true, agents: 3, own: true },
      { name: "box", online: true, agents: 1 },
    ];
    expect(agentOrder(two, machines)).toEqual(["a1", "w2", "w1", "b"]);
  });

  it("wraps at both ends and starts at an end when none is open", () => {
    const order = ["a", "b", "c"];
    expect(stepAgent(order, "a", 1)).toBe("b");
    expect(stepAgent(order, "c", 1)).toBe("a");
    expect(stepAgent(order, "a", -1)).toBe("c");
    expect(stepAgent(order, null, 1)).toBe("a");
    expect(stepAgent(order, null, -1)).toBe("c");
    expect(stepAgent(order, "gone", 1)).toBe("a");
    expect(stepAgent([], null, 1)).toBeNull();
  });
});
