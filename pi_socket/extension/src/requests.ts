// The bridge's requests → pi (specs/protocol.md §4.1 `req`/`res`), always answered by the newest module instance.
import { boundary, claimPrompt, releasePrompt, writeLine, type ShimState } from "./child.ts";
import { decideFromDashboard, setPolicy } from "./gate.ts";
import { call, type PiInstance } from "./pi.ts";
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
				default:
					return reply(id, false, `unknown op ${String(m.op)}`);
			}
		} catch (err) {
			reply(id, false, (err as Error)?.message ?? err);
		}
	};
}
