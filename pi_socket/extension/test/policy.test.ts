// Unit checks of the approval policy (run: node --test, Node >= 22.18 strips the types).
import { test } from "node:test";
import assert from "node:assert/strict";
import {
	addRule,
	allowingRule,
	askReason,
	cleanRules,
	commandMatches,
	denyText,
	isUnder,
	parseTimeout,
	rememberRule,
	resolvePiPath,
	summarize,
	timeoutReason,
	type Rule,
} from "../src/policy.ts";

const inside = (p: string) => isUnder(resolvePiPath(p, "/w/proj", "/home/u") ?? "", "/w/proj");

test("off asks nothing, all asks everything", () => {
	for (const tool of ["bash", "write", "edit", "read", "ls", "mcp_x"]) {
		assert.equal(askReason("off", tool, { command: "rm -rf /", path: "/etc/passwd" }, inside), null);
		assert.ok(askReason("all", tool, { path: "a.txt" }, inside));
	}
});

test("writes asks for bash and powershell, and for write/edit outside the folder only", () => {
	assert.equal(askReason("writes", "bash", { command: "ls" }, inside), "bash");
	assert.equal(askReason("writes", "powershell", { command: "dir" }, inside), "powershell");
	assert.equal(askReason("writes", "write", { path: "src/a.ts", content: "" }, inside), null);
	assert.equal(askReason("writes", "edit", { path: "./a/../b.ts", edits: [] }, inside), null);
	assert.equal(askReason("writes", "edit", { path: "@src/a.ts" }, inside), null);
	for (const p of ["/etc/passwd", "../other/x", "~/x", "/w/project2/a", "a/../../x", 42, undefined, "a\0b"]) {
		assert.ok(askReason("writes", "write", { path: p }, inside), `write ${String(p)} must ask`);
	}
	assert.equal(askReason("writes", "read", { path: "/etc/passwd" }, inside), null);
	assert.equal(askReason("writes", "grep", { pattern: "x" }, inside), null);
});

test("a bash prefix rule matches at a word boundary and never a compound command", () => {
	assert.ok(commandMatches("git status", "git status"));
	assert.ok(commandMatches("git status", "  git status --short "));
	assert.ok(!commandMatches("git status", "git statusx"));
	assert.ok(!commandMatches("ls", "lsblk"));
	for (const c of ["git status; rm -rf ~", "git status && rm x", "git status | sh", "git status > /etc/x", "git status `rm x`",
		"git status $(rm x)", "git status ${IFS}", "git status\nrm x", "git status & rm x", "git status < /dev/x"]) {
		assert.ok(!commandMatches("git status", c), c);
	}
	assert.ok(!commandMatches("  ", "ls"));
});

test("rules: tool-only, bash prefix, and the first that allows", () => {
	const rules: Rule[] = [{ tool: "read" }, { tool: "bash", prefix: "npm test" }];
	assert.deepEqual(allowingRule(rules, "read", { path: "/etc/x" }), { tool: "read" });
	assert.deepEqual(allowingRule(rules, "bash", { command: "npm test -- -x" }), rules[1]);
	assert.equal(allowingRule(rules, "bash", { command: "npm install" }), undefined);
	assert.equal(allowingRule(rules, "bash", { command: "npm test; curl x | sh" }), undefined);
	assert.equal(allowingRule(rules, "bash", {}), undefined);
	assert.equal(allowingRule(rules, "write", { path: "x" }), undefined);
	assert.deepEqual(allowingRule([{ tool: "bash" }], "bash", { command: "anything; at all" }), { tool: "bash" });
});

test("don't ask again remembers the program and its subcommand, or the tool", () => {
	assert.deepEqual(rememberRule("bash", { command: "git status --short" }), { tool: "bash", prefix: "git status" });
	assert.deepEqual(rememberRule("bash", { command: "ls -la" }), { tool: "bash", prefix: "ls" });
	assert.deepEqual(rememberRule("bash", { command: "cat README.md" }), { tool: "bash", prefix: "cat" });
	assert.deepEqual(rememberRule("bash", { command: "  npm test" }), { tool: "bash", prefix: "npm test" });
	assert.deepEqual(rememberRule("bash", { command: "rm -rf ~; echo" }), { tool: "bash", prefix: "rm" });
	assert.deepEqual(rememberRule("write", { path: "/x" }), { tool: "write" });
	const rules: Rule[] = [];
	assert.ok(addRule(rules, { tool: "bash", prefix: "ls" }));
	assert.ok(!addRule(rules, { tool: "bash", prefix: "ls" }));
	assert.equal(rules.length, 1);
});

test("rules from outside are cleaned: bad items dropped, duplicates merged, bounded", () => {
	assert.deepEqual(cleanRules("nope"), []);
	assert.deepEqual(
		cleanRules([{ tool: "bash", prefix: " ls " }, { tool: "bash", prefix: "ls" }, { tool: "" }, { prefix: "x" }, null, 3, { tool: "read", prefix: null }, { tool: "bash", prefix: "" }, { tool: "x".repeat(65) }]),
		[{ tool: "bash", prefix: "ls" }, { tool: "read" }],
	);
	assert.equal(cleanRules(Array.from({ length: 500 }, (_, i) => ({ tool: `t${i}` }))).length, 200);
});

test("timeout: seconds by default, units accepted, nonsense rejected; the reason says minutes or seconds", () => {
	assert.equal(parseTimeout("600"), 600_000);
	assert.equal(parseTimeout("2.5"), 2500);
	assert.equal(parseTimeout("10m"), 600_000);
	assert.equal(parseTimeout("1h"), 3_600_000);
	assert.equal(parseTimeout("500ms"), 500);
	for (const bad of ["", " ", "abc", "-5", "0", "5x", undefined]) assert.equal(parseTimeout(bad), undefined, String(bad));
	assert.equal(timeoutReason(600_000), "no decision within 10 minutes");
	assert.equal(timeoutReason(60_000), "no decision within 1 minute");
	assert.equal(timeoutReason(2000), "no decision within 2 seconds");
});

test("paths resolve as pi resolves them", () => {
	assert.equal(resolvePiPath("~/a", "/w", "/home/u"), "/home/u/a");
	assert.equal(resolvePiPath("@x/y", "/w", "/h"), "/w/x/y");
	assert.equal(resolvePiPath("../../..", "/w/p", "/h"), "/");
	assert.equal(resolvePiPath("a\0", "/w", "/h"), undefined);
	assert.ok(isUnder("/w/p", "/w/p") && isUnder("/w/p/x", "/w/p") && !isUnder("/w/px", "/w/p"));
});

test("summaries are one bounded line; deny texts say who", () => {
	assert.equal(summarize("bash", { command: "echo  a\nb" }), "echo a b");
	assert.equal(summarize("edit", { path: "src/x.ts" }), "src/x.ts");
	assert.equal(summarize("bash", { command: "x".repeat(500) }).length, 200);
	assert.equal(denyText("dashboard", "use yarn"), "Denied by the user from the Hyper-Pi dashboard: use yarn");
	assert.equal(denyText("terminal", undefined), "Denied by the user in the terminal");
	assert.match(denyText("timeout", "no decision within 10 minutes"), /no decision within 10 minutes/);
});
