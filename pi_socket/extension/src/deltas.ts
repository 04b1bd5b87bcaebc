// Streaming deltas only while somebody watches (pure: no pi calls, no I/O).
//
// Why: pi awaits every extension handler of every event. `message_update` is most of a run's events
// (one per streamed token), and merely having a handler for it cost pi ~5 % CPU in the overhead
// benchmark (bench/RESULTS.md, "What was tried") while nobody may be looking. So the shim subscribes to
// `message_update` only while the bridge has a client (the bridge's `watch` line, specs/protocol.md
// §4.2) and unsubscribes when the last one leaves (pi >= 1; pi 0.7x cannot unsubscribe, so there the
// handler stays and drops deltas). Everything else (message_start/end, tools, turns) is always
// forwarded: the bridge's history and state never depend on deltas.
//
// A client that connects while a message is streaming gets `init_state` with the bridge's partial copy,
// which misses the deltas nobody forwarded. The first delta forwarded after such a gap carries pi's full
// partial `message` (a one-off "snapshot"); the bridge replaces its copy with it and sends its clients a
// fresh `init_state`, after which plain deltas continue.

type Json = Record<string, unknown>;

export type DeltaAction = "drop" | "plain" | "snapshot";

export class DeltaGate {
	private inFlight = false; // an assistant message is streaming: message_start seen, message_end not yet
	private missed = false; // some deltas of the in-flight message were not forwarded
	watching: boolean;

	constructor(watching: boolean) {
		this.watching = watching;
	}

	/** Feed every event that is always forwarded (message_start/message_end/agent_end matter). */
	observe(e: Json): void {
		if (e.type === "message_start") {
			const m = e.message as Json | undefined;
			this.inFlight = !!m && m.role === "assistant";
			this.missed = this.inFlight && !this.watching;
		} else if (e.type === "message_end" || e.type === "agent_end") {
			this.inFlight = false;
			this.missed = false;
		}
	}

	/** The bridge gained its first client (true) or lost its last one (false). */
	setWatching(on: boolean): void {
		if (on === this.watching) return;
		this.watching = on;
		if (!on && this.inFlight) this.missed = true;
	}

	/** What to do with one `message_update`. */
	delta(): DeltaAction {
		if (!this.watching) {
			if (this.inFlight) this.missed = true;
			return "drop";
		}
		if (this.missed) {
			this.missed = false;
			return "snapshot";
		}
		return "plain";
	}
}
