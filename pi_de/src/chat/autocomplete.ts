// Pure logic for the composer's `/command` and `@file` completion (the popup only renders this).
import type { CommandInfo, FileEntry } from "../protocol/types";

export interface Trigger {
  kind: "command" | "file";
  /** Text typed after the `/` or `@`. */
  query: string;
  /** Range in the text that a completion replaces (the `/` or `@` included). */
  start: number;
  end: number;
}

export interface Completion {
  value: string;
  label: string;
  detail?: string;
  isDir?: boolean;
  /** Listed but not runnable from here (the detail says why): choosing it does not complete. */
  disabled?: boolean;
}

/** `/name` only as the first word of the prompt (that is what pi runs as a command); `@path`
 *  at the start or after whitespace, up to the caret. */
export function detectTrigger(text: string, caret: number): Trigger | null {
  const before = text.slice(0, caret);
  const cmd = /^\/([^\s]*)$/.exec(before);
  if (cmd) return { kind: "command", query: cmd[1], start: 0, end: caret };
  const file = /(^|\s)@([^\s@]*)$/.exec(before);
  if (file) return { kind: "file", query: file[2], start: caret - file[2].length - 1, end: caret };
  return null;
}

export function commandCompletions(commands: CommandInfo[], query: string, max = 15): Completion[] {
  const q = query.toLowerCase();
  const starts = commands.filter((c) => c.name.toLowerCase().startsWith(q));
  const contains = commands.filter((c) => !c.name.toLowerCase().startsWith(q) && c.name.toLowerCase().includes(q));
  return [...starts, ...contains].slice(0, max).map((c) =>
    c.available === false
      ? { value: c.name, label: `/${c.name}`, detail: `not available here: ${c.note ?? "this pi has no API for it"}`, disabled: true }
      : { value: c.name, label: `/${c.name}`, detail: c.description },
  );
}

export function fileCompletions(files: FileEntry[], query: string, max = 15): Completion[] {
  return files
    .filter((f) => f.path.startsWith(query))
    .slice(0, max)
    .map((f) => ({ value: f.path, label: f.is_dir ? `${f.path}/` : f.path, isDir: f.is_dir }));
}

/** Inserts a completion. Directories end with `/` and keep the popup open for drilling down. */
export function applyCompletion(text: string, t: Trigger, c: Completion): { text: string; caret: number } {
  const insert = t.kind === "command" ? `/${c.value} ` : c.isDir ? `@${c.value.replace(/\/$/, "")}/` : `@${c.value} `;
  const next = text.slice(0, t.start) + insert + text.slice(t.end);
  return { text: next, caret: t.start + insert.length };
}

/** Moves the highlighted row, wrapping around. */
export function moveSelection(index: number, delta: number, count: number): number {
  if (count <= 0) return 0;
  return (((index + delta) % count) + count) % count;
}
