// Coalesced writes to the bridge's stdin (pure: the sink and the schedulers are passed in).
//
// Why: a pipe write is a syscall that wakes the bridge, and on a shared VM each one cost pi ~100 µs of CPU.
// While pi streams a reply it fires one `message_update` per delta, often dozens in one event-loop turn;
// writing each line on its own cost pi more CPU than everything else the shim does (bench/RESULTS.md,
// "What was tried"). Lines are queued and written as one chunk at the end of the turn (`setImmediate`), or
// at once when FLUSH_BYTES are queued. A *lazy* line (an event while nobody watches the agent: only the
// bridge's own history needs it, protocol §4.2) waits up to LAZY_MS for company instead, so an unwatched
// run costs a handful of writes instead of one per turn. Order is always kept (a prompt line flushes the
// lazy ones queued before it); `flush()` writes what is queued synchronously (before `bye` and `end()`,
// and when a client starts watching).

/** How long a lazy line may wait for the next flush. */
export const LAZY_MS = 250;

/** Queued bytes (UTF-16 units, close enough) that trigger an immediate write. */
export const FLUSH_BYTES = 64 * 1024;

export class LineQueue {
	private parts: string[] = [];
	private size = 0;
	private scheduled = false;
	private delayed = false;
	private readonly sink: (chunk: string) => void;
	private readonly schedule: (fn: () => void) => void;
	private readonly later: ((fn: () => void) => void) | undefined;
	private readonly maxBytes: number;

	/**
	 * `sink` receives each chunk (one or more whole lines, in order); `schedule` runs a callback after the
	 * current turn (`setImmediate` in the shim), `later` one after LAZY_MS (an unref'd timer: queued lines are
	 * flushed at pi's exit anyway); neither may throw into its caller. Without `later` every line is prompt.
	 */
	constructor(
		sink: (chunk: string) => void,
		schedule: (fn: () => void) => void,
		maxBytes: number = FLUSH_BYTES,
		later?: (fn: () => void) => void,
	) {
		this.sink = sink;
		this.schedule = schedule;
		this.maxBytes = maxBytes;
		this.later = later;
	}

	/**
	 * Queue one line (with its "\n"); writes now when the queue is over the threshold. A `lazy` line is
	 * written with the next prompt line's flush or after LAZY_MS, whichever comes first.
	 */
	push(line: string, lazy = false): void {
		this.parts.push(line);
		this.size += line.length;
		if (this.size >= this.maxBytes) {
			this.flush();
			return;
		}
		if (this.scheduled) return; // everything queued goes out at the end of this turn
		if (lazy && this.later) {
			if (!this.delayed) {
				this.delayed = true;
				this.later(() => {
					this.delayed = false;
					this.flush();
				});
			}
			return;
		}
		this.scheduled = true;
		this.schedule(() => {
			this.scheduled = false;
			this.flush();
		});
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
