// Unit checks of the event trimming (run: node --test, Node >= 22.18 strips the types).
import { test } from "node:test";
import assert from "node:assert/strict";
import { branchMessages, modelName, slimEvent, TOOL_UPDATE_TEXT_MAX } from "../src/slim.ts";

const partial = { role: "assistant", content: [{ type: "text", text: "Hel" }, { type: "toolCall", id: "c1", name: "bash", arguments: {} }] };

test("message_update keeps only type, contentIndex and delta/content/toolCall", () => {
	const e = { type: "message_update", message: partial, assistantMessageEvent: { type: "text_delta", contentIndex: 0, delta: "lo", partial } };
	assert.deepEqual(slimEvent(e), { type: "message_update", assistantMessageEvent: { type: "text_delta", contentIndex: 0, delta: "lo" } });
	const end = { type: "message_update", message: partial, assistantMessageEvent: { type: "text_end", contentIndex: 0, content: "Hello", partial } };
	assert.deepEqual(slimEvent(end), { type: "message_update", assistantMessageEvent: { type: "text_end", contentIndex: 0, content: "Hello" } });
});

test("toolcall_start is labelled with the tool's id and name from the snapshot", () => {
	const e = { type: "message_update", message: partial, assistantMessageEvent: { type: "toolcall_start", contentIndex: 1, partial } };
	assert.deepEqual(slimEvent(e), {
		type: "message_update",
		assistantMessageEvent: { type: "toolcall_start", contentIndex: 1, toolCall: { type: "toolCall", id: "c1", name: "bash" } },
	});
});

test("system messages are dropped (pi 1.5 emits the system prompt as one)", () => {
	assert.equal(slimEvent({ type: "message_start", message: { role: "system", content: "You are" } }), undefined);
	assert.equal(slimEvent({ type: "message_end", message: { role: "system", content: "You are" } }), undefined);
	const user = { type: "message_end", message: { role: "user", content: [{ type: "text", text: "hi" }] } };
	assert.deepEqual(slimEvent(user), user);
	const entries = [
		{ type: "message", message: { role: "system", content: "x" } },
		{ type: "model_change" },
		{ type: "message", message: { role: "user", content: "a" } },
		{ type: "message", message: { role: "assistant", content: [] } },
		{ type: "custom", customType: "ext", data: {} },
		{ type: "custom_message", customType: "ext", content: "note", display: true, timestamp: "2026-01-01T00:00:00.000Z" },
	];
	const msgs = branchMessages(entries);
	assert.deepEqual(msgs.map((m) => m.role), ["user", "assistant", "custom"]);
	assert.deepEqual(msgs[2], { role: "custom", customType: "ext", content: "note", display: true, details: undefined, timestamp: Date.parse("2026-01-01T00:00:00.000Z") });
	assert.deepEqual(branchMessages(undefined), []);
});

test("turn_end, agent_before_settle and agent_end lose the transcript", () => {
	const ctxBlob = { messages: new Array(100).fill({ role: "user", content: "x".repeat(100) }) };
	const t = slimEvent({ type: "turn_end", turnIndex: 2, message: { role: "assistant" }, toolResults: [], context: ctxBlob, entries: [1, 2] });
	assert.deepEqual(t, { type: "turn_end", turnIndex: 2, message: { role: "assistant" }, toolResults: [] });
	assert.deepEqual(slimEvent({ type: "agent_before_settle", outcome: "stop", context: ctxBlob }), { type: "agent_before_settle", outcome: "stop" });
	const end = slimEvent({ type: "agent_end", messages: [{ role: "system" }, { role: "user" }, { role: "assistant", stopReason: "aborted" }] });
	assert.deepEqual(end, { type: "agent_end", stopReason: "aborted" });
});

test("long tool output updates keep only the tail", () => {
	const big = "y".repeat(TOOL_UPDATE_TEXT_MAX + 10) + "END";
	const out: any = slimEvent({ type: "tool_execution_update", toolCallId: "c1", partialResult: { content: [{ type: "text", text: big }] } });
	const text = out.partialResult.content[0].text as string;
	assert.equal(text.length, TOOL_UPDATE_TEXT_MAX);
	assert.ok(text.endsWith("END") && out.partialResult.content[0].truncated);
});

test("model_select carries provider/id strings", () => {
	assert.equal(modelName({ provider: "fake", id: "fake-model", contextWindow: 1 }), "fake/fake-model");
	assert.equal(modelName(undefined), null);
	assert.deepEqual(slimEvent({ type: "model_select", model: { provider: "a", id: "b" }, previousModel: undefined, source: "set" }), {
		type: "model_select", model: "a/b", previousModel: undefined, source: "set",
	});
});

test("other events pass through untouched, and pi's objects are not mutated", () => {
	const e = { type: "turn_end", message: { role: "assistant" }, context: { big: true } };
	slimEvent(e);
	assert.deepEqual(e.context, { big: true });
	const s = { type: "tool_execution_start", toolCallId: "c", toolName: "bash", args: { command: "ls" } };
	assert.equal(slimEvent(s), s);
});
