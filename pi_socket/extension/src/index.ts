// pi-socket shim: makes this pi visible and drivable from Hyper-Pi.
//
// It runs inside pi's Node process, so it stays tiny and dependency-free: it
// starts the Python bridge (`<python> -m pi_socket.bridge`) as a child with
// piped stdio, writes one JSON line per pi event and answers the bridge's
// requests (specs/protocol.md §4). Servers, clients, history and registration
// all live in the bridge, where a crash cannot take pi down.
//
// Works on pi 0.73.x (@mariozechner) and 1.5.x (@earendil-works) from one
// file: only type imports from pi, capabilities are feature-detected, and
// events one version lacks are simply never fired there.
import type { ExtensionAPI } from "@mariozechner/pi-coding-agent"; // erased at load: no value import from pi
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
	boundary,
	claimPrompt,
	ensureBridge,
	errorFields,
	flushLines,
	onReady,
	releasePrompt,
	shared,
	shimLog,
	stopBridge,
	writeLine,
	type BridgeState,
	type Launch,
} from "./bridge.ts";
import { DeltaGate } from "./deltas.ts";
import { branchMessages, modelName, slimEvent } from "./slim.ts";
import { TurnEnds } from "./turns.ts";

type Json = Record<string, unknown>;
type Ctx = any; // ExtensionContext differs between versions; every use is guarded

/** Events forwarded to the bridge (§4.1). Names a pi version does not know never fire there. */
const FORWARDED = [
	"agent_start", "agent_end", "agent_settled", "agent_before_settle",
	"turn_start", "turn_end", "message_start", "message_update", "message_end",
	"tool_execution_start", "tool_execution_update", "tool_execution_end",
	"queue_update", "session_info_changed", "model_select", "thinking_level_select",
	"auto_retry_start", "auto_retry_end", "session_before_compact", "session_compact",
	"session_compact_failed", "compaction_start", "compaction_end", "ui_prompt_start", "ui_prompt_end",
];

// While the bridge has no client (most of an agent's life) it needs only what its own state is built from
// (protocol §4.2 "Lean while nobody watches"): the lifecycle, `message_end` (history, tokens, cost), name,
// model. The client-only events are then neither subscribed to (pi awaits every handler of every event, so
// each one costs pi CPU; pi >= 1 can unsubscribe) nor sent (pi 0.7x cannot unsubscribe: dropped); a client
// that starts watching gets `init_state` from the bridge's state and every event from then on.
/** Subscribed only while watched. message_update has its own handler (deltas.ts); turn_end is pi 0.7x's. */
const SUBSCRIBED_WHILE_WATCHED = [
	"message_start", "turn_start", "turn_end", "tool_execution_start", "tool_execution_update", "tool_execution_end",
	"agent_before_settle", "queue_update",
];
/** Sent only while watched. */
const WATCH_ONLY = new Set([...SUBSCRIBED_WHILE_WATCHED, "message_update", "context_usage"]);
/** Written at once even while nobody watches (the roster shows them); other unwatched lines are lazy (outq.ts). */
const ROSTER_EVENTS = new Set(["agent_start", "agent_end", "agent_settled", "session_info_changed", "model_select"]);

const SHIM_DIR = (() => {
	try {
		return path.dirname(typeof __filename === "string" ? __filename : new URL(import.meta.url).pathname);
	} catch {
		return "";
	}
})();

function agentDir(): string {
	const d = process.env.PI_CODING_AGENT_DIR;
	if (d) return d.startsWith("~") ? path.join(os.homedir(), d.slice(1)) : d;
	return path.join(os.homedir(), ".pi", "agent");
}

function readJson(file: string): Json | undefined {
	try {
		return JSON.parse(fs.readFileSync(file, "utf8"));
	} catch {
		return undefined;
	}
}

/**
 * How to start the bridge. `python -m pi_socket install` writes `pi-socket.json`
 * into the agent dir ({python, pythonpath}); `PI_SOCKET_PYTHON` overrides the
 * interpreter. Without a config (e.g. `pi install <repo>/pi_socket/extension`
 * by hand) the repo this file lives in is used, with its `.venv` if present.
 */
export function launchSpec(cwd: string | undefined): Launch {
	const cfg = readJson(path.join(agentDir(), "pi-socket.json")) ?? {};
	const repo = SHIM_DIR ? path.resolve(SHIM_DIR, "..", "..", "..") : "";
	const inRepo = !!repo && fs.existsSync(path.join(repo, "pi_socket", "bridge", "__main__.py"));
	const venvPython = inRepo ? path.join(repo, ".venv", "bin", "python") : "";
	const python =
		process.env.PI_SOCKET_PYTHON ||
		(typeof cfg.python === "string" && cfg.python) ||
		(venvPython && fs.existsSync(venvPython) ? venvPython : "python3");
	const pythonpath = typeof cfg.pythonpath === "string" && cfg.pythonpath ? cfg.pythonpath : inRepo ? repo : "";
	const env: Record<string, string> = {};
	for (const [k, v] of Object.entries(process.env)) if (typeof v === "string") env[k] = v;
	if (pythonpath) env.PYTHONPATH = env.PYTHONPATH ? `${pythonpath}${path.delimiter}${env.PYTHONPATH}` : pythonpath;
	env.PYTHONUNBUFFERED = "1";
	return { python, args: ["-m", "pi_socket.bridge"], env, cwd: cwd && fs.existsSync(cwd) ? cwd : undefined };
}

/** pi's version from its package.json (found from the running CLI); never a value import of pi. */
function piVersion(ctx: Ctx): string {
	// Capability fallback: ctx.mode exists from 1.x on (and with it agent_settled).
	return cliVersion() ?? (ctx && "mode" in ctx && ctx.mode !== undefined ? "1.x" : "0.x");
}

/** pi's version from its package.json, looked up once per pi process (kept on globalThis across /new). */
function cliVersion(): string | undefined {
	const st = shared();
	if (st.piCliVersion === undefined) st.piCliVersion = findCliVersion() ?? null;
	return st.piCliVersion ?? undefined;
}

function findCliVersion(): string | undefined {
	try {
		let dir = path.dirname(fs.realpathSync(process.argv[1] ?? ""));
		for (let i = 0; i < 5; i++) {
			const pkg = readJson(path.join(dir, "package.json"));
			if (pkg && typeof pkg.name === "string" && pkg.name.endsWith("/pi-coding-agent") && typeof pkg.version === "string") {
				return pkg.version;
			}
			dir = path.dirname(dir);
		}
	} catch {
		/* fall through */
	}
	return undefined;
}

export default function piSocket(pi: ExtensionAPI) {
	const st: BridgeState = shared();
	const api = pi as any;
	let ctx: Ctx; // the latest ctx of THIS instance; an old instance's ctx throws after /new or /reload
	let live = true; // false once this instance got session_shutdown
	let version = "";

	const safe = <A extends unknown[], R>(name: string, fn: (...a: A) => R) => boundary(st, name, fn);

	const sessionFacts = (): Json => {
		const sm = ctx?.sessionManager;
		return {
			session_id: call(() => sm?.getSessionId()) ?? null,
			session_file: call(() => sm?.getSessionFile()) ?? null,
			session_name: call(() => api.getSessionName()) ?? null,
			model: modelName(call(() => ctx?.model)),
			tools: listTools(),
			commands: listCommands(),
		};
	};
	const listTools = (): Json[] => {
		const all = call(() => api.getAllTools()) ?? [];
		const active = new Set<string>(call(() => api.getActiveTools()) ?? []);
		return (all as any[]).map((t) => ({ name: t?.name, description: t?.description ?? "", active: active.has(t?.name) }));
	};
	const listCommands = (): Json[] =>
		((call(() => api.getCommands()) ?? []) as any[]).map((c) => ({
			name: c?.name,
			description: c?.description ?? "",
			source: c?.source ?? "extension",
		}));
	const helloLine = (): Json => ({
		t: "hello",
		v: 1,
		node_id: st.nodeId,
		pid: process.pid,
		cwd: call(() => ctx?.cwd) ?? process.cwd(),
		pi_version: version,
		mode: call(() => ctx?.mode) ?? (call(() => ctx?.hasUI) ? "interactive" : "print"),
		session: sessionFacts(),
	});
	const contextUsage = (): Json | undefined => {
		const u = call(() => ctx?.getContextUsage?.());
		return u && typeof u === "object" ? { tokens: u.tokens ?? null, contextWindow: u.contextWindow ?? null, percent: u.percent ?? null } : undefined;
	};

	// ---- requests from the bridge, always answered by the newest module instance ----
	const reply = (id: unknown, ok: boolean, dataOrError?: unknown) => {
		if (id === undefined) return;
		writeLine(st, ok ? { t: "res", id, ok: true, data: dataOrError ?? null } : { t: "res", id, ok: false, error: String(dataOrError) });
	};
	const handleRequest = (m: Json) => {
		const id = m.id;
		try {
			if (!live || !ctx) throw new Error("pi session is not ready");
			switch (m.op) {
				case "send": {
					const text = typeof m.text === "string" ? m.text : "";
					const images = Array.isArray(m.images) ? m.images : [];
					const content = images.length ? [{ type: "text", text }, ...images] : text;
					const promptId = typeof m.prompt_id === "string" && m.prompt_id ? m.prompt_id : undefined;
					// Kept on globalThis, so a prompt resent through a restarted bridge is still not doubled.
					if (promptId && claimPrompt(st, promptId)) return reply(id, true, { duplicate: true });
					// Never synchronously (inside agent_end it would fail or be stranded): next tick, then decide.
					setTimeout(safe("send", () => {
						try {
							const idle = ctx.isIdle();
							const deliverAs = idle ? undefined : m.deliverAs === "steer" || m.deliverAs === "followUp" ? m.deliverAs : "followUp";
							api.sendUserMessage(content, deliverAs ? { deliverAs } : undefined);
							reply(id, true, { duplicate: false });
						} catch (err) {
							if (promptId) releasePrompt(st, promptId);
							reply(id, false, (err as Error)?.message ?? err);
						}
					}), 0);
					return;
				}
				case "abort":
					ctx.abort();
					return reply(id, true);
				case "history":
					return reply(id, true, { messages: branchMessages(ctx.sessionManager.getBranch()) });
				case "state":
					return reply(id, true, {
						session_name: call(() => api.getSessionName()) ?? null,
						model: modelName(call(() => ctx.model)),
						context_usage: contextUsage() ?? null,
						is_streaming: !ctx.isIdle(),
					});
				case "tools":
					return reply(id, true, { tools: listTools() });
				case "commands":
					return reply(id, true, { commands: listCommands() });
				case "set_session_name":
					api.setSessionName(String(m.name ?? ""));
					return reply(id, true);
				case "notify":
					if (ctx.hasUI) ctx.ui.notify(String(m.message ?? ""), m.level === "warning" || m.level === "error" ? m.level : "info");
					return reply(id, true);
				default:
					return reply(id, false, `unknown op ${String(m.op)}`);
			}
		} catch (err) {
			reply(id, false, (err as Error)?.message ?? err);
		}
	};
	const dispatch = (line: Json) => {
		if (line.t === "req") return handleRequest(line);
		if (line.t === "watch") return setWatching(line.on === true);
		if (line.t === "ready") {
			onReady(st, line.port, line.url);
			// A bridge that speaks `watch` says whether it has clients; an older one never will: stream always.
			setWatching(line.watch === true ? line.watching === true : true);
			if (!st.notified && typeof line.url === "string" && call(() => ctx?.hasUI)) {
				st.notified = true; // once per pi process, not per bridge restart or /new
				call(() => ctx.ui.notify(`Hyper-Pi: this agent is at ${line.url}`, "info"));
			}
		}
	};
	// A new module instance (after /new, /reload, /resume, /fork) takes over the bridge's requests.
	st.dispatch = safe("dispatch", dispatch);
	st.hello = safe("hello", helloLine) as () => Json;

	// ---- pi events → bridge (never awaited, never thrown) ----
	// Returns undefined if pi refused the subscription, else `off` (pi >= 1's unsubscribe; 0.7x has none).
	const on = (name: string, fn: (e: any) => void): { off?: () => void } | undefined => {
		try {
			const off = api.on(name, safe(`on.${name}`, (e: any, c: Ctx) => {
				if (c) ctx = c;
				// pi's events carry their type; copy only one that lacks it.
				if (live) fn(typeof e?.type === "string" ? e : { ...e, type: name });
				return undefined;
			}));
			return { off: typeof off === "function" ? off : undefined };
		} catch (err) {
			shimLog(st, "warn", "pi.on refused an event name", { event: name, ...errorFields(`on.${name}`, err), needsHardening: false });
			return undefined;
		}
	};

	on("session_start", (e) => {
		if (!version) version = piVersion(ctx);
		if (st.child) writeLine(st, { t: "session", reason: e?.reason ?? null, ...sessionFacts() });
		else ensureBridge(st, launchSpec(call(() => ctx?.cwd)));
	});
	on("session_shutdown", (e) => {
		live = false;
		if (e?.reason === "quit" || e?.reason === undefined) stopBridge(st, "quit");
	});
	const send = (e: Json) => {
		const watching = st.watching === true;
		const type = String(e.type);
		if (!watching && WATCH_ONLY.has(type)) return; // the bridge refreshes context usage when a run ends
		const slim = slimEvent(e);
		if (slim) writeLine(st, { t: "event", e: slim }, !watching && !ROSTER_EVENTS.has(type));
		if (type === "turn_end") {
			const u = contextUsage();
			if (u) writeLine(st, { t: "event", e: { type: "context_usage", ...u } });
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
	// pi >= 1: turn_end is rebuilt here instead of subscribed to (a turn_end handler makes pi project
	// the whole transcript twice per turn; turns.ts). Unknown version: subscribe, as on 0.7x.
	const major = Number((cliVersion() ?? "").split(".")[0]);
	const turns = major >= 1 ? new TurnEnds() : undefined;
	for (const name of FORWARDED) {
		if (name === "message_update" || SUBSCRIBED_WHILE_WATCHED.includes(name)) continue;
		on(name, forward);
	}
	const watchOnly = SUBSCRIBED_WHILE_WATCHED.filter((n) => !(n === "turn_end" && turns)); // pi >= 1: rebuilt

	// message_update and SUBSCRIBED_WHILE_WATCHED: subscribed only while the bridge has a client (deltas.ts).
	// On pi >= 1 `pi.on` returns an unsubscribe function; pi 0.7x's returns nothing, so there the handlers
	// stay: deltas are dropped by the gate, the rest by `send`.
	const gate = new DeltaGate(st.watching === true);
	let subscriptions: ({ off?: () => void } | undefined)[] | undefined;
	const onDelta = (e: any) => {
		const action = gate.delta();
		if (action === "drop") return;
		const slim = slimEvent(e);
		if (slim && action === "snapshot" && e?.message?.role === "assistant") slim.message = e.message;
		if (slim) writeLine(st, { t: "event", e: slim });
	};
	function setWatching(watching: boolean): void {
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
	}
	if (st.watching) setWatching(true); // a new module instance (after /new) while a client watches

	/** Run a pi getter; a stale ctx or a missing method gives undefined instead of a throw. */
	function call<T>(fn: () => T): T | undefined {
		try {
			return fn();
		} catch {
			return undefined;
		}
	}
}
