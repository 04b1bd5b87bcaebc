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

function lazyHarness() {
	const chunks: string[] = [];
	const soon: (() => void)[] = [];
	const later: (() => void)[] = [];
	const q = new LineQueue((c) => chunks.push(c), (fn) => soon.push(fn), undefined, (fn) => later.push(fn));
	const turn = () => soon.splice(0).forEach((fn) => fn());
	const timer = () => later.splice(0).forEach((fn) => fn());
	return { q, chunks, soon, later, turn, timer };
}

test("lazy lines wait for the timer: turns go by without a write, then one write for all of them", () => {
	const { q, chunks, soon, later, turn, timer } = lazyHarness();
	q.push("a\n", true);
	turn();
	q.push("b\n", true);
	turn();
	assert.equal(soon.length, 0, "lazy lines schedule no end-of-turn flush");
	assert.equal(later.length, 1, "one timer for any number of lazy lines");
	assert.deepEqual(chunks, []);
	timer();
	assert.deepEqual(chunks, ["a\nb\n"]);
	timer(); // nothing left
	assert.equal(chunks.length, 1);
	q.push("c\n", true);
	assert.equal(later.length, 1, "the next lazy line arms the timer again");
});

test("a prompt line takes the lazy lines queued before it along, in order", () => {
	const { q, chunks, later, turn, timer } = lazyHarness();
	q.push("lazy1\n", true);
	q.push("lazy2\n", true);
	q.push("prompt\n");
	turn();
	assert.deepEqual(chunks, ["lazy1\nlazy2\nprompt\n"]);
	timer(); // the armed timer finds nothing
	assert.deepEqual(chunks, ["lazy1\nlazy2\nprompt\n"]);
	assert.equal(later.length, 0);
	q.push("after\n", true);
	assert.equal(later.length, 1);
	timer();
	assert.deepEqual(chunks.slice(1), ["after\n"]);
});

test("a lazy line after a prompt line in the same turn goes out with that turn's write", () => {
	const { q, chunks, later, turn } = lazyHarness();
	q.push("prompt\n");
	q.push("lazy\n", true);
	assert.equal(later.length, 0, "a flush is already due at the end of the turn");
	turn();
	assert.deepEqual(chunks, ["prompt\nlazy\n"]);
});

test("lazy lines still respect the size threshold and flush()", () => {
	const chunks: string[] = [];
	const q = new LineQueue((c) => chunks.push(c), () => {}, 10, () => {});
	q.push("aaaa\n", true);
	q.push("bbbbbb\n", true);
	assert.deepEqual(chunks, ["aaaa\nbbbbbb\n"]);
	q.push("bye?\n", true);
	q.flush();
	assert.deepEqual(chunks, ["aaaa\nbbbbbb\n", "bye?\n"]);
});

test("without a `later` scheduler a lazy line is written at the end of the turn like any other", () => {
	const { q, chunks, turn } = harness();
	q.push("x\n", true);
	turn();
	assert.deepEqual(chunks, ["x\n"]);
});
