// Pure event trimming (specs/protocol.md §4.1 "Slim events"): no pi calls, no I/O.
//
// Why: pi's extension events carry snapshots that grow with the conversation.
// `message_update` repeats the whole partial message on every delta (traffic
// O(n²)); pi 1.5 puts the entire projected transcript (system prompt and tool
// schemas included) in `turn_end.context` and `agent_before_settle.context`,
// and `agent_end.messages` repeats the run. We forward only what a client
// needs, and never `role: "system"` messages (pi 1.5 emits the system prompt
// as one).

type Json = Record<string, unknown>;

/** Largest text part of a `tool_execution_update` partial result we forward (the tail is kept). */
export const TOOL_UPDATE_TEXT_MAX = 64 * 1024;

const isSystem = (m: unknown): boolean => !!m && typeof m === "object" && (m as Json).role === "system";

/** `message_update` → `{type, assistantMessageEvent:{type, contentIndex, delta?, content?, toolCall?}}`. */
export function slimMessageUpdate(e: Json): Json | undefined {
	const ame = (e.assistantMessageEvent ?? {}) as Json;
	const out: Json = { type: ame.type, contentIndex: ame.contentIndex };
	if (typeof ame.delta === "string") out.delta = ame.delta;
	if (typeof ame.content === "string") out.content = ame.content;
	if (ame.toolCall && typeof ame.toolCall === "object") out.toolCall = ame.toolCall;
	if (ame.type === "toolcall_start" && !out.toolCall) {
		// Label the tool card before toolcall_end: id and name are already in the snapshot.
		const partial = (ame.partial ?? e.message) as Json | undefined;
		const parts = Array.isArray(partial?.content) ? (partial!.content as Json[]) : [];
		const part = typeof ame.contentIndex === "number" ? parts[ame.contentIndex] : undefined;
		if (part && part.type === "toolCall") out.toolCall = { type: "toolCall", id: part.id, name: part.name };
	}
	return { type: "message_update", assistantMessageEvent: out };
}

/** Keep the tail of long text parts: a long-running tool re-sends its whole output on every update. */
function capContent(content: unknown): unknown {
	if (!Array.isArray(content)) return content;
	return content.map((c: any) =>
		c && c.type === "text" && typeof c.text === "string" && c.text.length > TOOL_UPDATE_TEXT_MAX
			? { ...c, text: c.text.slice(-TOOL_UPDATE_TEXT_MAX), truncated: true }
			: c,
	);
}

/** Copy of `e` without the named keys (shallow; pi's own objects are not mutated). */
function without(e: Json, keys: string[]): Json {
	const out: Json = {};
	for (const k of Object.keys(e)) if (!keys.includes(k)) out[k] = e[k];
	return out;
}

/** The event as the bridge should see it, or undefined to drop it. */
export function slimEvent(e: Json): Json | undefined {
	switch (e.type) {
		case "message_update":
			return slimMessageUpdate(e);
		case "message_start":
		case "message_end":
			return isSystem(e.message) ? undefined : e;
		case "turn_end":
		case "agent_before_settle": {
			const out = without(e, ["context", "entries", "messages"]);
			if (Array.isArray(out.toolResults)) out.toolResults = (out.toolResults as unknown[]).filter((m) => !isSystem(m));
			return isSystem(out.message) ? without(out, ["message"]) : out;
		}
		case "agent_end": {
			const msgs = Array.isArray(e.messages) ? (e.messages as Json[]) : [];
			const last = [...msgs].reverse().find((m) => m && m.role === "assistant");
			const out: Json = { type: "agent_end" };
			if (last) {
				out.stopReason = last.stopReason;
				if (last.errorMessage !== undefined) out.errorMessage = last.errorMessage;
			}
			return out;
		}
		case "tool_execution_update": {
			const pr = e.partialResult as Json | undefined;
			if (!pr || typeof pr !== "object") return e;
			return { ...e, partialResult: { ...pr, content: capContent(pr.content) } };
		}
		case "model_select": {
			const m = e.model as Json | undefined;
			const prev = e.previousModel as Json | undefined;
			return {
				type: "model_select",
				model: modelName(m),
				previousModel: prev ? modelName(prev) : undefined,
				source: e.source,
			};
		}
		default:
			return e;
	}
}

/** `"provider/id"` for pi's model object (or null). */
export function modelName(m: unknown): string | null {
	if (!m || typeof m !== "object") return null;
	const { provider, id } = m as Json;
	return provider && id ? `${provider}/${id}` : typeof id === "string" ? id : null;
}

/**
 * The messages of a session branch, oldest first: `message` entries (without pi 1.5's system prompt
 * messages) and `custom_message` entries as pi's CustomMessage (`role: "custom"`), which pi also streams
 * as message_start/message_end, so a reloaded history lines up with what clients saw live.
 */
export function branchMessages(entries: unknown): Json[] {
	if (!Array.isArray(entries)) return [];
	const out: Json[] = [];
	for (const x of entries as any[]) {
		if (x?.type === "message" && x.message && !isSystem(x.message)) out.push(x.message as Json);
		else if (x?.type === "custom_message") {
			out.push({
				role: "custom",
				customType: x.customType,
				content: x.content,
				display: x.display,
				details: x.details,
				timestamp: typeof x.timestamp === "string" ? Date.parse(x.timestamp) || x.timestamp : x.timestamp,
			});
		}
	}
	return out;
}
