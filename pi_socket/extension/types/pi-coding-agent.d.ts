// The part of pi's extension API the shim calls, for `tsc --noEmit -p pi_socket/extension` without pi installed.
// A subset of `ExtensionAPI` as both pi 0.73 (`@mariozechner/pi-coding-agent`) and 1.5 (`@earendil-works/...`)
// declare it in dist/core/extensions/types.d.ts; where they differ the union of both is written. The shim calls
// these through `any` (the versions' overloads differ), and integration_tests/test_pi_shim_units.py type-checks
// the shim against each installed version's own declarations as well.

/** `pi.on(event, handler)`: 1.5+ returns an unsubscribe function, 0.73 returns nothing (specs/pi-runtime.md §3). */
type Unsubscribe = (() => void) | void;

interface TextContent {
	type: "text";
	text: string;
}

interface ImageContent {
	type: "image";
	data: string;
	mimeType: string;
}

export interface ExtensionAPI {
	on(event: string, handler: (event: any, ctx: any) => unknown): Unsubscribe;
	sendUserMessage(content: string | (TextContent | ImageContent)[], options?: { deliverAs?: "steer" | "followUp" }): void;
	setSessionName(name: string): void;
	getSessionName(): string | undefined;
	getActiveTools(): string[];
	getAllTools(): { name: string; description: string }[];
	getCommands(): { name: string; description?: string; source: string }[];
	registerCommand(name: string, options: { description?: string; handler: (args: string, ctx: any) => unknown }): void;
}
