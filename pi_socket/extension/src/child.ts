// The link to this pi's bridge, kept on globalThis. By default the bridge runs inside this machine's service
// (`<python> -m pi_socket serve`): the shim connects to its unix socket `agents.sock` (in the runtime dir:
// $XDG_RUNTIME_DIR/hyper-pi, else $XDG_STATE_HOME/hyper-pi/run, else ~/.local/state/hyper-pi/run), writes one
// `attach` line (pi's pid, cwd and the environment a bridge reads), then the same JSON lines as over a bridge
// child's stdio. No service answering → the shim starts one, detached (never a child that dies with pi), and
// retries for SERVICE_WAIT_MS; then it falls back to a bridge child (`<python> -m pi_socket.bridge`, one per pi,
// piped stdio). `PI_SOCKET_MODE=bridge` always uses the child; `service` (the default) tries the service first.
//
// pi re-evaluates this module on /new, /reload, /resume and /fork, so
// module-level state would be lost and a second bridge would fight for the
// port. Everything that must live as long as pi does (the link, its port, the
// node id, the restart timer) sits in one object on globalThis; each new
// module instance only replaces `dispatch` (who handles the bridge's requests).
//
// Rules from specs/pi-runtime.md §2 applied here: no throw ever escapes a callback
// (every listener is wrapped), every stream has an 'error' listener, nothing is
// printed (TUI), and after `stop()` nothing keeps Node alive (`pi -p` exits).
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
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
/** How long the shim waits for a machine service (started by it, or starting) before it starts a bridge child. */
export const SERVICE_WAIT_MS = 2_000;
const SERVICE_RETRY_FIRST_MS = 25;
const SERVICE_RETRY_MAX_MS = 250;
export const SOCKET_NAME = "agents.sock";
const SUN_PATH_MAX = 107; // bytes of a unix socket path (Linux sun_path is 108 with its NUL)
/** Environment names a bridge reads: what the `attach` line carries (pi_socket/shimwire.py attach_env_key). */
const ATTACH_ENV_PREFIXES = ["PI_SOCKET_", "HYPI"];
const ATTACH_ENV_KEYS = new Set(["PI_CODING_AGENT_DIR", "HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"]);

export interface Launch {
	python: string;
	args: string[];
	env: Record<string, string>;
	cwd?: string;
}

/** Where this pi's bridge runs: in the machine service (a socket) or in a child process (piped stdio). */
export interface Link {
	kind: "service" | "bridge";
	input: NodeJS.WritableStream & { writable: boolean; destroyed: boolean; writableLength: number };
	/** Drop a bridge that stopped reading (SIGKILL the child, destroy the socket): the close handler restarts it. */
	kill: () => void;
	/** pi is quitting: end the input and let go of every handle so Node can exit now. */
	release: () => void;
}

export interface ShimState {
	nodeId: string;
	/** Proves to the hypivisor that this pi owns `nodeId` (register.node_secret); the same for every bridge it starts. */
	nodeSecret: string;
	/** The current link (service socket or bridge child); undefined while none is up. */
	link?: Link;
	child?: ChildProcess;
	/** A connection to the service is being tried (with its retries and, after SERVICE_WAIT_MS, the fallback). */
	connecting?: boolean;
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
	const stdin = st.link?.input;
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

/** Write queued lines to `link` (one pipe or socket write); a bridge that stopped reading for long is dropped. */
function writeChunk(st: ShimState, link: Link, chunk: string): void {
	if (st.link !== link) return; // queued for a bridge that has gone
	const stdin = link.input;
	if (!stdin.writable || stdin.destroyed) return;
	try {
		if (!stdin.write(chunk) && st.blockedSince === undefined) st.blockedSince = Date.now();
		const stuckFor = st.blockedSince === undefined ? 0 : Date.now() - st.blockedSince;
		if (stdin.writableLength > STDIN_STUCK_BYTES && stuckFor > STDIN_STUCK_MS) {
			st.blockedSince = undefined;
			shimLog(st, "error", "bridge stopped reading its stdin; restarting it", { buffered: stdin.writableLength, kind: link.kind });
			link.kill();
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
	if (st.link || st.connecting || st.stopped || st.restartTimer) return;
	startLink(st);
}

/** `PI_SOCKET_MODE`: "bridge" (a bridge child per pi) or "service" (the machine service; the default). */
export function linkMode(env: Record<string, string | undefined> = process.env): "service" | "bridge" {
	return (env.PI_SOCKET_MODE ?? "").trim().toLowerCase() === "bridge" ? "bridge" : "service";
}

/** The machine service's runtime dir, as pi_socket/machine/lock.py runtime_dir computes it. */
export function runtimeDir(env: Record<string, string | undefined> = process.env): string {
	const xdg = (env.XDG_RUNTIME_DIR ?? "").trim();
	if (xdg) return path.join(xdg, "hyper-pi");
	const state = (env.XDG_STATE_HOME ?? "").trim();
	const base = state || path.join(env.HOME || os.homedir(), ".local", "state");
	return path.join(base, "hyper-pi", "run");
}

/** The environment a bridge reads (the `attach` line's `env`), from the launch environment. */
export function attachEnv(env: Record<string, string>): Record<string, string> {
	const out: Record<string, string> = {};
	for (const [k, v] of Object.entries(env)) {
		if (typeof v === "string" && (ATTACH_ENV_KEYS.has(k) || ATTACH_ENV_PREFIXES.some((p) => k.startsWith(p)))) out[k] = v;
	}
	return out;
}

/** The environment of this pi's bridge: the launch environment, its node id and secret, its last port. */
function bridgeEnv(st: ShimState, launch: Launch): Record<string, string> {
	const env: Record<string, string> = { ...launch.env, PI_SOCKET_NODE_ID: st.nodeId, PI_SOCKET_NODE_SECRET: st.nodeSecret };
	if (st.port) env.PI_SOCKET_PREFERRED_PORT = String(st.port);
	return env;
}

function startLink(st: ShimState): void {
	const launch = st.launch;
	if (!launch || st.stopped) return;
	if (linkMode({ PI_SOCKET_MODE: process.env.PI_SOCKET_MODE }) === "bridge") return startChild(st);
	const sockPath = path.join(runtimeDir(launch.env), SOCKET_NAME);
	if (Buffer.byteLength(sockPath) > SUN_PATH_MAX) {
		// no service can listen there (a unix socket path is at most 107 bytes): straight to a bridge child
		shimLog(st, "warn", "the machine service's socket path is too long; starting a bridge child", { path: sockPath });
		return startChild(st);
	}
	connectService(st, Date.now(), false, SERVICE_RETRY_FIRST_MS);
}

/** Connect to the machine service; start it when nothing answers; a bridge child after SERVICE_WAIT_MS. */
function connectService(st: ShimState, since: number, started: boolean, delay: number): void {
	const launch = st.launch;
	if (!launch || st.stopped) {
		st.connecting = false;
		return;
	}
	st.connecting = true;
	const sockPath = path.join(runtimeDir(launch.env), SOCKET_NAME);
	let sock: net.Socket;
	try {
		sock = net.connect({ path: sockPath });
	} catch (err) {
		shimLog(st, "warn", "cannot reach the machine service; starting a bridge child", errorFields("service.connect", err));
		st.connecting = false;
		startChild(st);
		return;
	}
	let connected = false;
	sock.on("connect", boundary(st, "service.connect", () => {
		connected = true;
		st.connecting = false;
		if (st.stopped) {
			sock.destroy();
			return;
		}
		useSocket(st, launch, sock);
	}));
	sock.on("error", boundary(st, "service.error", (err: Error) => {
		if (connected) return; // 'close' follows and restarts the link
		sock.destroy();
		const wait = Number(process.env.PI_SOCKET_SERVICE_WAIT_MS) || SERVICE_WAIT_MS;
		if (!started) {
			startService(st, launch);
			started = true;
		}
		if (Date.now() - since >= wait || st.stopped) {
			st.connecting = false;
			if (st.stopped) return;
			shimLog(st, "warn", "no machine service answered; starting a bridge child", { error: String(err?.message ?? err), waited_ms: Date.now() - since });
			startChild(st);
			return;
		}
		const timer = setTimeout(boundary(st, "service.retry", () => connectService(st, since, started, Math.min(SERVICE_RETRY_MAX_MS, delay * 2))), delay);
		timer.unref?.();
	}));
}

/** The service's stdout/stderr (what its own log cannot hold: a crash before logging starts) stays small: a file
 * over this size becomes `pi-socket-machine.out.1` (the one before is dropped) when the next service starts. */
export const SERVICE_OUT_MAX = 1024 * 1024;

/** Opens `<dir>/pi-socket-machine.out` for appending, after moving it aside when it is over `maxBytes`. */
export function openServiceOut(dir: string, maxBytes = SERVICE_OUT_MAX): number {
	fs.mkdirSync(dir, { recursive: true });
	const file = path.join(dir, "pi-socket-machine.out");
	try {
		if (fs.statSync(file).size > maxBytes) fs.renameSync(file, `${file}.1`);
	} catch {
		/* no file yet, or a racing start moved it: either way append to a fresh one */
	}
	return fs.openSync(file, "a", 0o600);
}

/** `<python> -m pi_socket serve`, detached in its own session (it outlives this pi), output to the log dir. */
function startService(st: ShimState, launch: Launch): void {
	let out: number | "ignore" = "ignore";
	try {
		out = openServiceOut(launch.env.PI_SOCKET_LOG_DIR || path.join(launch.env.HOME || os.homedir(), ".pi", "logs"));
	} catch {
		out = "ignore";
	}
	try {
		const child = spawn(launch.python, ["-m", "pi_socket", "serve"], {
			detached: true,
			stdio: ["ignore", out, out],
			env: launch.env,
			cwd: launch.env.HOME && fs.existsSync(launch.env.HOME) ? launch.env.HOME : "/",
			windowsHide: true,
		});
		// A missing python shows as no service answering: the bridge child follows (and fails the same way, logged).
		child.on("error", (err: Error) => {
			shimLog(st, "warn", "could not start the machine service", { error: String(err?.message ?? err), python: launch.python });
		});
		child.unref();
		if (child.pid) shimLog(st, "info", "started the machine service", { pid: child.pid, python: launch.python });
	} catch (err) {
		shimLog(st, "warn", "could not start the machine service", { ...errorFields("service.spawn", err), python: launch.python });
	} finally {
		if (typeof out === "number") {
			try {
				fs.closeSync(out);
			} catch {
				/* ignore */
			}
		}
	}
}

function useSocket(st: ShimState, launch: Launch, sock: net.Socket): void {
	const link: Link = {
		kind: "service",
		input: sock,
		kill: () => sock.destroy(),
		release: () => {
			try {
				sock.end();
				sock.removeAllListeners("data");
				sock.unref();
			} catch {
				/* ignore */
			}
		},
	};
	attachLink(st, link);
	sock.setEncoding("utf8");
	sock.on("data", lineReader(st));
	sock.on("drain", () => {
		st.blockedSince = undefined;
	});
	sock.on("close", boundary(st, "service.close", () => {
		if (!st.stopped && st.link === link) shimLog(st, "warn", "machine service closed this agent's link; reconnecting", { restarts: st.restarts });
		onExit(st, link);
	}));
	writeLine(st, { t: "attach", v: 1, pid: process.pid, cwd: launch.cwd ?? process.cwd(), env: attachEnv(bridgeEnv(st, launch)) });
	const hello = st.hello?.();
	if (hello) writeLine(st, hello);
}

/** Make `link` current: a fresh line queue writing to it. */
function attachLink(st: ShimState, link: Link): void {
	st.link = link;
	st.out = new LineQueue(
		(chunk) => writeChunk(st, link, chunk),
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
	st.blockedSince = undefined;
}

/** A reader of the bridge's JSON lines (split on "\n" only), each handed to `dispatch`. */
function lineReader(st: ShimState): (chunk: string) => void {
	let buf = "";
	return boundary(st, "bridge.stdout", (chunk: string) => {
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
	}) as (chunk: string) => void;
}

function startChild(st: ShimState): void {
	const launch = st.launch;
	if (!launch || st.stopped) return;
	const env = bridgeEnv(st, launch);
	let child: ChildProcess;
	try {
		child = spawn(launch.python, launch.args, { stdio: ["pipe", "pipe", "pipe"], env, cwd: launch.cwd, windowsHide: true });
	} catch (err) {
		shimLog(st, "error", "could not start the bridge", { ...errorFields("bridge.spawn", err), python: launch.python });
		scheduleRestart(st);
		return;
	}
	const stdin = child.stdin;
	if (!stdin) return;
	st.child = child;
	const link: Link = {
		kind: "bridge",
		input: stdin,
		kill: () => child.kill("SIGKILL"),
		release: () => {
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
		},
	};
	attachLink(st, link);
	child.stdout?.setEncoding("utf8");
	child.stdout?.on("data", lineReader(st));
	child.stdout?.on("error", () => {});
	child.stderr?.on("data", () => {}); // drained, never shown: the TUI owns the terminal
	child.stderr?.on("error", () => {});
	stdin.on("error", () => {}); // EPIPE when the bridge dies
	stdin.on("drain", () => {
		st.blockedSince = undefined;
	});
	child.on("error", boundary(st, "bridge.error", (err: Error) => {
		shimLog(st, "error", "bridge process error", { error: String(err?.message ?? err), python: launch.python });
		onExit(st, link);
	}));
	child.on("exit", boundary(st, "bridge.exit", (code: number | null, signal: string | null) => {
		if (!st.stopped) shimLog(st, "warn", "bridge exited; restarting", { code, signal, restarts: st.restarts });
		onExit(st, link);
	}));
	const hello = st.hello?.();
	if (hello) writeLine(st, hello);
}

function onExit(st: ShimState, link: Link): void {
	if (st.link !== link) return; // 'error' and 'exit' can both fire
	st.link = undefined;
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
			startLink(st);
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

/** pi is quitting: say bye, end the link, and let go of every handle so Node can exit now. */
export function stopBridge(st: ShimState, reason: string): void {
	st.stopped = true;
	if (st.restartTimer) clearTimeout(st.restartTimer);
	st.restartTimer = undefined;
	const link = st.link;
	if (!link) return;
	writeLine(st, { t: "bye", reason });
	flushLines(st); // everything queued, then bye, reaches the pipe before it is closed
	link.release();
}
