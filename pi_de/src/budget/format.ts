// Spend and budgets for people (specs/budgets.md): money, token counts, the roster's badge and the chart's bars.
// Pure: no DOM, no I/O.
import type { NodeInfo } from "../protocol/types";

/** $0, $0.0042, $1.25, $1,234.50: small sums keep two significant digits, larger ones cents. */
export function money(cost: number | null | undefined): string {
  const c = typeof cost === "number" && Number.isFinite(cost) && cost > 0 ? cost : 0;
  if (c === 0) return "$0";
  if (c < 0.01) return `$${Number(c.toPrecision(2))}`;
  return `$${c.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

/** 950, 12.3k, 4.5M tokens. */
export function tokens(n: number | null | undefined): string {
  const t = typeof n === "number" && Number.isFinite(n) && n > 0 ? n : 0;
  if (t < 1000) return String(Math.round(t));
  if (t < 1_000_000) return `${Number((t / 1000).toPrecision(3))}k`;
  return `${Number((t / 1_000_000).toPrecision(3))}M`;
}

export interface Badge {
  level: "near" | "held" | "over";
  text: string;
  title: string;
}

/** The roster card's badge: from 80 % of a budget; held and over (on an override) say so. */
export function budgetBadge(n: Pick<NodeInfo, "budget_level" | "budget_pct" | "budget_note">): Badge | null {
  const level = n.budget_level;
  if (level !== "near" && level !== "held" && level !== "over") return null;
  const pct = typeof n.budget_pct === "number" ? `${Math.round(n.budget_pct)} %` : "";
  const note = n.budget_note ?? "a budget";
  if (level === "near") return { level, text: `$ ${pct}`, title: `${note}: ${pct} used` };
  if (level === "held") return { level, text: "$ budget reached", title: `${note} reached: runs aborted and prompts held until it is raised or overridden once` };
  return { level, text: `$ over ${pct}`, title: `${note}: over budget on an override` };
}

export interface Bar {
  key: string;
  x: number;
  y: number;
  width: number;
  height: number;
  value: number;
}

/** Bars for values side by side in a width × height box (a gap between bars, each at most ``maxWidth`` wide and
 * centred in its slot; the tallest fills the height; a value above zero stays visible). */
export function bars(rows: { key: string; value: number }[], width: number, height: number, gap = 2, maxWidth = 48): Bar[] {
  if (!rows.length || width <= 0 || height <= 0) return [];
  const max = Math.max(...rows.map((r) => (Number.isFinite(r.value) && r.value > 0 ? r.value : 0)));
  const slot = width / rows.length;
  const w = Math.max(1, Math.min(maxWidth, slot - gap));
  return rows.map((r, i) => {
    const v = Number.isFinite(r.value) && r.value > 0 ? r.value : 0;
    const h = max > 0 ? Math.max(v > 0 ? 1 : 0, (v / max) * height) : 0;
    return { key: r.key, x: i * slot + (slot - w) / 2, y: height - h, width: w, height: h, value: v };
  });
}

export { shortPath } from "../model/nodeMeta";

/** Which of n bars get a label so that at most `max` labels fit under the chart; the newest always has one. */
export function labelled(i: number, n: number, max = 8): boolean {
  const step = Math.max(1, Math.ceil(n / max));
  return (n - 1 - i) % step === 0;
}
