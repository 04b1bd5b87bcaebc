// The approval policy as pure functions (no I/O): which tool calls ask a person, which allow rules skip the
// question, what "don't ask again" remembers, and the environment's settings (specs/approvals.md).

type Json = Record<string, unknown>;

export type Policy = "off" | "writes" | "all";
export const POLICIES: readonly Policy[] = ["off", "writes", "all"];
export interface Rule {
	tool: string;
	prefix?: string;
}

export const MAX_RULES = 200;
const MAX_PREFIX = 500;
const MAX_TOOL = 64;
export const DEFAULT_TIMEOUT_MS = 10 * 60_000;
/** Tools that run a shell command (`command` is their input's command line). */
const SHELLS = new Set(["bash", "powershell"]);
/** Tools that write one file (`path` is their input's target). */
const FILE_WRITERS = new Set(["write", "edit"]);
/** What makes a command more than one command: chaining, pipes, redirection, substitution, a second line. */
const COMPOUND = /[;&|<>`\n\r]|\$\(|\$\{/;

export function isPolicy(v: unknown): v is Policy {
	return typeof v === "string" && (POLICIES as readonly string[]).includes(v);
}

export function isShell(toolName: string): boolean {
	return SHELLS.has(toolName);
}

/** The command line of a shell call, else undefined. */
export function commandOf(toolName: string, input: unknown): string | undefined {
	const c = isShell(toolName) && input && typeof input === "object" ? (input as Json).command : undefined;
	return typeof c === "string" ? c : undefined;
}

/**
 * Why `policy` asks about this call, or null when it does not. `inside(path)` says whether a file path (as the
 * model wrote it) lies in the agent's folder; it is asked only for write/edit under `writes`.
 */
export function askReason(policy: Policy, toolName: string, input: unknown, inside: (p: string) => boolean): string | null {
	if (policy === "off") return null;
	if (policy === "all") return "every tool call";
	if (isShell(toolName)) return toolName;
	if (FILE_WRITERS.has(toolName)) {
		const p = input && typeof input === "object" ? (input as Json).path : undefined;
		if (typeof p !== "string" || !inside(p)) return `${toolName} outside the agent's folder`;
	}
	return null;
}

/** True when `command` is `prefix` or starts with it and a space, and chains nothing else. */
export function commandMatches(prefix: string, command: string): boolean {
	const p = prefix.trim();
	const c = command.trim();
	if (!p || COMPOUND.test(c)) return false;
	return c === p || (c.startsWith(p) && /\s/.test(c.charAt(p.length)));
}

/** The first rule that lets this call run without a question. */
export function allowingRule(rules: readonly Rule[], toolName: string, input: unknown): Rule | undefined {
	for (const r of rules) {
		if (r.tool !== toolName) continue;
		if (r.prefix === undefined) return r;
		const cmd = commandOf(toolName, input);
		if (cmd !== undefined && commandMatches(r.prefix, cmd)) return r;
	}
	return undefined;
}

/** The rule "Allow and don't ask again for this" adds: a shell call's program (plus its subcommand), else the tool. */
export function rememberRule(toolName: string, input: unknown): Rule {
	const cmd = commandOf(toolName, input);
	if (cmd === undefined) return { tool: toolName };
	const words = cmd.trim().split(/\s+/);
	const first = (words[0] ?? "").split(/[;&|<>`]/)[0];
	if (!first) return { tool: toolName };
	const sub = words[1];
	const prefix = sub !== undefined && /^[A-Za-z][A-Za-z0-9:_-]*$/.test(sub) ? `${first} ${sub}` : first;
	return { tool: toolName, prefix };
}

/** Rules from outside (a file, a dashboard) made safe: bad items dropped, sizes bounded, duplicates merged. */
export function cleanRules(raw: unknown): Rule[] {
	if (!Array.isArray(raw)) return [];
	const out: Rule[] = [];
	const seen = new Set<string>();
	for (const item of raw) {
		if (out.length >= MAX_RULES) break;
		if (!item || typeof item !== "object") continue;
		const { tool, prefix } = item as Json;
		if (typeof tool !== "string" || !tool.trim() || tool.length > MAX_TOOL) continue;
		const rule: Rule = { tool: tool.trim() };
		if (prefix !== undefined && prefix !== null) {
			if (typeof prefix !== "string" || !prefix.trim() || prefix.length > MAX_PREFIX) continue;
			rule.prefix = prefix.trim();
		}
		const key = `${rule.tool}\0${rule.prefix ?? ""}`;
		if (seen.has(key)) continue;
		seen.add(key);
		out.push(rule);
	}
	return out;
}

/** Adds `rule` unless an equal one is there; returns whether the list changed. */
export function addRule(rules: Rule[], rule: Rule): boolean {
	if (rules.some((r) => r.tool === rule.tool && (r.prefix ?? "") === (rule.prefix ?? ""))) return false;
	if (rules.length >= MAX_RULES) rules.shift();
	rules.push(rule);
	return true;
}

/** `PI_SOCKET_APPROVAL_TIMEOUT`: seconds, or a number with ms/s/m/h; undefined when invalid or not positive. */
export function parseTimeout(raw: string | undefined): number | undefined {
	if (raw === undefined || raw.trim() === "") return undefined;
	const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/i.exec(raw);
	if (!m) return undefined;
	const n = Number(m[1]);
	const unit = (m[2] ?? "s").toLowerCase();
	const ms = unit === "ms" ? n : unit === "s" ? n * 1000 : unit === "m" ? n * 60_000 : n * 3_600_000;
	return ms > 0 && Number.isFinite(ms) ? Math.min(ms, 2_147_000_000) : undefined;
}

/** "no decision within 10 minutes" (whole minutes), else in seconds. */
export function timeoutReason(ms: number): string {
	if (ms >= 60_000 && ms % 60_000 === 0) {
		const n = ms / 60_000;
		return `no decision within ${n} minute${n === 1 ? "" : "s"}`;
	}
	const s = Math.round(ms / 100) / 10;
	return `no decision within ${s} second${s === 1 ? "" : "s"}`;
}

/** One line for people and the audit log: the command, the path, or the tool's input in short. */
export function summarize(toolName: string, input: unknown): string {
	const cmd = commandOf(toolName, input);
	let s: string;
	if (cmd !== undefined) s = cmd;
	else if (input && typeof input === "object" && typeof (input as Json).path === "string") s = String((input as Json).path);
	else {
		try {
			s = JSON.stringify(input) ?? "";
		} catch {
			s = "";
		}
	}
	s = s.replace(/\s+/g, " ").trim();
	return s.length > 200 ? `${s.slice(0, 199)}…` : s;
}

/** A path as pi resolves it (leading `@` stripped, `~` expanded, relative to `cwd`), without touching the disk. */
export function resolvePiPath(p: string, cwd: string, home: string): string | undefined {
	if (p.includes("\0")) return undefined;
	let s = p.replace(/[\u00A0\u2000-\u200A\u202F\u205F\u3000]/g, " ");
	if (s.startsWith("@")) s = s.slice(1);
	if (s === "~") s = home;
	else if (s.startsWith("~/")) s = home + s.slice(1);
	const abs = s.startsWith("/") ? s : `${cwd.replace(/\/+$/, "")}/${s}`;
	const parts: string[] = [];
	for (const seg of abs.split("/")) {
		if (!seg || seg === ".") continue;
		if (seg === "..") parts.pop();
		else parts.push(seg);
	}
	return `/${parts.join("/")}`;
}

/** True when `p` is `dir` or under it (both absolute, normalised). */
export function isUnder(p: string, dir: string): boolean {
	const d = dir.replace(/\/+$/, "") || "/";
	return d === "/" || p === d || p.startsWith(`${d}/`);
}

/** What the model is told when a call is denied. */
export function denyText(by: string, reason: string | undefined): string {
	const who =
		by === "dashboard" ? "the user from the Hyper-Pi dashboard"
		: by === "terminal" ? "the user in the terminal"
		: by === "timeout" ? "the approval gate"
		: by === "abort" ? "the user (aborted)"
		: "the approval gate";
	const r = reason?.trim();
	return r ? `Denied by ${who}: ${r}` : `Denied by ${who}`;
}
