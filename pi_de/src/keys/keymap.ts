// Pi-DE's keyboard shortcuts (pure: no DOM, no React). One table says which key does what; the `?` overlay
// lists it, and `keyAction` decides for one key press.
//
// Rules (specs/design.md "Driver controls"):
// - nothing with Ctrl or Cmd (Meta): those belong to the browser and the system;
// - single keys never fire while typing (an input, textarea, select or editable element has focus) nor while a
//   dialog is open; only Alt+↑/↓ also work in the composer (no browser or textarea binding on Linux/Windows);
// - Esc in the composer already aborts a run (Composer); outside a text field it does the same here.
import { machineGroups } from "../roster/Roster";
import { groupByProject, type RosterState } from "../model/rosterReducer";
import type { MachineInfo } from "../protocol/types";

/** Dispatched on window for "abort": the open agent's stage (which owns the link) aborts its run if one is going. */
export const ABORT_EVENT = "pi-de:abort";

export type KeyAction = "next-agent" | "prev-agent" | "focus-composer" | "open-inbox" | "abort" | "help";

export interface KeyBinding {
  action: KeyAction;
  /** As shown in the overlay. */
  keys: string[];
  label: string;
}

export const KEY_MAP: KeyBinding[] = [
  { action: "next-agent", keys: ["Alt+↓", "]"], label: "Next agent" },
  { action: "prev-agent", keys: ["Alt+↑", "["], label: "Previous agent" },
  { action: "focus-composer", keys: ["c"], label: "Write to the open agent (focus the composer)" },
  { action: "open-inbox", keys: ["i"], label: "Open the inbox" },
  { action: "abort", keys: ["Esc"], label: "Abort the open agent's run (also in the composer)" },
  { action: "help", keys: ["?"], label: "Show these keys" },
];

/** The parts of a KeyboardEvent the decision needs. */
export interface KeyPress {
  key: string;
  altKey: boolean;
  ctrlKey: boolean;
  metaKey: boolean;
  isComposing?: boolean;
}

export interface KeyContext {
  /** Focus is in a text field (see isTypingTarget). */
  typing: boolean;
  /** A dialog is open (spawn, stop confirmation, this overlay): it owns the keyboard. */
  dialogOpen: boolean;
}

const SINGLE: Record<string, KeyAction> = {
  "]": "next-agent",
  "[": "prev-agent",
  c: "focus-composer",
  i: "open-inbox",
  "?": "help",
  Escape: "abort",
};

export function keyAction(e: KeyPress, ctx: KeyContext): KeyAction | null {
  if (e.ctrlKey || e.metaKey || e.isComposing || ctx.dialogOpen) return null;
  if (e.altKey) {
    if (e.key === "ArrowDown") return "next-agent";
    if (e.key === "ArrowUp") return "prev-agent";
    return null; // Alt+letter types characters on many layouts
  }
  if (ctx.typing) return null;
  return SINGLE[e.key] ?? null;
}

/** The element that has focus takes typed text: single-key shortcuts stay quiet. */
export function isTypingTarget(el: { tagName?: string; isContentEditable?: boolean; type?: string } | null | undefined): boolean {
  if (!el || !el.tagName) return false;
  const tag = el.tagName.toUpperCase();
  if (tag === "TEXTAREA" || tag === "SELECT") return true;
  if (tag === "INPUT") return !["button", "checkbox", "radio", "submit", "reset", "range", "color", "file"].includes((el.type ?? "text").toLowerCase());
  return el.isContentEditable === true;
}

/** The agents in the order the roster shows them (machines, then folders), without offline ones. */
export function agentOrder(roster: RosterState, machines: MachineInfo[]): string[] {
  const byMachine = machineGroups(roster, machines);
  const groups =
    byMachine.length > 1
      ? byMachine.flatMap(({ name }) => groupByProject({ ...roster, order: roster.order.filter((id) => roster.nodes[id]?.machine === name) }))
      : groupByProject(roster);
  return groups.flatMap((g) => g.nodes.filter((n) => n.status !== "offline").map((n) => n.id));
}

/** The agent `step` places after `current` (wrapping); the first or last when none (or an unlisted one) is open. */
export function stepAgent(order: string[], current: string | null, step: 1 | -1): string | null {
  if (order.length === 0) return null;
  const at = current === null ? -1 : order.indexOf(current);
  if (at < 0) return step === 1 ? order[0] : order[order.length - 1];
  return order[(at + step + order.length) % order.length];
}
