// Unit checks of what a dashboard may run per pi version (run: node --test, Node >= 22.18 strips the types).
import { test } from "node:test";
import assert from "node:assert/strict";
import { builtinCommands, canExpand, extensionCommands, modelInfo, quitPi, SESSION_COMMAND, thinkingLevels } from "../src/remote.ts";

test("expandPromptTemplates exists from pi 1.5 on", () => {
	assert.equal(canExpand("0.73.1"), false);
	assert.equal(canExpand("1.4.9"), false);
	assert.equal(canExpand("1.5.2"), true);
	assert.equal(canExpand("1.6.0"), true);
	assert.equal(canExpand("2.0.0"), true);
	assert.equal(canExpand(undefined), false);
});

test("built-ins: /new and /reload only where a command context is reachable; /export never", () => {
	const on = (v: string) => Object.fromEntries(builtinCommands(v).map((c) => [c.name, c.available]));
	assert.deepEqual(on("0.73.1"), { compact: true, model: true, thinking: true, name: true, new: false, reload: false, export: false });
	assert.deepEqual(on("1.6.0"), { compact: true, model: true, thinking: true, name: true, new: true, reload: true, export: false });
	assert.match(String(builtinCommands("0.73.1").find((c) => c.name === "new")?.note), /pi 0\.73\.1 cannot/);
});

test("extension commands: the shim's own is hidden, others available on >= 1.5 only", () => {
	const cmds = [{ name: SESSION_COMMAND, source: "extension" }, { name: "skill:x", source: "skill", description: "d" }, { name: "tmpl", source: "prompt" }];
	assert.deepEqual(extensionCommands(cmds, "1.6.0").map((c) => [c.name, c.available]), [["skill:x", true], ["tmpl", true]]);
	assert.deepEqual(extensionCommands(cmds, "0.73.1").map((c) => c.available), [false, false]);
});

test("models and thinking levels", () => {
	assert.deepEqual(modelInfo({ provider: "p", id: "m", name: "M", input: ["text", "image"], reasoning: true, contextWindow: 1000 }), {
		provider: "p", id: "m", name: "M", input: ["text", "image"], reasoning: true, context_window: 1000,
	});
	assert.deepEqual(thinkingLevels({ reasoning: false }, "1.6.0"), ["off"]);
	assert.deepEqual(thinkingLevels({ reasoning: true }, "0.73.1"), ["off", "minimal", "low", "medium", "high", "xhigh"]);
	assert.deepEqual(thinkingLevels({ reasoning: true, thinkingLevelMap: { xhigh: null } }, "1.6.0"), ["off", "minimal", "low", "medium", "high", "max"]);
});

test("quit: asks pi to shut down, aborting a run first (pi's shutdown waits for idle)", () => {
	const calls: string[] = [];
	const ctx = (idle: boolean) => ({ isIdle: () => idle, abort: () => calls.push("abort"), shutdown: () => calls.push("shutdown") });
	assert.deepEqual(quitPi(ctx(true)), { aborted: false });
	assert.deepEqual(calls, ["shutdown"]);
	calls.length = 0;
	assert.deepEqual(quitPi(ctx(false)), { aborted: true });
	assert.deepEqual(calls, ["abort", "shutdown"]);
	assert.throws(() => quitPi({ isIdle: () => true }), /unsupported/);
});
