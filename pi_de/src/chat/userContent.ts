// A user message as the person wrote it (pure): the bridge appends each attached text file to the prompt's
// text as `\n\n<file name="NAME">\nCONTENT\n</file>` (specs/protocol.md §3.3 "attachments"); those blocks are
// shown as chips, not as markup. Only a tail made wholly of such blocks is split off; anything else stays text.
export interface FileChip {
  name: string;
  body: string;
}

const BLOCK = /^\n\n<file name="([^"<>\n]*)">\n([\s\S]*?)\n<\/file>/;

export function splitFiles(text: string): { text: string; files: FileChip[] } {
  const first = text.indexOf('\n\n<file name="');
  if (first < 0) return { text, files: [] };
  // Try each start from the first one on: the tail must be blocks only.
  for (let start = first; start >= 0; start = text.indexOf('\n\n<file name="', start + 1)) {
    const files: FileChip[] = [];
    let rest = text.slice(start);
    let m: RegExpExecArray | null;
    while ((m = BLOCK.exec(rest))) {
      files.push({ name: m[1], body: m[2] });
      rest = rest.slice(m[0].length);
    }
    if (files.length && rest === "") return { text: text.slice(0, start), files };
  }
  return { text, files: [] };
}

/** "12 lines" / "1 line" for a chip's tooltip. */
export function lineCount(body: string): string {
  const n = body === "" ? 0 : body.split("\n").length;
  return `${n} line${n === 1 ? "" : "s"}`;
}
