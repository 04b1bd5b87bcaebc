// One module instance's view of pi: its latest ctx and the getters both directions read. No getter throws.
import type { ExtensionAPI } from "@mariozechner/pi-coding-agent"; // erased at load: no value import from pi
import { cliVersion } from "./launch.ts";
import { builtinCommands, extensionCommands } from "./remote.ts";
import { modelName } from "./slim.ts";

type Json = Record<string, unknown>;
export type Ctx = any; // ExtensionContext differs between versions; every use is guarded

/** Run a pi getter; a stale ctx or a missing method gives undefined instead of a throw. */
export function call<T>(fn: () => T): T | undefined {
	try {
		return fn();
	} catch {
		return undefined;
	}
}

export class PiInstance {
	/** pi's ExtensionAPI; its methods differ between versions, so each call is guarded where it may be missing. */
	readonly api: any;
	/** The latest ctx of THIS instance (set by every event handler); an old instance's ctx throws after /new or /reload. */
	ctx: Ctx;
	/** False once this instance got session_shutdown. */
	live = true;
	/** pi's version, found at the first session_start. */
	version = "";

	constructor(pi: ExtensionAPI) {
		this.api = pi as any;
	}

	sessionFacts(): Json {
		const sm = this.ctx?.sessionManager;
		return {
			session_id: call(() => sm?.getSessionId()) ?? null,
			session_file: call(() => sm?.getSessionFile()) ?? null,
			session_name: call(() => this.api.getSessionName()) ?? null,
			model: modelName(call(() => this.ctx?.model)),
			tools: this.listTools(),
			commands: this.listCommands(),
		};
	}

	listTools(): Json[] {
		const all = call(() => this.api.getAllTools()) ?? [];
		const active = new Set<string>(call(() => this.api.getActiveTools()) ?? []);
		return (all as any[]).map((t) => ({ name: t?.name, description: t?.description ?? "", active: active.has(t?.name) }));
	}

	/** pi's built-ins a dashboard can run, then pi's `getCommands()` (extensions, templates, skills). */
	listCommands(): Json[] {
		const version = this.version || cliVersion();
		return [...builtinCommands(version), ...extensionCommands((call(() => this.api.getCommands()) ?? []) as any[], version)];
	}

	contextUsage(): Json | undefined {
		const u = call(() => this.ctx?.getContextUsage?.());
		return u && typeof u === "object" ? { tokens: u.tokens ?? null, contextWindow: u.contextWindow ?? null, percent: u.percent ?? null } : undefined;
	}

	/** The `hello` line (specs/protocol.md §4.1) with the latest session facts. */
	hello(nodeId: string): Json {
		return {
			t: "hello",
			v: 1,
			node_id: nodeId,
			pid: process.pid,
			cwd: call(() => this.ctx?.cwd) ?? process.cwd(),
			pi_version: this.version,
			mode: call(() => this.ctx?.mode) ?? (call(() => this.ctx?.hasUI) ? "interactive" : "print"),
			session: this.sessionFacts(),
		};
	}
}
