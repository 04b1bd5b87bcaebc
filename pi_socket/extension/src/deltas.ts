// Streaming deltas only while somebody watches (pure: no pi calls, no I/O).
//
// Why: pi awaits every extension handler of every event. `message_update` is most of a run's events
// (one per streamed token), and merely having a handler for it cost pi ~5 % CPU in the overhead
// benchmark (bench/RESULTS.md, "What was tried") while nobody may be looking. So the shim subscribes to
// `message_update` only while the bridge has a client (the bridge's `watch` line, specs/protocol.md
// §4.2) and unsubscribes when the last one leaves (pi >= 1; pi 0.7x cannot unsubscribe, so there the
// handler stays and drops deltas). The same goes for the other client-only events (index.ts), among
// them `message_start`: while nobody watches, the shim does not know whether a message is streaming.
//
// A client that connects while a message is streaming gets `init_state` with the bridge's partial copy,
// which misses the deltas nobody forwarded. So after the bridge gains a client, the first delta that
// arrives before any `message_start`/`message_end` (it belongs to a message that began unwatched) carries
// pi's full partial `message` (a one-off "snapshot"); the bridge replaces its copy with it and sends its
// clients a fresh `init_state`, after which plain deltas continue. A message that starts while watched
// needs none.

type Json = Record<string, unknown>;

export type DeltaAction = "drop" | "plain" | "snapshot";

export class DeltaGate {
	/** Since the watch began, no message has started or ended: a delta now belongs to one that began unwatched. */
	private missed: boolean;
	watching: boolean;

	constructor(watching: boolean) {
		this.watching = watching;
		this.missed = watching; // a new module instance (after /new) cannot know what streamed before it
	}

	/** Feed message_start, message_end and agent_end (the shim's other events are ignored). */
	observe(e: Json): void {
		if (e.type === "message_start" || e.type === "message_end" || e.type === "agent_end") this.missed = false;
	}

	/** The bridge gained its first client (true) or lost its last one (false). */
	setWatching(on: boolean): void {
		if (on === this.watching) return;
		this.watching = on;
		if (on) this.missed = true;
	}

	/** What to do with one `message_update`. */
	delta(): DeltaAction {
		if (!this.watching) return "drop";
		if (this.missed) {
			this.missed = false;
			return "snapshot";
		}
		return "plain";
	}
}
