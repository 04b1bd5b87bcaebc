// The bridge child process (`<python> -m pi_socket.bridge`): one per pi process, kept on globalThis.
//
// pi re-evaluates this module on /new, /reload, /resume and /fork, so
// module-level state would be lost and a second bridge would fight for the
// port. Everything that must live as long as pi does (the child, its port, the
// node id, the restart timer) sits in one object on globalThis; each new
// module instance only replaces `dispatch` (who handles the bridge's requests).
//
// Rules from specs/pi-runtime.md §2 applied here: no throw ever escapes a callback
// (every listener is wrapped), every stream has an 'error' listener, nothing is
// printed (TUI), and after `stop()` nothing keeps Node alive (`pi -p` exits).
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { ApprovalState } from "./gate.ts";
import { LAZY_MS, LineQueue } from "./outq.ts";

type Json = Record<string, unknown>;

export const BACKOFF_FIRST_MS = 500;
export const BACKOFF_MAX_MS = 10_000;
/** A bridge that served this long before dying counts as healthy: its successor starts at the first delay. */
const HEALTHY_AFTER_MS = 30_000;
/** A bridge with this much unread for 30 s has stopped reading (a big history answer drains in seconds): kill it. */
const STDIN_STUCK_BYTES = 64 * 1024 * 1024;
const STDIN_STUCK_MS = 30_000;
/** The bridge writes short lines; a "line" longer than this without a newline is garbage and is dropped. */
const STDOUT_LINE_MAX = 64 * 1024 * 1024;
const LOG_BURST = 200; // log lines per minute, so a failing hot path cannot flood the log

export interface Launch {
	python: string;
	args: string[];
	env: Record<string, string>;
	cwd?: string;
}

export interface ShimState {
	nodeId: string;
	/** Proves to the hypivisor that this pi owns `nodeId` (register.node_secret); the same for every bridge it starts. */
	nodeSecret: string;
	child?: ChildProcess;
	port?: number;
	url?: string;
	notified: boolean;
	stopped: boolean;
	backoffMs: number;
	restartTimer?: ReturnType<typeof setTimeout>;
	restarts: number;
	readyAt?: number;
	/** Lines for the current child, written once per event-loop turn (outq.ts); replaced on each spawn. */
	out?: LineQueue;
	/** A process 'exit' listener flushes `out` (pi exiting without session_shutdown); added once. */
	exitHook?: boolean;
	/** When the bridge's stdin last reported a full buffer (cleared on 'drain'). */
	blockedSince?: number;
	/** Builds the hello line (latest session facts); set by the current module instance. */
	hello?: () => Json;
	/** Handles one bridge line; replaced by each new module instance. */
	dispatch?: (line: Json) => void;
	launch?: Launch;
	logCount: number;
	logWindowStart: number;
	/** pi's version from its package.json (null: not found), looked up once per process. */
	piCliVersion?: string | null;
	/** The bridge has at least one client (its `watch` line): streaming deltas are wanted (deltas.ts). */
	watching?: boolean;
	/** prompt_ids handed to pi (newest last, at most DELIVERED_MAX): a restarted bridge cannot double a prompt. */
	delivered: string[];
	/** The approval gate's policy, rules and open questions (gate.ts), for pi's whole life. */
	approval?: ApprovalState;
	/** A remote /new or /reload waiting for the shim's own command handler to run it (remote.ts). */
	sessionCommand?: { name: string; done: (error?: string) => void };
}

export const DELIVERED_MAX = 1000;

/** True if `promptId` was already handed to pi; otherwise records it (bounded) and returns false. */
export function claimPrompt(st: ShimState, promptId: string): boolean {
	if (st.delivered.includes(promptId)) return true;
	st.delivered.push(promptId);
	if (st.delivered.length > DELIVERED_MAX) st.delivered.splice(0, st.delivered.length - DELIVERED_MAX);
	return false;
}

/** pi refused the prompt: forget the id so a resend is delivered. */
export function releasePrompt(st: ShimState, promptId: string): void {
	const i = st.delivered.lastIndexOf(promptId);
	if (i >= 0) st.delivered.splice(i, 1);
}

const KEY = "__hyperpi_pi_socket_shim__";

/** The process-wide state, created on first use. */
export function shared(): ShimState {
	const g = globalThis as any;
	if (!g[KEY]) {
		g[KEY] = {
			nodeId: process.env.PI_SOCKET_NODE_ID || `${safeHostname()}-${process.pid}`,
			nodeSecret: randomBytes(24).toString("base64url"),
			notified: false,
			stopped: false,
			backoffMs: BACKOFF_FIRST_MS,
			restarts: 0,
			logCount: 0,
			logWindowStart: Date.now(),
			delivered: [],
		} satisfies ShimState;
	}
	return g[KEY] as ShimState;
}

function safeHostname(): string {
	try {
		return os.hostname().split(".")[0] || "pi";
	} catch {
		return "pi";
	}
}

/**
 * Queue one JSON line for the bridge (written with the other lines of this event-loop turn, in order;
 * a `lazy` one may wait up to LAZY_MS, outq.ts); false when the bridge is not running (the line is dropped).
 */
export function writeLine(st: ShimState, obj: Json, lazy = false): boolean {
	const stdin = st.child?.stdin;
	const out = st.out;
	if (!out || !stdin || !stdin.writable || stdin.destroyed) return false;
	let line: string;
	try {
		line = JSON.stringify(obj) + "\n";
	} catch {
		return false; // not serialisable (cycle): nothing sensible to send
	}
	try {
		out.push(line, lazy);
		return true;
	} catch {
		return false;
	}
}

/** Write queued lines to `child` (one pipe write); a bridge that stopped reading for long is killed. */
function writeChunk(st: ShimState, child: ChildProcess, chunk: string): void {
	if (st.child !== child) return; // queued for a bridge that has gone
	const stdin = child.stdin;
	if (!stdin || !stdin.writable || stdin.destroyed) return;
	try {
		if (!stdin.write(chunk) && st.blockedSince === undefined) st.blockedSince = Date.now();
		const stuckFor = st.blockedSince === undefined ? 0 : Date.now() - st.blockedSince;
		if (stdin.writableLength > STDIN_STUCK_BYTES && stuckFor > STDIN_STUCK_MS) {
			st.blockedSince = undefined;
			shimLog(st, "error", "bridge stopped reading its stdin; restarting it", { buffered: stdin.writableLength });
			child.kill("SIGKILL");
		}
	} catch {
		/* EPIPE and friends: the 'exit' handler restarts the bridge */
	}
}

/** Write whatever is queued now (before `bye`, and when pi's process exits). */
export function flushLines(st: ShimState): void {
	try {
		st.out?.flush();
	} catch {
		/* never into pi */
	}
}

/** A log line: through the bridge when it runs, else appended to pi-socket.jsonl directly. */
export function shimLog(st: ShimState, level: string, msg: string, fields: Json = {}): void {
	try {
		const now = Date.now();
		if (now - st.logWindowStart > 60_000) {
			st.logWindowStart = now;
			st.logCount = 0;
		}
		if (++st.logCount > LOG_BURST) return;
		if (writeLine(st, { t: "log", level, msg, ...fields })) return;
		const dir = process.env.PI_SOCKET_LOG_DIR || path.join(os.homedir(), ".pi", "logs");
		fs.mkdirSync(dir, { recursive: true });
		const rec = { ts: new Date().toISOString(), level, component: "shim", msg, node_id: st.nodeId, ...fields };
		fs.appendFileSync(path.join(dir, "pi-socket.jsonl"), JSON.stringify(rec) + "\n");
	} catch {
		/* logging never throws into pi */
	}
}

/** Error fields the hardening helper reads (oplog's format). */
export function errorFields(boundary: string, err: unknown): Json {
	const e = err as { name?: string; message?: string; stack?: string } | undefined;
	return {
		boundary,
		needsHardening: true,
		error: `${e?.name ?? "Error"}: ${e?.message ?? String(err)}`.slice(0, 2000),
		stack: typeof e?.stack === "string" ? e.stack.slice(0, 4000) : undefined,
	};
}

/** `fn` wrapped so that nothing it throws reaches pi (a throw in a timer or stream callback kills pi). */
export function boundary<A extends unknown[], R>(st: ShimState, name: string, fn: (...a: A) => R): (...a: A) => R | undefined {
	return (...a: A) => {
		try {
			return fn(...a);
		} catch (err) {
			shimLog(st, "error", `shim boundary ${name} failed`, errorFields(name, err));
			return undefined;
		}
	};
}

/** Start the bridge unless it runs (or pi is quitting). Safe to call on every session_start. */
export function ensureBridge(st: ShimState, launch: Launch): void {
	st.launch = launch;
	if (st.child || st.stopped || st.restartTimer) return;
	startChild(st);
}

function startChild(st: ShimState): void {
	const launch = st.launch;
	if (!launch || st.stopped) return;
	const env: Record<string, string> = { ...launch.env, PI_SOCKET_NODE_ID: st.nodeId, PI_SOCKET_NODE_SECRET: st.nodeSecret };
	if (st.port) env.PI_SOCKET_PREFERRED_PORT = String(st.port);
	let child: ChildProcess;
	try {
		child = spawn(launch.python, launch.args, { stdio: ["pipe", "pipe", "pipe"], env, cwd: launch.cwd, windowsHide: true });
	} catch (err) {
		shimLog(st, "error", "could not start the bridge", { ...errorFields("bridge.spawn", err), python: launch.python });
		scheduleRestart(st);
		return;
	}
	st.child = child;
	st.out = new LineQueue(
		(chunk) => writeChunk(st, child, chunk),
		(fn) => {
			setImmediate(boundary(st, "bridge.flush", fn));
		},
		undefined,
		(fn) => {
			setTimeout(boundary(st, "bridge.flush", fn), LAZY_MS).unref?.(); // pi's exit flushes what is left
		},
	);
	if (!st.exitHook) {
		st.exitHook = true;
		// Lines of pi's last turn still queued when pi exits without session_shutdown (e.g. SIGTERM).
		process.once("exit", () => flushLines(st));
	}
	let buf = "";
	const onData = boundary(st, "bridge.stdout", (chunk: string) => {
		buf += chunk;
		if (buf.length > STDOUT_LINE_MAX && buf.indexOf("\n") < 0) {
			shimLog(st, "warn", "bridge wrote an over-long line; dropped", { size: buf.length });
			buf = "";
			return;
		}
		let i: number;
		// Split on "\n" only: JSON strings may contain U+2028/U+2029, which readline would treat as line ends.
		while ((i = buf.indexOf("\n")) >= 0) {
			const raw = buf.slice(0, i);
			buf = buf.slice(i + 1);
			if (!raw.trim()) continue;
			let line: Json;
			try {
				line = JSON.parse(raw);
			} catch {
				shimLog(st, "warn", "bridge line is not JSON; skipped", { size: raw.length });
				continue;
			}
			if (line && typeof line === "object") st.dispatch?.(line);
		}
	});
	child.stdout?.setEncoding("utf8");
	child.stdout?.on("data", onData);
	child.stdout?.on("error", () => {});
	child.stderr?.on("data", () => {}); // drained, never shown: the TUI owns the terminal
	child.stderr?.on("error", () => {});
	child.stdin?.on("error", () => {}); // EPIPE when the bridge dies
	child.stdin?.on("drain", () => {
		st.blockedSince = undefined;
	});
	st.blockedSince = undefined;
	child.on("error", boundary(st, "bridge.error", (err: Error) => {
		shimLog(st, "error", "bridge process error", { error: String(err?.message ?? err), python: launch.python });
		onExit(st, child);
	}));
	child.on("exit", boundary(st, "bridge.exit", (code: number | null, signal: string | null) => {
		if (!st.stopped) shimLog(st, "warn", "bridge exited; restarting", { code, signal, restarts: st.restarts });
		onExit(st, child);
	}));
	const hello = st.hello?.();
	if (hello) writeLine(st, hello);
}

function onExit(st: ShimState, child: ChildProcess): void {
	if (st.child !== child) return; // 'error' and 'exit' can both fire
	st.child = undefined;
	st.out?.clear();
	st.out = undefined;
	scheduleRestart(st);
}

function scheduleRestart(st: ShimState): void {
	if (st.stopped || st.restartTimer) return;
	if (st.readyAt !== undefined && Date.now() - st.readyAt > HEALTHY_AFTER_MS) st.backoffMs = BACKOFF_FIRST_MS;
	st.readyAt = undefined;
	const delay = st.backoffMs;
	st.backoffMs = Math.min(BACKOFF_MAX_MS, st.backoffMs * 2);
	st.restartTimer = setTimeout(
		boundary(st, "bridge.restart", () => {
			st.restartTimer = undefined;
			st.restarts += 1;
			startChild(st);
		}),
		delay,
	);
	st.restartTimer.unref?.(); // a pending restart must not keep `pi -p` alive
}

/** The bridge said `ready`: its port is kept for restarts; once it stays up a while the backoff starts over. */
export function onReady(st: ShimState, port: unknown, url: unknown): void {
	if (typeof port === "number" && port > 0) st.port = port;
	if (typeof url === "string") st.url = url;
	st.readyAt = Date.now();
}

/** pi is quitting: say bye, close stdin, and let go of every handle so Node can exit now. */
export function stopBridge(st: ShimState, reason: string): void {
	st.stopped = true;
	if (st.restartTimer) clearTimeout(st.restartTimer);
	st.restartTimer = undefined;
	const child = st.child;
	if (!child) return;
	writeLine(st, { t: "bye", reason });
	flushLines(st); // everything queued, then bye, reaches the pipe before it is closed
	try {
		child.stdin?.end();
	} catch {
		/* already closed */
	}
	// The bridge finishes on its own (deregister, close clients, exit within ~2 s);
	// pi must not wait for it, so drop our references to its pipes.
	try {
		child.stdout?.removeAllListeners("data");
		child.stdout?.destroy();
		child.stderr?.destroy();
		child.unref();
	} catch {
		/* ignore */
	}
}
