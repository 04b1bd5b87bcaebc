// What a card and the stage header say about an agent besides its name: the folder, the git branch,
// the machine only when the roster spans several, and how long it has been working or idle. Pure.
import type { NodeInfo } from "../protocol/types";

/** A duration as a person reads it at a glance: <1m, 12m, 3h 5m, 2d (labels refresh every 30 s). */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return "<1m";
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h}h ${m % 60}m` : `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

/** "working 3m" (this run so far), "idle 2h" (since the last run), "offline"; no time when unknown. */
export function activityText(n: NodeInfo, nowSeconds: number): string {
  if (n.status === "offline") return "offline";
  const what = n.activity === "working" ? "working" : "idle";
  return n.activity_since != null ? `${what} ${duration(nowSeconds - n.activity_since)}` : what;
}

/** The machine is worth showing only when agents run on more than one. */
export function severalMachines(nodes: Iterable<NodeInfo>): boolean {
  let first: string | null = null;
  for (const n of nodes) {
    if (first === null) first = n.machine;
    else if (n.machine !== first) return true;
  }
  return false;
}

/** A model as a card has room for: without its provider ("anthropic/claude-x" → "claude-x"); the tooltip has all. */
export function shortModel(model: string): string {
  const i = model.indexOf("/");
  return i > 0 && i < model.length - 1 ? model.slice(i + 1) : model;
}

/** A folder where room is short (a table cell, an inbox line): the home folder as `~` when `home` is given
 *  ("~/work/api"), a deep one as its last two parts ("…/work/api"), one of up to three parts whole
 *  ("/srv/projects/web"); the tooltip has the whole path. */
export function shortPath(path: string, home?: string | null): string {
  const h = home?.replace(/[\\/]+$/, "");
  if (h && (path === h || path.startsWith(h + "/") || path.startsWith(h + "\\"))) path = "~" + path.slice(h.length);
  const parts = path.split(/[\\/]+/).filter(Boolean);
  return parts.length > 3 ? `…/${parts.slice(-2).join("/")}` : path;
}
