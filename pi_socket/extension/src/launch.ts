// How to start the bridge, and which pi version runs this shim (looked up once per pi process).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { shared, type Launch } from "./child.ts";
import type { Ctx } from "./pi.ts";

type Json = Record<string, unknown>;

const SHIM_DIR = (() => {
	try {
		return path.dirname(typeof __filename === "string" ? __filename : new URL(import.meta.url).pathname);
	} catch {
		return "";
	}
})();

export function agentDir(): string {
	const d = process.env.PI_CODING_AGENT_DIR;
	if (d) return d.startsWith("~") ? path.join(os.homedir(), d.slice(1)) : d;
	return path.join(os.homedir(), ".pi", "agent");
}

export function readJson(file: string): Json | undefined {
	try {
		return JSON.parse(fs.readFileSync(file, "utf8"));
	} catch {
		return undefined;
	}
}

/**
 * How to start the bridge. `python -m pi_socket install` writes `pi-socket.json`
 * into the agent dir ({python, pythonpath}); `PI_SOCKET_PYTHON` overrides the
 * interpreter. Without a config (e.g. `pi install <repo>/pi_socket/extension`
 * by hand) the repo this file lives in is used, with its `.venv` if present.
 */
export function launchSpec(cwd: string | undefined): Launch {
	const cfg = readJson(path.join(agentDir(), "pi-socket.json")) ?? {};
	const repo = SHIM_DIR ? path.resolve(SHIM_DIR, "..", "..", "..") : "";
	const inRepo = !!repo && fs.existsSync(path.join(repo, "pi_socket", "bridge", "__main__.py"));
	const venvPython = inRepo ? path.join(repo, ".venv", "bin", "python") : "";
	const python =
		process.env.PI_SOCKET_PYTHON ||
		(typeof cfg.python === "string" && cfg.python) ||
		(venvPython && fs.existsSync(venvPython) ? venvPython : "python3");
	const pythonpath = typeof cfg.pythonpath === "string" && cfg.pythonpath ? cfg.pythonpath : inRepo ? repo : "";
	const env: Record<string, string> = {};
	for (const [k, v] of Object.entries(process.env)) if (typeof v === "string") env[k] = v;
	if (pythonpath) env.PYTHONPATH = env.PYTHONPATH ? `${pythonpath}${path.delimiter}${env.PYTHONPATH}` : pythonpath;
	env.PYTHONUNBUFFERED = "1";
	return { python, args: ["-m", "pi_socket.bridge"], env, cwd: cwd && fs.existsSync(cwd) ? cwd : undefined };
}

/** pi's version from its package.json (found from the running CLI); never a value import of pi. */
export function piVersion(ctx: Ctx): string {
	// Capability fallback: ctx.mode exists from 1.x on (and with it agent_settled).
	return cliVersion() ?? (ctx && "mode" in ctx && ctx.mode !== undefined ? "1.x" : "0.x");
}

/** pi's version from its package.json, looked up once per pi process (kept on globalThis across /new). */
export function cliVersion(): string | undefined {
	const st = shared();
	if (st.piCliVersion === undefined) st.piCliVersion = findCliVersion() ?? null;
	return st.piCliVersion ?? undefined;
}

function findCliVersion(): string | undefined {
	try {
		let dir = path.dirname(fs.realpathSync(process.argv[1] ?? ""));
		for (let i = 0; i < 5; i++) {
			const pkg = readJson(path.join(dir, "package.json"));
			if (pkg && typeof pkg.name === "string" && pkg.name.endsWith("/pi-coding-agent") && typeof pkg.version === "string") {
				return pkg.version;
			}
			dir = path.dirname(dir);
		}
	} catch {
		/* fall through */
	}
	return undefined;
}
