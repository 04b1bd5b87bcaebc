// Unit checks of the machine service's output file (run: node --test, Node >= 22.18 strips the types).
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { openServiceOut } from "../src/child.ts";

function tmp(): string {
	return fs.mkdtempSync(path.join(os.tmpdir(), "pi-socket-out-"));
}

test("a small output file is appended to", () => {
	const dir = tmp();
	const file = path.join(dir, "pi-socket-machine.out");
	fs.writeFileSync(file, "before\n");
	const fd = openServiceOut(dir, 100);
	fs.writeSync(fd, "after\n");
	fs.closeSync(fd);
	assert.equal(fs.readFileSync(file, "utf8"), "before\nafter\n");
	assert.equal(fs.existsSync(`${file}.1`), false);
});

test("an output file over the limit moves to .1, replacing the older one, and a fresh file starts", () => {
	const dir = tmp();
	const file = path.join(dir, "pi-socket-machine.out");
	fs.writeFileSync(`${file}.1`, "oldest\n");
	fs.writeFileSync(file, "x".repeat(101));
	const fd = openServiceOut(dir, 100);
	fs.writeSync(fd, "fresh\n");
	fs.closeSync(fd);
	assert.equal(fs.readFileSync(file, "utf8"), "fresh\n");
	assert.equal(fs.readFileSync(`${file}.1`, "utf8"), "x".repeat(101));
});

test("a missing log folder is made, and a new file is the user's alone", () => {
	const dir = path.join(tmp(), "a", "b");
	fs.closeSync(openServiceOut(dir));
	assert.equal(fs.statSync(path.join(dir, "pi-socket-machine.out")).mode & 0o777, 0o600);
});
