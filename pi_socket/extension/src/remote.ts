// What a dashboard can run in this pi, per pi version (pure: no pi, no I/O).
//
// pi's built-in commands (/compact, /new, ...) cannot be run by name from an extension: their text would reach
// the model as a prompt. Each one a dashboard offers maps to an API instead:
// - compact: `ctx.compact()` (all versions);
// - model, thinking, name: `pi.setModel`, `pi.setThinkingLevel`, `pi.setSessionName` (all versions; the
//   dashboard shows pickers for them);
// - new, reload: only inside a command handler (`ctx.newSession()`, `ctx.reload()`). pi >= 1.5 dispatches an
//   extension command sent with `sendUserMessage("/cmd", {expandPromptTemplates: true})`, so the shim registers
//   SESSION_COMMAND and sends itself that; pi 0.73 forces expandPromptTemplates off: no way from outside.
// - quit: `ctx.shutdown()` (all versions; "available in all contexts"). pi ends only once idle, so a running
//   turn is aborted first: a person who stops an agent wants it gone now, not after the run.
// Extension commands, prompt templates and skills likewise run only where expandPromptTemplates exists (>= 1.5).

type Json = Record<string, unknown>;

/** The shim's own command behind remote /new and /reload; never listed to clients. */
export const SESSION_COMMAND = "hyperpi-session";

/** pi >= 1.5: `sendUserMessage(text, {expandPromptTemplates: true})` runs commands, templates and skills. */
export function canExpand(version: string | undefined): boolean {
	const m = /^(\d+)\.(\d+)/.exec(version ?? "");
	if (!m) return (version ?? "").startsWith("1."); // "1.x": the capability fallback of piVersion()
	const [major, minor] = [Number(m[1]), Number(m[2])];
	return major > 1 || (major === 1 && minor >= 5);
}

const OLD_PI = (v: string | undefined) => `pi ${v || "of this version"} cannot run it from outside its terminal`;

/** pi's built-ins a dashboard can offer, with whether this pi can run them remotely. */
export function builtinCommands(version: string | undefined): Json[] {
	const expand = canExpand(version);
	const cmd = (name: string, description: string, available: boolean, note: string) => ({ name, description, source: "builtin", available, note });
	return [
		cmd("compact", "Compact the conversation (optional instructions after the command)", true, "runs ctx.compact()"),
		cmd("model", "Choose the model", true, "opens the model picker"),
		cmd("thinking", "Set the thinking level", true, "opens the thinking-level picker"),
		cmd("name", "Name this session", true, "renames the session"),
		cmd("new", "Start a new session", expand, expand ? "runs ctx.newSession()" : OLD_PI(version)),
		cmd("reload", "Reload extensions, skills, prompts and themes", expand, expand ? "runs ctx.reload()" : OLD_PI(version)),
		cmd("export", "Export the session to HTML", false, "pi has no API for /export from an extension: run it in pi's terminal"),
	];
}

/** pi's `getCommands()` entries as clients see them: the shim's own command hidden, availability per version. */
export function extensionCommands(commands: unknown[], version: string | undefined): Json[] {
	const expand = canExpand(version);
	return commands
		.filter((c: any) => c?.name && c.name !== SESSION_COMMAND)
		.map((c: any) => ({
			name: c.name,
			description: c.description ?? "",
			source: c.source ?? "extension",
			available: expand,
			note: expand ? null : `pi ${version || "of this version"} would send it to the model as text: run it in pi's terminal`,
		}));
}

/** One of `ctx.modelRegistry.getAvailable()`'s models, as the wire's ModelInfo. */
export function modelInfo(m: any): Json {
	return {
		provider: String(m?.provider ?? ""),
		id: String(m?.id ?? ""),
		name: typeof m?.name === "string" ? m.name : null,
		input: Array.isArray(m?.input) ? m.input.map(String) : ["text"],
		reasoning: m?.reasoning === true,
		context_window: typeof m?.contextWindow === "number" ? m.contextWindow : null,
	};
}

/** Levels worth offering for a model: only "off" without reasoning; pi clamps anything else itself. */
export function thinkingLevels(model: any, version: string | undefined): string[] {
	if (!model || model.reasoning !== true) return ["off"];
	const all = ["off", "minimal", "low", "medium", "high", "xhigh"];
	if (/^(\d+)/.exec(version ?? "")?.[1] !== "0") all.push("max"); // "max" exists from pi 1 on
	const map = model.thinkingLevelMap;
	return all.filter((l) => !(map && typeof map === "object" && map[l] === null));
}

/** A dashboard's Stop: abort the run if there is one (pi's shutdown waits for idle), then ask pi to exit cleanly
 * (session_shutdown runs, the bridge deregisters). Returns what it did; throws only when pi has no shutdown. */
export function quitPi(ctx: any): { aborted: boolean } {
	if (typeof ctx?.shutdown !== "function") throw new Error("unsupported: this pi has no ctx.shutdown()");
	let aborted = false;
	if (typeof ctx.isIdle === "function" && !ctx.isIdle()) {
		ctx.abort?.();
		aborted = true;
	}
	ctx.shutdown();
	return { aborted };
}
