// Following the newest message: what the reader has seen at the bottom, and how many messages
// arrived since they scrolled up (the "Jump to latest (n new)" button). Pure; MessageList feeds it.

/** The end of the conversation as the reader last saw it at the bottom. */
export interface SeenMark {
  /** Absolute index one past the newest finished message then. */
  end: number;
  /** A reply was streaming then (it is partly seen, so only its successors count as new). */
  streaming: boolean;
}

/** The mark for what is on screen now. */
export function markSeen(end: number, streaming: boolean): SeenMark {
  return { end, streaming };
}

/**
 * Messages the reader has not seen: the shown message rows (absolute indexes) at or past the mark,
 * plus a reply streaming now. A reply that was already streaming at the mark and is still the
 * newest thing is not new; once it finishes it is the row at `mark.end` and counts like any other.
 */
export function unseenCount(rowIndexes: readonly number[], mark: SeenMark, streaming: boolean): number {
  let n = 0;
  for (const i of rowIndexes) if (i >= mark.end) n++;
  if (streaming && !(mark.streaming && n === 0)) n++;
  return n;
}

/** Ids in `now` that were not in `before`: a prompt this page has just sent. */
export function newIds(before: readonly string[], now: readonly string[]): string[] {
  const had = new Set(before);
  return now.filter((id) => !had.has(id));
}

export function jumpLabel(n: number): string {
  return `Jump to latest (${n} new)`;
}
