// Unit checks of the coalesced stdin writes (run: node --test, Node >= 22.18 strips the types).
import { test } from "node:test";
import assert from "node:assert/strict";
import { FLUSH_BYTES, LineQueue } from "../src/outq.ts";

function harness(maxBytes?: number) {
	const chunks: string[] = [];
	const pending: (() => void)[] = [];
	const q = new LineQueue((c) => chunks.push(c), (fn) => pending.push(fn), maxBytes);
	const turn = () => pending.splice(0).forEach((fn) => fn());
	return { q, chunks, pending, turn };
}

test("lines of one turn are written as one chunk, in order, after the turn", () => {
	const { q, chunks, pending, turn } = harness();
	for (let i = 0; i < 50; i++) q.push(`{"n":${i}}\n`);
	assert.equal(chunks.length, 0);
	assert.equal(pending.length, 1, "one flush scheduled per turn, not one per line");
	turn();
	assert.equal(chunks.length, 1);
	assert.deepEqual(chunks[0].split("\n").filter(Boolean).map((l) => JSON.parse(l).n), [...Array(50).keys()]);
	assert.equal(q.pendingLines, 0);
	q.push("x\n");
	assert.equal(pending.length, 1, "the next turn schedules again");
	turn();
	assert.deepEqual(chunks, [chunks[0], "x\n"]);
});

test("a queue over the threshold is written at once; order across chunks is kept", () => {
	const { q, chunks, turn } = harness(10);
	q.push("aaaa\n");
	q.push("bbbb\n"); // 10 units: written now
	assert.deepEqual(chunks, ["aaaa\nbbbb\n"]);
	q.push("c\n");
	turn();
	assert.deepEqual(chunks, ["aaaa\nbbbb\n", "c\n"]);
	turn(); // nothing left: no empty write
	assert.equal(chunks.length, 2);
	assert.ok(FLUSH_BYTES >= 16 * 1024);
});

test("flush() writes synchronously (before bye / end) and the scheduled flush then finds nothing", () => {
	const { q, chunks, turn } = harness();
	q.push("1\n");
	q.push("bye\n");
	q.flush();
	assert.deepEqual(chunks, ["1\nbye\n"]);
	turn();
	assert.equal(chunks.length, 1);
});

test("clear() drops what was queued for a bridge that has gone", () => {
	const { q, chunks, turn } = harness();
	q.push("old\n");
	q.clear();
	turn();
	assert.deepEqual(chunks, []);
	assert.equal(q.pendingBytes, 0);
});

test("a single line is passed through without joining", () => {
	const { q, chunks, turn } = harness();
	const line = "y".repeat(100) + "\n";
	q.push(line);
	turn();
	assert.equal(chunks[0], line);
});
