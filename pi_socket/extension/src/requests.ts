// The bridge's requests → pi (specs/protocol.md §4.1 `req`/`res`), always answered by the newest module instance.
import { boundary, claimPrompt, releasePrompt, writeLine, type ShimState } from "./child.ts";
import { decideFromDashboard, setPolicy } from "./gate.ts";
import { cliVersion } from "./launch.ts";
import { call, type PiInstance } from "./pi.ts";
import { canExpand, modelInfo, quitPi, SESSION_COMMAND, thinkingLevels } from "./remote.ts";
import { branchMessages, modelName } from "./slim.ts";

type Json = Record<string, unknown>;

/** The handler of one `req` line: every request gets exactly one `res` (none without an id); nothing throws. */
export function requestHandler(st: ShimState, pi: PiInstance): (m: Json) => void {
	const api = pi.api;
	const reply = (id: unknown, ok: boolean, dataOrError?: unknown) => {
		if (id === undefined) return;
		writeLine(st, ok ? { t: "res", id, ok: true, data: dataOrError ?? null } : { t: "res", id, ok: false, error: String(dataOrError) });
	};
	return (m: Json) => {
		const id = m.id;
		try {
			// The gate's requests need no session: a question may be open while pi switches sessions.
			if (m.op === "approval_decision") {
				decideFromDashboard(st, m);
				return reply(id, true);
			}
			if (m.op === "set_approval_policy") return reply(id, true, setPolicy(st, m.policy, m.rules));
			const ctx = pi.ctx;
			if (!pi.live || !ctx) throw new Error("pi session is not ready");
			switch (m.op) {
				case "send": {
					const text = typeof m.text === "string" ? m.text : "";
					const images = Array.isArray(m.images) ? m.images : [];
					const content = images.length ? [{ type: "text", text }, ...images] : text;
					const promptId = typeof m.prompt_id === "string" && m.prompt_id ? m.prompt_id : undefined;
					// Kept on globalThis, so a prompt resent through a restarted bridge is still not doubled.
					if (promptId && claimPrompt(st, promptId)) return reply(id, true, { duplicate: true });
					// Never synchronously (inside agent_end it would fail or be stranded, specs/pi-runtime.md §4):
					// next tick, then decide.
					setTimeout(boundary(st, "send", () => {
						try {
							const idle = pi.ctx.isIdle();
							const deliverAs = idle ? undefined : m.deliverAs === "steer" || m.deliverAs === "followUp" ? m.deliverAs : "followUp";
							// pi >= 1.5 runs `/command`, `/template` and `/skill:x` text like its editor does, but only when
							// not queued (a queued one would reach the model as is).
							const expand = idle && text.startsWith("/") && canExpand(pi.version || cliVersion());
							api.sendUserMessage(content, deliverAs ? { deliverAs } : expand ? { expandPromptTemplates: true } : undefined);
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
						context_usage: pi.contextUsage() ?? null,
						is_streaming: !ctx.isIdle(),
					});
				case "tools":
					return reply(id, true, { tools: pi.listTools() });
				case "commands":
					return reply(id, true, { commands: pi.listCommands() });
				case "set_session_name":
					api.setSessionName(String(m.name ?? ""));
					return reply(id, true);
				case "notify":
					if (ctx.hasUI) ctx.ui.notify(String(m.message ?? ""), m.level === "warning" || m.level === "error" ? m.level : "info");
					return reply(id, true);
				case "models":
					return reply(id, true, modelsState(pi));
				case "set_model": {
					const model = call(() => ctx.modelRegistry.find(String(m.provider ?? ""), String(m.model_id ?? "")));
					if (!model) return reply(id, false, `not found: no model ${String(m.provider)}/${String(m.model_id)} in pi's registry`);
					Promise.resolve(api.setModel(model)).then(
						(ok: unknown) => (ok === false ? reply(id, false, `pi refused ${model.provider}/${model.id}: no API key for its provider`) : reply(id, true, modelsState(pi))),
						(err: unknown) => reply(id, false, (err as Error)?.message ?? err),
					);
					return;
				}
				case "set_thinking_level":
					api.setThinkingLevel(String(m.thinking_level ?? "off"));
					return reply(id, true, modelsState(pi));
				case "compact": {
					if (typeof ctx.compact !== "function") return reply(id, false, "unsupported: this pi has no ctx.compact()");
					const instructions = typeof m.instructions === "string" && m.instructions.trim() ? m.instructions : undefined;
					ctx.compact({
						...(instructions ? { customInstructions: instructions } : {}),
						onComplete: () => reply(id, true),
						onError: (err: unknown) => reply(id, false, `compaction failed: ${(err as Error)?.message ?? err}`),
					});
					return;
				}
				case "quit":
					// Answered first, then pi is asked to exit on the next tick: the answer reaches the bridge before pi goes.
					if (typeof ctx.shutdown !== "function") return reply(id, false, "unsupported: this pi has no ctx.shutdown()");
					reply(id, true);
					setTimeout(boundary(st, "quit", () => quitPi(pi.ctx)), 50);
					return;
				case "session_command": {
					const name = m.name === "new" || m.name === "reload" ? m.name : null;
					const version = pi.version || cliVersion();
					if (!name) return reply(id, false, `unknown session command ${String(m.name)}`);
					if (!canExpand(version)) return reply(id, false, `unsupported: pi ${version ?? "of this version"} has no API for /${name} from outside its terminal (needs pi >= 1.5)`);
					if (!ctx.isIdle()) return reply(id, false, `busy: pi is working; stop the run before /${name}`);
					if (st.sessionCommand) return reply(id, false, `busy: a /${st.sessionCommand.name} is already running`);
					st.sessionCommand = { name, done: (error) => (error ? reply(id, false, error) : reply(id, true)) };
					// Dispatched like a typed command: the handler (index.ts) gets a command context with newSession/reload.
					setTimeout(boundary(st, "session_command", () => {
						try {
							api.sendUserMessage(`/${SESSION_COMMAND} ${name}`, { expandPromptTemplates: true });
						} catch (err) {
							st.sessionCommand = undefined;
							reply(id, false, (err as Error)?.message ?? err);
						}
					}), 0);
					return;
				}
				default:
					return reply(id, false, `unknown op ${String(m.op)}`);
			}
		} catch (err) {
			reply(id, false, (err as Error)?.message ?? err);
		}
	};
}

/** The `models` reply: pi's available models, the current one and its thinking level (specs/protocol.md §4.2). */
function modelsState(pi: PiInstance): Json {
	const ctx = pi.ctx;
	const current = call(() => ctx.model);
	const available = (call(() => ctx.modelRegistry.getAvailable()) ?? []) as any[];
	return {
		models: available.map(modelInfo),
		current: current ? { provider: String(current.provider), id: String(current.id) } : null,
		thinking_level: call(() => pi.api.getThinkingLevel()) ?? null,
		thinking_levels: thinkingLevels(current, pi.version || cliVersion()),
	};
}

/** The shim's own command: runs a remote /new or /reload with the command context pi gives only to commands. */
export function sessionCommandHandler(st: ShimState): (args: string, ctx: any) => Promise<void> {
	return async (args, ctx) => {
		const pending = st.sessionCommand;
		st.sessionCommand = undefined;
		const name = args.trim();
		if (!pending || pending.name !== name) return; // typed by hand in pi's terminal: nothing was asked
		try {
			if (name === "new") {
				const r = await ctx.newSession();
				pending.done(r?.cancelled ? "cancelled: an extension cancelled the new session" : undefined);
			} else {
				pending.done(); // answered first: reload replaces this module instance
				await ctx.reload();
			}
		} catch (err) {
			pending.done((err as Error)?.message ?? String(err));
		}
	};
}
