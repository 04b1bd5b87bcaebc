// One-line headers and previews for pi's built-in tools, TUI-style: a finished card shows a few
// lines and "… N more lines" instead of dumping a whole file into the conversation.
import type { ToolResultLike } from "../protocol/pi";
import { textOf } from "../protocol/pi";

export type Args = Record<string, unknown>;
const str = (v: unknown) => (typeof v === "string" ? v : v == null ? "" : JSON.stringify(v));

/** Home directories are shortened the way pi's TUI does (any OS's home prefix). */
export function shortPath(p: string): string {
  return p.replace(/^\/(?:home|Users)\/[^/]+/, "~").replace(/^\/root(?=\/|$)/, "~");
}

export function toolSummary(name: string, args: Args): string {
  switch (name) {
    case "bash":
      return str(args.command);
    case "read": {
      const range = args.offset || args.limit ? `:${args.offset ?? 1}${args.limit ? `+${args.limit}` : ""}` : "";
      return shortPath(str(args.path)) + range;
    }
    case "write":
    case "edit":
      return shortPath(str(args.path));
    case "ls":
      return shortPath(str(args.path) || ".");
    case "find":
    case "grep":
      return `${str(args.pattern)}${args.path ? ` in ${shortPath(str(args.path))}` : ""}${args.glob ? ` (${str(args.glob)})` : ""}`;
    default: {
      const s = JSON.stringify(args ?? {});
      return s.length > 120 ? s.slice(0, 117) + "…" : s;
    }
  }
}

export const PREVIEW_LINES: Record<string, number> = { read: 10, write: 10, edit: 30, bash: 10, ls: 20, find: 20, grep: 15 };

export function preview(text: string, maxLines: number): { shown: string; hidden: number } {
  const lines = text.replace(/\n$/, "").split("\n");
  if (lines.length <= maxLines) return { shown: lines.join("\n"), hidden: 0 };
  return { shown: lines.slice(0, maxLines).join("\n"), hidden: lines.length - maxLines };
}

export function resultText(r: ToolResultLike | undefined): string {
  return r ? textOf(r.content) : "";
}

export interface DiffLine {
  kind: "add" | "del" | "ctx";
  text: string;
}

/** pi's edit tool reports a unified diff in `details.diff` (lines start with +, - or space);
 *  before the result arrives we show the requested replacements instead. */
export function editDiff(args: Args, result?: ToolResultLike): DiffLine[] {
  const details = result?.details as { diff?: unknown } | undefined;
  if (details && typeof details.diff === "string") {
    return details.diff.split("\n").map((l) => ({ kind: l.startsWith("+") ? "add" : l.startsWith("-") ? "del" : "ctx", text: l }));
  }
  const edits = Array.isArray(args.edits) ? (args.edits as Args[]) : [{ oldText: args.oldText, newText: args.newText }];
  const out: DiffLine[] = [];
  for (const e of edits) {
    for (const l of str(e.oldText).split("\n")) out.push({ kind: "del", text: `-${l}` });
    for (const l of str(e.newText).split("\n")) out.push({ kind: "add", text: `+${l}` });
  }
  return out;
}
