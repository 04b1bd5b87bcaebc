// pi-socket shim: makes this pi visible and drivable from Hyper-Pi.
//
// It runs inside pi's Node process, so it stays tiny and dependency-free: it
// connects to this machine's service, which runs this pi's bridge (starting the
// service when none runs), or starts the Python bridge (`<python> -m pi_socket.bridge`)
// as a child with piped stdio (child.ts), writes one JSON line per pi event (subscriptions.ts)
// and answers the bridge's requests (requests.ts); specs/protocol.md §4.
// Servers, clients, history and registration all live in the bridge, where a
// crash cannot take pi down.
//
// Works on pi 0.73.x (@mariozechner) and 1.5.x (@earendil-works) from one
// file: only type imports from pi, capabilities are feature-detected, and
// events one version lacks are simply never fired there.
import type { ExtensionAPI } from "@mariozechner/pi-coding-agent"; // erased at load: no value import from pi
import { boundary, onReady, shared, type ShimState } from "./child.ts";
import { approvalSnapshot, installGate } from "./gate.ts";
import { call, PiInstance } from "./pi.ts";
import { SESSION_COMMAND } from "./remote.ts";
import { requestHandler, sessionCommandHandler } from "./requests.ts";
import { subscribe } from "./subscriptions.ts";

export { launchSpec } from "./launch.ts";

type Json = Record<string, unknown>;

export default function piSocket(pi: ExtensionAPI) {
	const st: ShimState = shared();
	const instance = new PiInstance(pi);
	const setWatching = subscribe(st, instance);
	const handleRequest = requestHandler(st, instance);
	installGate(st, instance);
	// Behind a dashboard's /new and /reload (remote.ts); hidden from the commands the shim lists.
	call(() => pi.registerCommand(SESSION_COMMAND, { description: "Hyper-Pi: a dashboard's /new or /reload", handler: sessionCommandHandler(st) }));
	const dispatch = (line: Json) => {
		if (line.t === "req") return handleRequest(line);
		if (line.t === "watch") return setWatching(line.on === true);
		if (line.t === "ready") {
			onReady(st, line.port, line.url);
			// A bridge that speaks `watch` says whether it has clients; an older one never will: stream always.
			setWatching(line.watch === true ? line.watching === true : true);
			if (!st.notified && typeof line.url === "string" && call(() => instance.ctx?.hasUI)) {
				st.notified = true; // once per pi process, not per bridge restart or /new
				call(() => instance.ctx.ui.notify(`Hyper-Pi: this agent is at ${line.url}`, "info"));
			}
		}
	};
	// A new module instance (after /new, /reload, /resume, /fork) takes over the bridge's lines and hello.
	st.dispatch = boundary(st, "dispatch", dispatch);
	st.hello = boundary(st, "hello", () => ({ ...instance.hello(st.nodeId), approval: approvalSnapshot(st) })) as () => Json;
}
