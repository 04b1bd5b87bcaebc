// Unit checks of where the shim finds the machine service and what its attach line carries (run: node --test).
import { test } from "node:test";
import assert from "node:assert/strict";
import { attachEnv, linkMode, runtimeDir } from "../src/child.ts";

test("PI_SOCKET_MODE: only 'bridge' forces a bridge child; anything else is the service", () => {
	assert.equal(linkMode({}), "service");
	assert.equal(linkMode({ PI_SOCKET_MODE: "bridge" }), "bridge");
	assert.equal(linkMode({ PI_SOCKET_MODE: " Bridge " }), "bridge");
	assert.equal(linkMode({ PI_SOCKET_MODE: "service" }), "service");
	assert.equal(linkMode({ PI_SOCKET_MODE: "nonsense" }), "service");
});

test("the runtime dir is the one the service locks (pi_socket/machine/lock.py)", () => {
	assert.equal(runtimeDir({ XDG_RUNTIME_DIR: "/run/user/7", HOME: "/h" }), "/run/user/7/hyper-pi");
	assert.equal(runtimeDir({ XDG_STATE_HOME: "/s", HOME: "/h" }), "/s/hyper-pi/run");
	assert.equal(runtimeDir({ HOME: "/h" }), "/h/.local/state/hyper-pi/run");
	assert.equal(runtimeDir({ XDG_RUNTIME_DIR: "  ", HOME: "/h" }), "/h/.local/state/hyper-pi/run");
});

test("the attach line carries only what a bridge reads", () => {
	const env = attachEnv({
		PI_SOCKET_PORT: "0",
		PI_SOCKET_NODE_SECRET: "s".repeat(24),
		HYPIVISOR_WS: "ws://h/ws",
		HYPI_TOKEN: "t",
		PI_CODING_AGENT_DIR: "/a",
		HOME: "/h",
		PATH: "/bin",
		AWS_SECRET_ACCESS_KEY: "no",
		PI_OFFLINE: "1",
	});
	assert.deepEqual(Object.keys(env).sort(), [
		"HOME",
		"HYPIVISOR_WS",
		"HYPI_TOKEN",
		"PI_CODING_AGENT_DIR",
		"PI_SOCKET_NODE_SECRET",
		"PI_SOCKET_PORT",
	]);
});
