// turn_end rebuilt from the events around it (pure: no pi calls, no I/O).
//
// Why: on pi >= 1 a `turn_end` handler is a "boundary": for every turn, pi projects the whole
// transcript (system prompt sections, tool schemas, every message) into `event.context`, twice, just
// because a handler exists, and the shim drops that context anyway (slim.ts). That cost pi ~5 % CPU in
// the overhead benchmark (bench/RESULTS.md, "What was tried"). So on pi >= 1 the shim does not subscribe to
// `turn_end`; it sends `{type:"turn_end", turnIndex, message, toolResults, outcome}` itself, built from
// the turn's `turn_start` and `message_end`s, right before the next `turn_start` or the `agent_end`
// (where pi 1.5 fires its own: `message_end{toolResult} turn_end turn_start` and
// `message_end{stop} turn_end agent_end`). pi's boundary-only fields (`messageEntryId`,
// `toolResultEntryIds`, `entries`, `continue`, `context`) are not sent. pi 0.7x has no boundary: there
// the real event is forwarded as before.

type Json = Record<string, unknown>;

/** pi 1.5's `outcome` from the turn's assistant message. */
export function outcomeOf(message: Json | undefined): string {
	const r = message?.stopReason;
	return r === "aborted" ? "aborted" : r === "error" ? "error" : "completed";
}

export class TurnEnds {
	private open = false;
	private turnIndex: unknown = undefined;
	private message: Json | undefined = undefined;
	private toolResults: Json[] = [];

	/**
	 * Feed each pi event before it is forwarded; returns the previous turn's `turn_end` when it is due
	 * (forward it first), else undefined.
	 */
	before(e: Json): Json | undefined {
		const type = e.type;
		let due: Json | undefined;
		if (type === "turn_start" || type === "agent_end") due = this.close();
		if (type === "turn_start") {
			this.open = true;
			this.turnIndex = e.turnIndex;
			this.message = undefined;
			this.toolResults = [];
		} else if (type === "message_end" && this.open) {
			const m = e.message as Json | undefined;
			if (m && m.role === "assistant") {
				this.message = m;
				this.toolResults = [];
			} else if (m && m.role === "toolResult") {
				this.toolResults.push(m);
			}
		}
		return due;
	}

	/**
	 * Forget the open turn: the shim stops following `turn_start` while nobody watches (index.ts), so a turn
	 * still open then would later close with messages of several turns. A watcher arriving mid-turn gets
	 * turn_end from the next turn on.
	 */
	reset(): void {
		this.open = false;
		this.message = undefined;
		this.toolResults = [];
	}

	private close(): Json | undefined {
		if (!this.open) return undefined;
		this.open = false;
		const message = this.message;
		const toolResults = this.toolResults;
		this.message = undefined;
		this.toolResults = [];
		if (!message) return undefined; // pi fires turn_end only for a turn with an assistant message
		const out: Json = { type: "turn_end" };
		if (this.turnIndex !== undefined) out.turnIndex = this.turnIndex;
		out.message = message;
		out.toolResults = toolResults;
		out.outcome = outcomeOf(message);
		return out;
	}
}
