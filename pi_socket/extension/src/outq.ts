// Coalesced writes to the bridge's stdin (pure: the sink and the scheduler are passed in).
//
// Why: a pipe write is a syscall (and wakes the bridge) per line. While pi streams a reply it fires one
// `message_update` per delta, often dozens in one event-loop turn; writing each line on its own cost pi
// more CPU than everything else the shim does (bench/RESULTS.md, "What was tried"). Lines are queued and written as
// one chunk at the end of the turn (`setImmediate`), or at once when FLUSH_BYTES are queued. Order is
// kept; `flush()` writes what is queued synchronously (before `bye` and `end()`).

/** Queued bytes (UTF-16 units, close enough) that trigger an immediate write. */
export const FLUSH_BYTES = 64 * 1024;

export class LineQueue {
	private parts: string[] = [];
	private size = 0;
	private scheduled = false;
	private readonly sink: (chunk: string) => void;
	private readonly schedule: (fn: () => void) => void;
	private readonly maxBytes: number;

	/**
	 * `sink` receives each chunk (one or more whole lines, in order); `schedule` runs a callback after the
	 * current turn (`setImmediate` in the shim) and must not throw into its caller.
	 */
	constructor(sink: (chunk: string) => void, schedule: (fn: () => void) => void, maxBytes: number = FLUSH_BYTES) {
		this.sink = sink;
		this.schedule = schedule;
		this.maxBytes = maxBytes;
	}

	/** Queue one line (with its "\n"); writes now when the queue is over the threshold. */
	push(line: string): void {
		this.parts.push(line);
		this.size += line.length;
		if (this.size >= this.maxBytes) {
			this.flush();
			return;
		}
		if (!this.scheduled) {
			this.scheduled = true;
			this.schedule(() => {
				this.scheduled = false;
				this.flush();
			});
		}
	}

	/** Write everything queued as one chunk (no-op when empty). */
	flush(): void {
		if (this.parts.length === 0) return;
		const chunk = this.parts.length === 1 ? this.parts[0] : this.parts.join("");
		this.parts = [];
		this.size = 0;
		this.sink(chunk);
	}

	/** Drop what is queued (the child it was meant for is gone). */
	clear(): void {
		this.parts = [];
		this.size = 0;
	}

	get pendingLines(): number {
		return this.parts.length;
	}

	get pendingBytes(): number {
		return this.size;
	}
}
