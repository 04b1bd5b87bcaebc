// The approval gate: a `tool_call` handler that asks a person before a tool runs (specs/approvals.md).
//
// It lives here, in pi's process, so it keeps asking when the bridge is dead or restarting: pi's own dialog
// (TUI, or the RPC client), the dashboards through the bridge, pi's abort signal and the timeout race, and the
// first answer wins. The policy itself is pure (policy.ts). Nothing here may hang or crash pi: every wait
// races `ctx.signal` and the timeout, and an internal failure blocks the call (never allows it).
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { errorFields, shimLog, writeLine, type ShimState } from "./child.ts";
import { agentDir } from "./launch.ts";
import { call, type Ctx, type PiInstance } from "./pi.ts";
import {
	addRule,
	allowingRule,
	askReason,
	cleanRules,
	commandOf,
	DEFAULT_TIMEOUT_MS,
	denyText,
	isPolicy,
	isShell,
	isUnder,
	parseTimeout,
	rememberRule,
	resolvePiPath,
	summarize,
	timeoutReason,
	type Policy,
	type Rule,
} from "./policy.ts";

type Json = Record<string, unknown>;
export type By = "dashboard" | "terminal" | "rule" | "timeout" | "abort" | "no_ui";

export interface Decision {
	decision: "allow" | "deny";
	by: By;
	reason?: string;
	/** Edit and allow (shell calls): the command that runs instead. */
	command?: string;
	remember?: boolean;
}

export interface PendingApproval {
	id: string;
	toolCallId: string;
	parentToolCallId?: string;
	toolName: string;
	input: unknown;
	policy: Policy;
	why: string;
	queuedAt: number;
	/** Settles the question; false when it was already settled (the first answer wins). */
	decide: (d: Decision) => boolean;
}

export interface ApprovalState {
	policy: Policy;
	rules: Rule[];
	timeoutMs: number;
	/** Questions waiting now, in the order they were asked. */
	pending: Map<string, PendingApproval>;
	/** toolCallId → the command a person put in its place (the tool_result note tells the model). */
	edited: Map<string, string>;
	seq: number;
	logDirReady?: boolean;
}

export const RULES_FILE = "hyper-pi-approvals.json";
export const NO_UI_REASON =
	"approval needed but nobody can answer: pi has no terminal UI here and no Hyper-Pi dashboard is connected";
const GATE_FAILED =
	"Blocked: the Hyper-Pi approval gate failed, so this call did not run (details in pi-socket.jsonl)";

/** The process-wide approval state, read from the environment and the rules file on first use. */
export function approvals(st: ShimState): ApprovalState {
	if (st.approval) return st.approval;
	let file: Json = {};
	const rulesPath = path.join(agentDir(), RULES_FILE);
	try {
		if (fs.existsSync(rulesPath)) {
			const parsed = JSON.parse(fs.readFileSync(rulesPath, "utf8"));
			if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) file = parsed;
			else shimLog(st, "warn", "approval rules file is not a JSON object; ignored", { file: rulesPath });
		}
	} catch (err) {
		shimLog(st, "warn", "approval rules file unreadable; ignored", { file: rulesPath, error: String((err as Error)?.message ?? err) });
	}
	const env = process.env.PI_SOCKET_APPROVAL?.trim().toLowerCase();
	let policy: Policy = "off";
	if (env) {
		if (isPolicy(env)) policy = env;
		else {
			policy = "writes"; // a typo never turns the gate off
			shimLog(st, "warn", "PI_SOCKET_APPROVAL is not off|writes|all; using writes", { value: env.slice(0, 40) });
		}
	} else if (isPolicy(file.policy)) policy = file.policy;
	const rawTimeout = process.env.PI_SOCKET_APPROVAL_TIMEOUT;
	let timeoutMs = parseTimeout(rawTimeout);
	if (timeoutMs === undefined) {
		if (rawTimeout?.trim()) shimLog(st, "warn", "PI_SOCKET_APPROVAL_TIMEOUT is invalid; using 10 minutes", { value: rawTimeout.slice(0, 40) });
		timeoutMs = DEFAULT_TIMEOUT_MS;
	}
	st.approval = { policy, rules: cleanRules(file.rules), timeoutMs, pending: new Map(), edited: new Map(), seq: 0 };
	return st.approval;
}

/** What the bridge learns in `hello` (and again in `policy` lines): the policy, rules and open questions. */
export function approvalSnapshot(st: ShimState): Json {
	const ap = approvals(st);
	return { policy: ap.policy, rules: ap.rules, pending: [...ap.pending.values()].map(requestLine) };
}

function requestLine(p: PendingApproval): Json {
	return {
		t: "approval",
		id: p.id,
		tool_call_id: p.toolCallId,
		parent_tool_call_id: p.parentToolCallId,
		tool_name: p.toolName,
		input: p.input,
		policy: p.policy,
		why: p.why,
		queued_at: p.queuedAt / 1000,
	};
}

function sendPolicy(st: ShimState): void {
	const ap = approvals(st);
	writeLine(st, { t: "policy", policy: ap.policy, rules: ap.rules });
}

/** A dashboard's `set_approval_policy`; returns the new policy and rules. */
export function setPolicy(st: ShimState, policy: unknown, rules: unknown): Json {
	if (!isPolicy(policy)) throw new Error(`invalid policy ${JSON.stringify(policy)}: use off, writes or all`);
	const ap = approvals(st);
	ap.policy = policy;
	if (rules !== undefined && rules !== null) ap.rules = cleanRules(rules);
	sendPolicy(st);
	return { policy: ap.policy, rules: ap.rules };
}

/** A dashboard's `approval_decision` (through the bridge); the error text starts with "conflict:" when too late. */
export function decideFromDashboard(st: ShimState, m: Json): void {
	const p = approvals(st).pending.get(String(m.approval_id ?? ""));
	if (!p) throw new Error("conflict: this call was already decided, aborted or timed out");
	const decision = m.decision;
	if (decision !== "allow" && decision !== "deny") throw new Error("decision must be allow or deny");
	let command: string | undefined;
	if (m.input !== undefined && m.input !== null) {
		const c = (m.input as Json)?.command;
		if (decision !== "allow" || !isShell(p.toolName) || typeof c !== "string" || !c.trim()) {
			throw new Error("input: only an allowed bash call takes an edited {command}");
		}
		command = c;
	}
	const reason = typeof m.reason === "string" && m.reason.trim() ? m.reason.slice(0, 2000) : undefined;
	if (!p.decide({ decision, by: "dashboard", reason, command, remember: m.remember === true })) {
		throw new Error("conflict: this call was already decided, aborted or timed out");
	}
}

/** Every open question is denied (pi is quitting or the session ends): nothing waits on a dead pi. */
export function denyAllPending(st: ShimState, reason: string): void {
	for (const p of [...(st.approval?.pending.values() ?? [])]) p.decide({ decision: "deny", by: "abort", reason });
}

/** Register the gate's handlers on this module instance. */
export function installGate(st: ShimState, pi: PiInstance): void {
	const api = pi.api;
	try {
		api.on("tool_call", (event: any, ctx: Ctx) => gate(st, pi, event, ctx));
		api.on("tool_result", (event: any) => editedNote(st, event));
	} catch (err) {
		shimLog(st, "error", "could not install the approval gate", errorFields("gate.install", err));
	}
}

function gate(st: ShimState, pi: PiInstance, event: any, ctx: Ctx): Promise<Json | undefined> | Json | undefined {
	const ap = approvals(st);
	if (ap.policy === "off") return undefined;
	try {
		if (ctx) pi.ctx = ctx;
		const toolName = String(event?.toolName ?? "");
		const input = event?.input;
		const cwd: string = call(() => ctx?.cwd) ?? process.cwd();
		const why = askReason(ap.policy, toolName, input, (p) => insideFolder(p, cwd));
		if (!why) return undefined;
		const rule = allowingRule(ap.rules, toolName, input);
		if (rule) {
			const id = `r${++ap.seq}`;
			finished(st, pi, { id, toolCallId: String(event?.toolCallId ?? ""), toolName, input }, { decision: "allow", by: "rule", reason: ruleText(rule) }, 0);
			return undefined;
		}
		return ask(st, pi, event, ctx, why);
	} catch (err) {
		shimLog(st, "error", "approval gate failed; the call is blocked", errorFields("gate", err));
		return { block: true, reason: GATE_FAILED };
	}
}

function ruleText(r: Rule): string {
	return r.prefix === undefined ? `rule: ${r.tool}` : `rule: ${r.tool} ${r.prefix}`;
}

/** Whether a path the model wrote lies in `cwd` once resolved as pi resolves it, symlinks included. */
function insideFolder(p: string, cwd: string): boolean {
	const target = resolvePiPath(p, cwd, os.homedir());
	if (!target) return false;
	return isUnder(realish(target), realish(cwd));
}

/** The real path of `p`'s deepest existing part, with the rest appended. */
function realish(p: string): string {
	let head = p;
	const tail: string[] = [];
	for (let i = 0; i < 256; i++) {
		try {
			const real = fs.realpathSync.native(head);
			return tail.length ? path.join(real, ...tail.reverse()) : real;
		} catch {
			const parent = path.dirname(head);
			if (parent === head) break;
			tail.push(path.basename(head));
			head = parent;
		}
	}
	return p;
}

function ask(st: ShimState, pi: PiInstance, event: any, ctx: Ctx, why: string): Promise<Json | undefined> {
	const ap = approvals(st);
	const id = `a${++ap.seq}-${randomBytes(4).toString("hex")}`;
	const toolName = String(event?.toolName ?? "");
	const signal: AbortSignal | undefined = call(() => ctx?.signal);
	const hasUI = call(() => ctx?.hasUI) === true;
	return new Promise((resolve) => {
		const dialog = new AbortController();
		let timer: ReturnType<typeof setTimeout> | undefined;
		const onAbort = () => {
			p.decide({ decision: "deny", by: "abort", reason: "aborted in pi" });
		};
		const p: PendingApproval = {
			id,
			toolCallId: String(event?.toolCallId ?? ""),
			parentToolCallId: typeof event?.parentToolCallId === "string" ? event.parentToolCallId : undefined,
			toolName,
			input: event?.input,
			policy: ap.policy,
			why,
			queuedAt: Date.now(),
			decide: (d) => {
				if (ap.pending.get(id) !== p) return false;
				ap.pending.delete(id);
				if (timer) clearTimeout(timer);
				try {
					signal?.removeEventListener?.("abort", onAbort);
					dialog.abort();
				} catch {
					/* closing the dialog is best effort */
				}
				try {
					if (d.decision === "allow" && d.command !== undefined && event?.input && typeof event.input === "object") {
						event.input.command = d.command; // pi runs the mutated input (pi-hooks-facts §1.4)
						if (ap.edited.size >= 100) ap.edited.clear(); // a call whose result never came (blocked elsewhere)
						ap.edited.set(p.toolCallId, d.command);
					}
					if (d.decision === "allow" && d.remember) {
						if (addRule(ap.rules, rememberRule(toolName, event?.input))) sendPolicy(st);
					}
					finished(st, pi, p, d, Date.now() - p.queuedAt);
				} catch (err) {
					shimLog(st, "error", "approval bookkeeping failed", errorFields("gate.decide", err));
				}
				resolve(d.decision === "allow" ? undefined : { block: true, reason: denyText(d.by, d.reason) });
				return true;
			},
		};
		ap.pending.set(id, p);
		writeLine(st, requestLine(p));
		if (signal?.aborted) return void onAbort();
		try {
			signal?.addEventListener?.("abort", onAbort, { once: true });
		} catch {
			/* no signal to follow: the timeout still ends the wait */
		}
		timer = setTimeout(() => p.decide({ decision: "deny", by: "timeout", reason: timeoutReason(ap.timeoutMs) }), ap.timeoutMs);
		if (hasUI) {
			terminalDialog(ctx, p, dialog.signal).catch((err) =>
				shimLog(st, "warn", "pi's approval dialog failed; the dashboard or the timeout decides", errorFields("gate.dialog", err)),
			);
		} else if (st.watching !== true) {
			p.decide({ decision: "deny", by: "no_ui", reason: NO_UI_REASON });
		}
	});
}

/** pi's own dialog (TUI, or the RPC client's): the same choices as the dashboard. Esc aborts, as Esc in pi does. */
async function terminalDialog(ctx: Ctx, p: PendingApproval, signal: AbortSignal): Promise<void> {
	const ui = ctx.ui;
	const opts = { signal };
	const cmd = commandOf(p.toolName, p.input);
	const remembered = rememberRule(p.toolName, p.input);
	const ALLOW = "Allow";
	const REMEMBER = `Allow and don't ask again (${remembered.prefix ?? remembered.tool})`;
	const DENY = "Deny";
	const DENY_WHY = "Deny with a reason…";
	const EDIT = "Edit and allow…";
	const choices = cmd !== undefined ? [ALLOW, REMEMBER, DENY, DENY_WHY, EDIT] : [ALLOW, REMEMBER, DENY, DENY_WHY];
	const title = `Hyper-Pi: allow ${p.toolName}? ${summarize(p.toolName, p.input)}`;
	for (let round = 0; round < 10 && !signal.aborted; round++) {
		const choice = await ui.select(title, choices, opts);
		if (signal.aborted) return;
		if (choice === undefined) {
			call(() => ctx.abort());
			p.decide({ decision: "deny", by: "abort", reason: "aborted in the terminal" });
			return;
		}
		if (choice === ALLOW) return void p.decide({ decision: "allow", by: "terminal" });
		if (choice === REMEMBER) return void p.decide({ decision: "allow", by: "terminal", remember: true });
		if (choice === DENY) return void p.decide({ decision: "deny", by: "terminal" });
		if (choice === DENY_WHY) {
			const reason = await ui.input("Reason for the model", "why not, or what to do instead", opts);
			if (signal.aborted) return;
			return void p.decide({ decision: "deny", by: "terminal", reason: typeof reason === "string" && reason.trim() ? reason : undefined });
		}
		if (choice === EDIT && cmd !== undefined) {
			const edited = await ui.input(`Command to run instead of: ${cmd.slice(0, 200)}`, cmd.slice(0, 200), opts);
			if (signal.aborted) return;
			if (typeof edited === "string" && edited.trim()) return void p.decide({ decision: "allow", by: "terminal", command: edited });
		}
	}
}

interface CallFacts {
	id: string;
	toolCallId: string;
	toolName: string;
	input: unknown;
}

/** Tell the bridge (approval_end) and append the audit line. */
function finished(st: ShimState, pi: PiInstance, c: CallFacts, d: Decision, latencyMs: number): void {
	const summary = summarize(c.toolName, d.command !== undefined ? { ...(c.input as Json), command: d.command } : c.input);
	const decidedAt = Date.now();
	const end: Json = {
		t: "approval_end",
		id: c.id,
		tool_call_id: c.toolCallId,
		tool_name: c.toolName,
		summary,
		decision: d.decision,
		by: d.by,
		reason: d.reason,
		input: d.command !== undefined ? { command: d.command } : undefined,
		latency_ms: latencyMs,
		decided_at: decidedAt / 1000,
	};
	writeLine(st, end, d.by === "rule" && st.watching !== true);
	audit(st, pi, c, end, decidedAt);
}

function audit(st: ShimState, pi: PiInstance, c: CallFacts, end: Json, decidedAt: number): void {
	try {
		const ap = approvals(st);
		const sm = pi.ctx?.sessionManager;
		let digest = "";
		try {
			digest = createHash("sha256").update(JSON.stringify(c.input) ?? "").digest("hex");
		} catch {
			/* an input that does not serialise has no digest */
		}
		const rec = {
			ts: new Date(decidedAt).toISOString(),
			node_id: st.nodeId,
			session_id: call(() => sm?.getSessionId()) ?? null,
			session_file: call(() => sm?.getSessionFile()) ?? null,
			id: c.id,
			tool_call_id: c.toolCallId,
			tool_name: c.toolName,
			args_sha256: digest,
			summary: end.summary,
			decision: end.decision,
			by: end.by,
			reason: end.reason,
			latency_ms: end.latency_ms,
		};
		const dir = process.env.PI_SOCKET_LOG_DIR || path.join(os.homedir(), ".pi", "logs");
		const line = JSON.stringify(rec) + "\n";
		const append = () => fs.appendFile(path.join(dir, "approvals.jsonl"), line, () => {});
		if (ap.logDirReady) append();
		else
			fs.mkdir(dir, { recursive: true }, () => {
				ap.logDirReady = true;
				append();
			});
	} catch {
		/* the audit log never throws into pi */
	}
}

/** The model sees the command that ran when a person edited it. */
function editedNote(st: ShimState, event: any): Json | undefined {
	try {
		const ap = st.approval;
		if (!ap || ap.edited.size === 0) return undefined;
		const id = String(event?.toolCallId ?? "");
		const cmd = ap.edited.get(id);
		if (cmd === undefined) return undefined;
		ap.edited.delete(id);
		const note = { type: "text", text: `[The user edited the command before it ran. It ran: ${cmd}]\n` };
		return { content: [note, ...(Array.isArray(event?.content) ? event.content : [])] };
	} catch {
		return undefined;
	}
}
