import { test } from "node:test";
import assert from "node:assert/strict";
import { DeltaGate } from "../src/deltas.ts";

const start = { type: "message_start", message: { role: "assistant", content: [] } };
const end = { type: "message_end", message: { role: "assistant", content: [] } };

test("nobody watching: deltas are dropped", () => {
	const g = new DeltaGate(false);
	g.observe(start);
	assert.equal(g.delta(), "drop");
	assert.equal(g.delta(), "drop");
});

test("watching from before the message: plain deltas only", () => {
	const g = new DeltaGate(true);
	g.observe(start);
	assert.deepEqual([g.delta(), g.delta(), g.delta()], ["plain", "plain", "plain"]);
});

test("a watcher arriving mid-message gets one snapshot, then plain deltas", () => {
	const g = new DeltaGate(false);
	g.observe(start);
	g.delta();
	g.setWatching(true);
	assert.deepEqual([g.delta(), g.delta()], ["snapshot", "plain"]);
});

test("a watcher arriving between messages needs no snapshot", () => {
	const g = new DeltaGate(false);
	g.observe(start);
	g.delta();
	g.observe(end);
	g.setWatching(true);
	g.observe(start);
	assert.equal(g.delta(), "plain");
});

test("message_start while unwatched marks the message as missed even before any delta", () => {
	const g = new DeltaGate(false);
	g.observe(start);
	g.setWatching(true);
	assert.equal(g.delta(), "snapshot");
});

test("watchers leaving and coming back mid-message: snapshot again", () => {
	const g = new DeltaGate(true);
	g.observe(start);
	assert.equal(g.delta(), "plain");
	g.setWatching(false);
	g.setWatching(true);
	assert.equal(g.delta(), "snapshot");
	assert.equal(g.delta(), "plain");
});

test("user and tool-result messages do not stream: no snapshot for them", () => {
	const g = new DeltaGate(false);
	g.observe({ type: "message_start", message: { role: "user", content: "hi" } });
	g.setWatching(true);
	assert.equal(g.delta(), "plain");
});

test("agent_end clears an unfinished message (aborted run)", () => {
	const g = new DeltaGate(false);
	g.observe(start);
	g.observe({ type: "agent_end" });
	g.setWatching(true);
	assert.equal(g.delta(), "plain");
});
