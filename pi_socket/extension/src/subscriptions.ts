// pi's events → the bridge (never awaited, never thrown), lean while nobody watches (specs/protocol.md §4.2).
import { boundary, ensureBridge, errorFields, flushLines, shimLog, stopBridge, writeLine, type ShimState } from "./child.ts";
import { DeltaGate } from "./deltas.ts";
import { denyAllPending } from "./gate.ts";
import { CONTEXT_USAGE, FORWARDED, ROSTER_EVENTS, SUBSCRIBED_WHILE_WATCHED, TOOL_PROGRESS_MS, WATCH_ONLY } from "./events.ts";
import { cliVersion, launchSpec, piVersion } from "./launch.ts";
import { call, type Ctx, type PiInstance } from "./pi.ts";
import { slimEvent } from "./slim.ts";
import { TurnEnds } from "./turns.ts";

type Json = Record<string, unknown>;

/**
 * Subscribe this module instance to pi's events; returns `setWatching`, which the bridge's `watch` and `ready`
 * lines drive: the client-only events are subscribed while the bridge has a client (deltas.ts, events.ts).
 */
export function subscribe(st: ShimState, pi: PiInstance): (watching: boolean) => void {
	const api = pi.api;
	// Returns undefined if pi refused the subscription, else `off` (pi >= 1's unsubscribe; 0.7x has none;
	// specs/pi-runtime.md §3).
	const on = (name: string, fn: (e: any) => void): { off?: () => void } | undefined => {
		try {
			const off = api.on(name, boundary(st, `on.${name}`, (e: any, c: Ctx) => {
				if (c) pi.ctx = c;
				// pi's events carry their type; copy only one that lacks it.
				if (pi.live) fn(typeof e?.type === "string" ? e : { ...e, type: name });
				return undefined;
			}));
			return { off: typeof off === "function" ? off : undefined };
		} catch (err) {
			shimLog(st, "warn", "pi.on refused an event name", { event: name, ...errorFields(`on.${name}`, err), needsHardening: false });
			return undefined;
		}
	};

	on("session_start", (e) => {
		if (!pi.version) pi.version = piVersion(pi.ctx);
		if (st.link) writeLine(st, { t: "session", reason: e?.reason ?? null, ...pi.sessionFacts() });
		else ensureBridge(st, launchSpec(call(() => pi.ctx?.cwd)));
	});
	on("session_shutdown", (e) => {
		pi.live = false;
		if (e?.reason === "quit" || e?.reason === undefined) {
			denyAllPending(st, "pi is quitting");
			stopBridge(st, "quit");
		}
	});

	// pi >= 1: turn_end is rebuilt here instead of subscribed to (a turn_end handler makes pi project
	// the whole transcript twice per turn; turns.ts). Unknown version: subscribe, as on 0.7x.
	const major = Number((cliVersion() ?? "").split(".")[0]);
	const turns = major >= 1 ? new TurnEnds() : undefined;
	// message_update and SUBSCRIBED_WHILE_WATCHED: subscribed only while the bridge has a client (deltas.ts).
	// On pi >= 1 `pi.on` returns an unsubscribe function; pi 0.7x's returns nothing, so there the handlers
	// stay: deltas are dropped by the gate, the rest by `send`.
	const gate = new DeltaGate(st.watching === true);

	// Unwatched tool progress: the last mark sent per running call (cleared at its end; bounded).
	const progress = new Map<string, number>();
	const send = (e: Json) => {
		const watching = st.watching === true;
		const type = String(e.type);
		if (!watching && WATCH_ONLY.has(type)) return; // the bridge refreshes context usage when a run ends
		if (type === "tool_execution_end") progress.delete(String(e.toolCallId));
		if (!watching && type === "tool_execution_update") {
			const id = String(e.toolCallId);
			const now = Date.now();
			if (now - (progress.get(id) ?? 0) < TOOL_PROGRESS_MS) return;
			if (progress.size > 100) progress.clear();
			progress.set(id, now);
			writeLine(st, { t: "event", e: { type, toolCallId: e.toolCallId, toolName: e.toolName } }, true);
			return;
		}
		const slim = slimEvent(e);
		if (slim) writeLine(st, { t: "event", e: slim }, !watching && !ROSTER_EVENTS.has(type));
		if (type === "turn_end") {
			const u = pi.contextUsage();
			if (u) writeLine(st, { t: "event", e: { type: CONTEXT_USAGE, ...u } });
		}
	};
	const forward = (ev: Json) => {
		gate.observe(ev);
		if (turns) {
			const due = turns.before(ev);
			if (due) send(due);
		}
		send(ev);
	};
	for (const name of FORWARDED) {
		if (name === "message_update" || SUBSCRIBED_WHILE_WATCHED.includes(name)) continue;
		on(name, forward);
	}
	const watchOnly = SUBSCRIBED_WHILE_WATCHED.filter((n) => !(n === "turn_end" && turns)); // pi >= 1: rebuilt

	let subscriptions: ({ off?: () => void } | undefined)[] | undefined;
	const onDelta = (e: any) => {
		const action = gate.delta();
		if (action === "drop") return;
		const slim = slimEvent(e);
		if (slim && action === "snapshot" && e?.message?.role === "assistant") slim.message = e.message;
		if (slim) writeLine(st, { t: "event", e: slim });
	};
	const setWatching = (watching: boolean): void => {
		st.watching = watching;
		gate.setWatching(watching);
		if (watching) {
			if (!subscriptions) subscriptions = [on("message_update", onDelta), ...watchOnly.map((n) => on(n, forward))];
			flushLines(st); // lazy lines queued while unwatched: the new client's view continues from them
			return;
		}
		turns?.reset(); // turn_start is no longer followed
		if (subscriptions?.every((s) => !s || s.off)) {
			for (const s of subscriptions) {
				try {
					s?.off?.();
				} catch (err) {
					shimLog(st, "warn", "could not unsubscribe a watch-only event", { ...errorFields("watch", err), needsHardening: false });
				}
			}
			subscriptions = undefined;
		}
	};
	if (st.watching) setWatching(true); // a new module instance (after /new) while a client watches
	return setWatching;
}
