// Unit checks of the rebuilt turn_end (run: node --test, Node >= 22.18 strips the types).
import { test } from "node:test";
import assert from "node:assert/strict";
import { TurnEnds, outcomeOf } from "../src/turns.ts";

const user = { role: "user", content: [{ type: "text", text: "go" }] };
const toolUse = { role: "assistant", stopReason: "toolUse", content: [{ type: "toolCall", id: "c1", name: "bash", arguments: {} }] };
const result = { role: "toolResult", toolCallId: "c1", content: [{ type: "text", text: "ok" }] };
const stop = { role: "assistant", stopReason: "stop", content: [{ type: "text", text: "done" }] };

/** Feed pi 1.5's order of a tool-call run; return what would be forwarded (type names, turn_ends whole). */
function run(events: Record<string, unknown>[]) {
	const t = new TurnEnds();
	const out: unknown[] = [];
	for (const e of events) {
		const due = t.before(e);
		if (due) out.push(due);
		out.push(e.type);
	}
	return out;
}

test("turn_end comes right before the next turn_start and before agent_end, with the turn's messages", () => {
	const out = run([
		{ type: "agent_start" },
		{ type: "turn_start", turnIndex: 0 },
		{ type: "message_start", message: user },
		{ type: "message_end", message: user },
		{ type: "message_end", message: toolUse },
		{ type: "tool_execution_start" },
		{ type: "tool_execution_end" },
		{ type: "message_end", message: result },
		{ type: "turn_start", turnIndex: 1 },
		{ type: "message_end", message: stop },
		{ type: "agent_end", messages: [] },
		{ type: "agent_settled" },
	]);
	assert.deepEqual(out, [
		"agent_start", "turn_start", "message_start", "message_end", "message_end", "tool_execution_start",
		"tool_execution_end", "message_end",
		{ type: "turn_end", turnIndex: 0, message: toolUse, toolResults: [result], outcome: "completed" },
		"turn_start", "message_end",
		{ type: "turn_end", turnIndex: 1, message: stop, toolResults: [], outcome: "completed" },
		"agent_end", "agent_settled",
	]);
});

test("no turn_end without an open turn or without an assistant message; a second agent_end adds none", () => {
	assert.deepEqual(run([{ type: "agent_end" }]), ["agent_end"]);
	assert.deepEqual(run([{ type: "turn_start", turnIndex: 0 }, { type: "agent_end" }, { type: "agent_end" }]), [
		"turn_start", "agent_end", "agent_end",
	]);
});

test("outcome follows the assistant message's stopReason", () => {
	assert.equal(outcomeOf({ stopReason: "aborted" }), "aborted");
	assert.equal(outcomeOf({ stopReason: "error" }), "error");
	assert.equal(outcomeOf({ stopReason: "length" }), "completed");
	const out = run([{ type: "turn_start" }, { type: "message_end", message: { role: "assistant", stopReason: "aborted" } }, { type: "agent_end" }]);
	assert.deepEqual(out[2], { type: "turn_end", message: { role: "assistant", stopReason: "aborted" }, toolResults: [], outcome: "aborted" });
});

test("reset() forgets the open turn: nothing mixes the messages of turns followed and not followed", () => {
	const t = new TurnEnds();
	t.before({ type: "turn_start", turnIndex: 0 });
	t.before({ type: "message_end", message: toolUse });
	t.reset(); // the last client left: turn_start is no longer followed
	t.before({ type: "message_end", message: result }); // turn 0 ends, turn 1 starts, both unseen
	t.before({ type: "message_end", message: stop });
	assert.equal(t.before({ type: "agent_end" }), undefined, "no turn_end built from two half-seen turns");
	t.before({ type: "turn_start", turnIndex: 0 }); // a later run, followed again
	t.before({ type: "message_end", message: stop });
	assert.deepEqual(t.before({ type: "agent_end" }), { type: "turn_end", turnIndex: 0, message: stop, toolResults: [], outcome: "completed" });
});
