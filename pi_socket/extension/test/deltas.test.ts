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
	const g = new DeltaGate(false);
	g.setWatching(true);
	g.observe(start);
	assert.deepEqual([g.delta(), g.delta(), g.delta()], ["plain", "plain", "plain"]);
});

test("a watcher arriving mid-message (its start unseen) gets one snapshot, then plain deltas", () => {
	const g = new DeltaGate(false);
	g.setWatching(true);
	assert.deepEqual([g.delta(), g.delta()], ["snapshot", "plain"]);
});

test("a watcher arriving between messages needs no snapshot: the next message's start is seen", () => {
	const g = new DeltaGate(false);
	g.setWatching(true);
	g.observe({ type: "message_start", message: { role: "user", content: "hi" } });
	g.observe(start);
	assert.equal(g.delta(), "plain");
});

test("a message that began unwatched and ended without a delta leaves nothing to repair", () => {
	const g = new DeltaGate(false);
	g.setWatching(true);
	g.observe(end);
	g.observe(start);
	assert.equal(g.delta(), "plain");
	const h = new DeltaGate(false);
	h.setWatching(true);
	h.observe({ type: "agent_end" }); // an aborted run
	assert.equal(h.delta(), "plain");
});

test("watchers leaving and coming back mid-message: snapshot again", () => {
	const g = new DeltaGate(true);
	g.observe(start);
	assert.equal(g.delta(), "plain");
	g.setWatching(false);
	assert.equal(g.delta(), "drop");
	g.setWatching(true);
	assert.equal(g.delta(), "snapshot");
	assert.equal(g.delta(), "plain");
});

test("setWatching with the current value changes nothing", () => {
	const g = new DeltaGate(false);
	g.setWatching(true);
	g.observe(start);
	g.setWatching(true);
	assert.equal(g.delta(), "plain");
});

test("a gate made while a client watches (a new module instance after /new) snapshots unless it sees the start", () => {
	assert.equal(new DeltaGate(true).delta(), "snapshot");
	const g = new DeltaGate(true);
	g.observe(start);
	assert.equal(g.delta(), "plain");
});
