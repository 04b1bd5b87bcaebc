// GENERATED from src/*.ts by `python -m pi_socket build-shim` (sources sha256:4190663f554107091f27e025d4268171af69cb160a58768b06c7291bd19b6523).
// Edit src/, then rebuild: pi loads this one file (one module for pi's loader instead of one per source).

// src/child.ts
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

// src/outq.ts
var LAZY_MS = 250;
var FLUSH_BYTES = 64 * 1024;
var LineQueue = class {
  parts = [];
  size = 0;
  scheduled = false;
  delayed = false;
  sink;
  schedule;
  later;
  maxBytes;
  /**
   * `sink` receives each chunk (one or more whole lines, in order); `schedule` runs a callback after the
   * current turn (`setImmediate` in the shim), `later` one after LAZY_MS (an unref'd timer: queued lines are
   * flushed at pi's exit anyway); neither may throw into its caller. Without `later` every line is prompt.
   */
  constructor(sink, schedule, maxBytes = FLUSH_BYTES, later) {
    this.sink = sink;
    this.schedule = schedule;
    this.maxBytes = maxBytes;
    this.later = later;
  }
  /**
   * Queue one line (with its "\n"); writes now when the queue is over the threshold. A `lazy` line is
   * written with the next prompt line's flush or after LAZY_MS, whichever comes first.
   */
  push(line, lazy = false) {
    this.parts.push(line);
    this.size += line.length;
    if (this.size >= this.maxBytes) {
      this.flush();
      return;
    }
    if (this.scheduled) return;
    if (lazy && this.later) {
      if (!this.delayed) {
        this.delayed = true;
        this.later(() => {
          this.delayed = false;
          this.flush();
        });
      }
      return;
    }
    this.scheduled = true;
    this.schedule(() => {
      this.scheduled = false;
      this.flush();
    });
  }
  /** Write everything queued as one chunk (no-op when empty). */
  flush() {
    if (this.parts.length === 0) return;
    const chunk = this.parts.length === 1 ? this.parts[0] : this.parts.join("");
    this.parts = [];
    this.size = 0;
    this.sink(chunk);
  }
  /** Drop what is queued (the child it was meant for is gone). */
  clear() {
    this.parts = [];
    this.size = 0;
  }
  get pendingLines() {
    return this.parts.length;
  }
  get pendingBytes() {
    return this.size;
  }
};

// src/child.ts
var BACKOFF_FIRST_MS = 500;
var BACKOFF_MAX_MS = 1e4;
var HEALTHY_AFTER_MS = 3e4;
var STDIN_STUCK_BYTES = 64 * 1024 * 1024;
var STDIN_STUCK_MS = 3e4;
var STDOUT_LINE_MAX = 64 * 1024 * 1024;
var LOG_BURST = 200;
var SERVICE_WAIT_MS = 2e3;
var SERVICE_RETRY_FIRST_MS = 25;
var SERVICE_RETRY_MAX_MS = 250;
var SOCKET_NAME = "agents.sock";
var SUN_PATH_MAX = 107;
var ATTACH_ENV_PREFIXES = ["PI_SOCKET_", "HYPI"];
var ATTACH_ENV_KEYS = /* @__PURE__ */ new Set(["PI_CODING_AGENT_DIR", "HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"]);
var DELIVERED_MAX = 1e3;
function claimPrompt(st, promptId) {
  if (st.delivered.includes(promptId)) return true;
  st.delivered.push(promptId);
  if (st.delivered.length > DELIVERED_MAX) st.delivered.splice(0, st.delivered.length - DELIVERED_MAX);
  return false;
}
function releasePrompt(st, promptId) {
  const i = st.delivered.lastIndexOf(promptId);
  if (i >= 0) st.delivered.splice(i, 1);
}
var KEY = "__hyperpi_pi_socket_shim__";
function shared() {
  const g = globalThis;
  if (!g[KEY]) {
    g[KEY] = {
      nodeId: process.env.PI_SOCKET_NODE_ID || `${safeHostname()}-${process.pid}`,
      nodeSecret: randomBytes(24).toString("base64url"),
      notified: false,
      stopped: false,
      backoffMs: BACKOFF_FIRST_MS,
      restarts: 0,
      logCount: 0,
      logWindowStart: Date.now(),
      delivered: []
    };
  }
  return g[KEY];
}
function safeHostname() {
  try {
    return os.hostname().split(".")[0] || "pi";
  } catch {
    return "pi";
  }
}
function writeLine(st, obj, lazy = false) {
  const stdin = st.link?.input;
  const out = st.out;
  if (!out || !stdin || !stdin.writable || stdin.destroyed) return false;
  let line;
  try {
    line = JSON.stringify(obj) + "\n";
  } catch {
    return false;
  }
  try {
    out.push(line, lazy);
    return true;
  } catch {
    return false;
  }
}
function writeChunk(st, link, chunk) {
  if (st.link !== link) return;
  const stdin = link.input;
  if (!stdin.writable || stdin.destroyed) return;
  try {
    if (!stdin.write(chunk) && st.blockedSince === void 0) st.blockedSince = Date.now();
    const stuckFor = st.blockedSince === void 0 ? 0 : Date.now() - st.blockedSince;
    if (stdin.writableLength > STDIN_STUCK_BYTES && stuckFor > STDIN_STUCK_MS) {
      st.blockedSince = void 0;
      shimLog(st, "error", "bridge stopped reading its stdin; restarting it", { buffered: stdin.writableLength, kind: link.kind });
      link.kill();
    }
  } catch {
  }
}
function flushLines(st) {
  try {
    st.out?.flush();
  } catch {
  }
}
function shimLog(st, level, msg, fields = {}) {
  try {
    const now = Date.now();
    if (now - st.logWindowStart > 6e4) {
      st.logWindowStart = now;
      st.logCount = 0;
    }
    if (++st.logCount > LOG_BURST) return;
    if (writeLine(st, { t: "log", level, msg, ...fields })) return;
    const dir = process.env.PI_SOCKET_LOG_DIR || path.join(os.homedir(), ".pi", "logs");
    fs.mkdirSync(dir, { recursive: true });
    const rec = { ts: (/* @__PURE__ */ new Date()).toISOString(), level, component: "shim", msg, node_id: st.nodeId, ...fields };
    fs.appendFileSync(path.join(dir, "pi-socket.jsonl"), JSON.stringify(rec) + "\n");
  } catch {
  }
}
function errorFields(boundary2, err) {
  const e = err;
  return {
    boundary: boundary2,
    needsHardening: true,
    error: `${e?.name ?? "Error"}: ${e?.message ?? String(err)}`.slice(0, 2e3),
    stack: typeof e?.stack === "string" ? e.stack.slice(0, 4e3) : void 0
  };
}
function boundary(st, name, fn) {
  return (...a) => {
    try {
      return fn(...a);
    } catch (err) {
      shimLog(st, "error", `shim boundary ${name} failed`, errorFields(name, err));
      return void 0;
    }
  };
}
function ensureBridge(st, launch) {
  st.launch = launch;
  if (st.link || st.connecting || st.stopped || st.restartTimer) return;
  startLink(st);
}
function linkMode(env = process.env) {
  return (env.PI_SOCKET_MODE ?? "").trim().toLowerCase() === "bridge" ? "bridge" : "service";
}
function runtimeDir(env = process.env) {
  const xdg = (env.XDG_RUNTIME_DIR ?? "").trim();
  if (xdg) return path.join(xdg, "hyper-pi");
  const state = (env.XDG_STATE_HOME ?? "").trim();
  const base = state || path.join(env.HOME || os.homedir(), ".local", "state");
  return path.join(base, "hyper-pi", "run");
}
function attachEnv(env) {
  const out = {};
  for (const [k, v] of Object.entries(env)) {
    if (typeof v === "string" && (ATTACH_ENV_KEYS.has(k) || ATTACH_ENV_PREFIXES.some((p) => k.startsWith(p)))) out[k] = v;
  }
  return out;
}
function bridgeEnv(st, launch) {
  const env = { ...launch.env, PI_SOCKET_NODE_ID: st.nodeId, PI_SOCKET_NODE_SECRET: st.nodeSecret };
  if (st.port) env.PI_SOCKET_PREFERRED_PORT = String(st.port);
  return env;
}
function startLink(st) {
  const launch = st.launch;
  if (!launch || st.stopped) return;
  if (linkMode({ PI_SOCKET_MODE: process.env.PI_SOCKET_MODE }) === "bridge") return startChild(st);
  const sockPath = path.join(runtimeDir(launch.env), SOCKET_NAME);
  if (Buffer.byteLength(sockPath) > SUN_PATH_MAX) {
    shimLog(st, "warn", "the machine service's socket path is too long; starting a bridge child", { path: sockPath });
    return startChild(st);
  }
  connectService(st, Date.now(), false, SERVICE_RETRY_FIRST_MS);
}
function connectService(st, since, started, delay) {
  const launch = st.launch;
  if (!launch || st.stopped) {
    st.connecting = false;
    return;
  }
  st.connecting = true;
  const sockPath = path.join(runtimeDir(launch.env), SOCKET_NAME);
  let sock;
  try {
    sock = net.connect({ path: sockPath });
  } catch (err) {
    shimLog(st, "warn", "cannot reach the machine service; starting a bridge child", errorFields("service.connect", err));
    st.connecting = false;
    startChild(st);
    return;
  }
  let connected = false;
  sock.on("connect", boundary(st, "service.connect", () => {
    connected = true;
    st.connecting = false;
    if (st.stopped) {
      sock.destroy();
      return;
    }
    useSocket(st, launch, sock);
  }));
  sock.on("error", boundary(st, "service.error", (err) => {
    if (connected) return;
    sock.destroy();
    const wait = Number(process.env.PI_SOCKET_SERVICE_WAIT_MS) || SERVICE_WAIT_MS;
    if (!started) {
      startService(st, launch);
      started = true;
    }
    if (Date.now() - since >= wait || st.stopped) {
      st.connecting = false;
      if (st.stopped) return;
      shimLog(st, "warn", "no machine service answered; starting a bridge child", { error: String(err?.message ?? err), waited_ms: Date.now() - since });
      startChild(st);
      return;
    }
    const timer = setTimeout(boundary(st, "service.retry", () => connectService(st, since, started, Math.min(SERVICE_RETRY_MAX_MS, delay * 2))), delay);
    timer.unref?.();
  }));
}
var SERVICE_OUT_MAX = 1024 * 1024;
function openServiceOut(dir, maxBytes = SERVICE_OUT_MAX) {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, "pi-socket-machine.out");
  try {
    if (fs.statSync(file).size > maxBytes) fs.renameSync(file, `${file}.1`);
  } catch {
  }
  return fs.openSync(file, "a", 384);
}
function startService(st, launch) {
  let out = "ignore";
  try {
    out = openServiceOut(launch.env.PI_SOCKET_LOG_DIR || path.join(launch.env.HOME || os.homedir(), ".pi", "logs"));
  } catch {
    out = "ignore";
  }
  try {
    const child = spawn(launch.python, ["-m", "pi_socket", "serve"], {
      detached: true,
      stdio: ["ignore", out, out],
      env: launch.env,
      cwd: launch.env.HOME && fs.existsSync(launch.env.HOME) ? launch.env.HOME : "/",
      windowsHide: true
    });
    child.on("error", (err) => {
      shimLog(st, "warn", "could not start the machine service", { error: String(err?.message ?? err), python: launch.python });
    });
    child.unref();
    if (child.pid) shimLog(st, "info", "started the machine service", { pid: child.pid, python: launch.python });
  } catch (err) {
    shimLog(st, "warn", "could not start the machine service", { ...errorFields("service.spawn", err), python: launch.python });
  } finally {
    if (typeof out === "number") {
      try {
        fs.closeSync(out);
      } catch {
      }
    }
  }
}
function useSocket(st, launch, sock) {
  const link = {
    kind: "service",
    input: sock,
    kill: () => sock.destroy(),
    release: () => {
      try {
        sock.end();
        sock.removeAllListeners("data");
        sock.unref();
      } catch {
      }
    }
  };
  attachLink(st, link);
  sock.setEncoding("utf8");
  sock.on("data", lineReader(st));
  sock.on("drain", () => {
    st.blockedSince = void 0;
  });
  sock.on("close", boundary(st, "service.close", () => {
    if (!st.stopped && st.link === link) shimLog(st, "warn", "machine service closed this agent's link; reconnecting", { restarts: st.restarts });
    onExit(st, link);
  }));
  writeLine(st, { t: "attach", v: 1, pid: process.pid, cwd: launch.cwd ?? process.cwd(), env: attachEnv(bridgeEnv(st, launch)) });
  const hello = st.hello?.();
  if (hello) writeLine(st, hello);
}
function attachLink(st, link) {
  st.link = link;
  st.out = new LineQueue(
    (chunk) => writeChunk(st, link, chunk),
    (fn) => {
      setImmediate(boundary(st, "bridge.flush", fn));
    },
    void 0,
    (fn) => {
      setTimeout(boundary(st, "bridge.flush", fn), LAZY_MS).unref?.();
    }
  );
  if (!st.exitHook) {
    st.exitHook = true;
    process.once("exit", () => flushLines(st));
  }
  st.blockedSince = void 0;
}
function lineReader(st) {
  let buf = "";
  return boundary(st, "bridge.stdout", (chunk) => {
    buf += chunk;
    if (buf.length > STDOUT_LINE_MAX && buf.indexOf("\n") < 0) {
      shimLog(st, "warn", "bridge wrote an over-long line; dropped", { size: buf.length });
      buf = "";
      return;
    }
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const raw = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (!raw.trim()) continue;
      let line;
      try {
        line = JSON.parse(raw);
      } catch {
        shimLog(st, "warn", "bridge line is not JSON; skipped", { size: raw.length });
        continue;
      }
      if (line && typeof line === "object") st.dispatch?.(line);
    }
  });
}
function startChild(st) {
  const launch = st.launch;
  if (!launch || st.stopped) return;
  const env = bridgeEnv(st, launch);
  let child;
  try {
    child = spawn(launch.python, launch.args, { stdio: ["pipe", "pipe", "pipe"], env, cwd: launch.cwd, windowsHide: true });
  } catch (err) {
    shimLog(st, "error", "could not start the bridge", { ...errorFields("bridge.spawn", err), python: launch.python });
    scheduleRestart(st);
    return;
  }
  const stdin = child.stdin;
  if (!stdin) return;
  st.child = child;
  const link = {
    kind: "bridge",
    input: stdin,
    kill: () => child.kill("SIGKILL"),
    release: () => {
      try {
        child.stdin?.end();
      } catch {
      }
      try {
        child.stdout?.removeAllListeners("data");
        child.stdout?.destroy();
        child.stderr?.destroy();
        child.unref();
      } catch {
      }
    }
  };
  attachLink(st, link);
  child.stdout?.setEncoding("utf8");
  child.stdout?.on("data", lineReader(st));
  child.stdout?.on("error", () => {
  });
  child.stderr?.on("data", () => {
  });
  child.stderr?.on("error", () => {
  });
  stdin.on("error", () => {
  });
  stdin.on("drain", () => {
    st.blockedSince = void 0;
  });
  child.on("error", boundary(st, "bridge.error", (err) => {
    shimLog(st, "error", "bridge process error", { error: String(err?.message ?? err), python: launch.python });
    onExit(st, link);
  }));
  child.on("exit", boundary(st, "bridge.exit", (code, signal) => {
    if (!st.stopped) shimLog(st, "warn", "bridge exited; restarting", { code, signal, restarts: st.restarts });
    onExit(st, link);
  }));
  const hello = st.hello?.();
  if (hello) writeLine(st, hello);
}
function onExit(st, link) {
  if (st.link !== link) return;
  st.link = void 0;
  st.child = void 0;
  st.out?.clear();
  st.out = void 0;
  scheduleRestart(st);
}
function scheduleRestart(st) {
  if (st.stopped || st.restartTimer) return;
  if (st.readyAt !== void 0 && Date.now() - st.readyAt > HEALTHY_AFTER_MS) st.backoffMs = BACKOFF_FIRST_MS;
  st.readyAt = void 0;
  const delay = st.backoffMs;
  st.backoffMs = Math.min(BACKOFF_MAX_MS, st.backoffMs * 2);
  st.restartTimer = setTimeout(
    boundary(st, "bridge.restart", () => {
      st.restartTimer = void 0;
      st.restarts += 1;
      startLink(st);
    }),
    delay
  );
  st.restartTimer.unref?.();
}
function onReady(st, port, url) {
  if (typeof port === "number" && port > 0) st.port = port;
  if (typeof url === "string") st.url = url;
  st.readyAt = Date.now();
}
function stopBridge(st, reason) {
  st.stopped = true;
  if (st.restartTimer) clearTimeout(st.restartTimer);
  st.restartTimer = void 0;
  const link = st.link;
  if (!link) return;
  writeLine(st, { t: "bye", reason });
  flushLines(st);
  link.release();
}

// src/gate.ts
import { createHash, randomBytes as randomBytes2 } from "node:crypto";
import * as fs3 from "node:fs";
import * as os3 from "node:os";
import * as path3 from "node:path";

// src/launch.ts
import * as fs2 from "node:fs";
import * as os2 from "node:os";
import * as path2 from "node:path";
var SHIM_DIR = (() => {
  try {
    return path2.dirname(typeof __filename === "string" ? __filename : new URL(import.meta.url).pathname);
  } catch {
    return "";
  }
})();
function agentDir() {
  const d = process.env.PI_CODING_AGENT_DIR;
  if (d) return d.startsWith("~") ? path2.join(os2.homedir(), d.slice(1)) : d;
  return path2.join(os2.homedir(), ".pi", "agent");
}
function readJson(file) {
  try {
    return JSON.parse(fs2.readFileSync(file, "utf8"));
  } catch {
    return void 0;
  }
}
function launchSpec(cwd) {
  const cfg = readJson(path2.join(agentDir(), "pi-socket.json")) ?? {};
  const repo = SHIM_DIR ? path2.resolve(SHIM_DIR, "..", "..", "..") : "";
  const inRepo = !!repo && fs2.existsSync(path2.join(repo, "pi_socket", "bridge", "__main__.py"));
  const venvPython = inRepo ? path2.join(repo, ".venv", "bin", "python") : "";
  const python = process.env.PI_SOCKET_PYTHON || typeof cfg.python === "string" && cfg.python || (venvPython && fs2.existsSync(venvPython) ? venvPython : "python3");
  const pythonpath = typeof cfg.pythonpath === "string" && cfg.pythonpath ? cfg.pythonpath : inRepo ? repo : "";
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (typeof v === "string") env[k] = v;
  if (pythonpath) env.PYTHONPATH = env.PYTHONPATH ? `${pythonpath}${path2.delimiter}${env.PYTHONPATH}` : pythonpath;
  env.PYTHONUNBUFFERED = "1";
  return { python, args: ["-m", "pi_socket.bridge"], env, cwd: cwd && fs2.existsSync(cwd) ? cwd : void 0 };
}
function piVersion(ctx) {
  return cliVersion() ?? (ctx && "mode" in ctx && ctx.mode !== void 0 ? "1.x" : "0.x");
}
function cliVersion() {
  const st = shared();
  if (st.piCliVersion === void 0) st.piCliVersion = findCliVersion() ?? null;
  return st.piCliVersion ?? void 0;
}
function findCliVersion() {
  try {
    let dir = path2.dirname(fs2.realpathSync(process.argv[1] ?? ""));
    for (let i = 0; i < 5; i++) {
      const pkg = readJson(path2.join(dir, "package.json"));
      if (pkg && typeof pkg.name === "string" && pkg.name.endsWith("/pi-coding-agent") && typeof pkg.version === "string") {
        return pkg.version;
      }
      dir = path2.dirname(dir);
    }
  } catch {
  }
  return void 0;
}

// src/remote.ts
var SESSION_COMMAND = "hyperpi-session";
function canExpand(version) {
  const m = /^(\d+)\.(\d+)/.exec(version ?? "");
  if (!m) return (version ?? "").startsWith("1.");
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 1 || major === 1 && minor >= 5;
}
var OLD_PI = (v) => `pi ${v || "of this version"} cannot run it from outside its terminal`;
function builtinCommands(version) {
  const expand = canExpand(version);
  const cmd = (name, description, available, note) => ({ name, description, source: "builtin", available, note });
  return [
    cmd("compact", "Compact the conversation (optional instructions after the command)", true, "runs ctx.compact()"),
    cmd("model", "Choose the model", true, "opens the model picker"),
    cmd("thinking", "Set the thinking level", true, "opens the thinking-level picker"),
    cmd("name", "Name this session", true, "renames the session"),
    cmd("new", "Start a new session", expand, expand ? "runs ctx.newSession()" : OLD_PI(version)),
    cmd("reload", "Reload extensions, skills, prompts and themes", expand, expand ? "runs ctx.reload()" : OLD_PI(version)),
    cmd("export", "Export the session to HTML", false, "pi has no API for /export from an extension: run it in pi's terminal")
  ];
}
function extensionCommands(commands, version) {
  const expand = canExpand(version);
  return commands.filter((c) => c?.name && c.name !== SESSION_COMMAND).map((c) => ({
    name: c.name,
    description: c.description ?? "",
    source: c.source ?? "extension",
    available: expand,
    note: expand ? null : `pi ${version || "of this version"} would send it to the model as text: run it in pi's terminal`
  }));
}
function modelInfo(m) {
  return {
    provider: String(m?.provider ?? ""),
    id: String(m?.id ?? ""),
    name: typeof m?.name === "string" ? m.name : null,
    input: Array.isArray(m?.input) ? m.input.map(String) : ["text"],
    reasoning: m?.reasoning === true,
    context_window: typeof m?.contextWindow === "number" ? m.contextWindow : null
  };
}
function thinkingLevels(model, version) {
  if (!model || model.reasoning !== true) return ["off"];
  const all = ["off", "minimal", "low", "medium", "high", "xhigh"];
  if (/^(\d+)/.exec(version ?? "")?.[1] !== "0") all.push("max");
  const map = model.thinkingLevelMap;
  return all.filter((l) => !(map && typeof map === "object" && map[l] === null));
}
function quitPi(ctx) {
  if (typeof ctx?.shutdown !== "function") throw new Error("unsupported: this pi has no ctx.shutdown()");
  let aborted = false;
  if (typeof ctx.isIdle === "function" && !ctx.isIdle()) {
    ctx.abort?.();
    aborted = true;
  }
  ctx.shutdown();
  return { aborted };
}

// src/slim.ts
var TOOL_UPDATE_TEXT_MAX = 64 * 1024;
var isSystem = (m) => !!m && typeof m === "object" && m.role === "system";
function slimMessageUpdate(e) {
  const ame = e.assistantMessageEvent ?? {};
  const out = { type: ame.type, contentIndex: ame.contentIndex };
  if (typeof ame.delta === "string") out.delta = ame.delta;
  if (typeof ame.content === "string") out.content = ame.content;
  if (ame.toolCall && typeof ame.toolCall === "object") out.toolCall = ame.toolCall;
  if (ame.type === "toolcall_start" && !out.toolCall) {
    const partial = ame.partial ?? e.message;
    const parts = Array.isArray(partial?.content) ? partial.content : [];
    const part = typeof ame.contentIndex === "number" ? parts[ame.contentIndex] : void 0;
    if (part && part.type === "toolCall") out.toolCall = { type: "toolCall", id: part.id, name: part.name };
  }
  return { type: "message_update", assistantMessageEvent: out };
}
function capContent(content) {
  if (!Array.isArray(content)) return content;
  return content.map(
    (c) => c && c.type === "text" && typeof c.text === "string" && c.text.length > TOOL_UPDATE_TEXT_MAX ? { ...c, text: c.text.slice(-TOOL_UPDATE_TEXT_MAX), truncated: true } : c
  );
}
function without(e, keys) {
  const out = {};
  for (const k of Object.keys(e)) if (!keys.includes(k)) out[k] = e[k];
  return out;
}
function slimEvent(e) {
  switch (e.type) {
    case "message_update":
      return slimMessageUpdate(e);
    case "message_start":
    case "message_end":
      return isSystem(e.message) ? void 0 : e;
    case "turn_end":
    case "agent_before_settle": {
      const out = without(e, ["context", "entries", "messages"]);
      if (Array.isArray(out.toolResults)) out.toolResults = out.toolResults.filter((m) => !isSystem(m));
      return isSystem(out.message) ? without(out, ["message"]) : out;
    }
    case "agent_end": {
      const msgs = Array.isArray(e.messages) ? e.messages : [];
      const last = [...msgs].reverse().find((m) => m && m.role === "assistant");
      const out = { type: "agent_end" };
      if (last) {
        out.stopReason = last.stopReason;
        if (last.errorMessage !== void 0) out.errorMessage = last.errorMessage;
      }
      return out;
    }
    case "tool_execution_update": {
      const pr = e.partialResult;
      if (!pr || typeof pr !== "object") return e;
      return { ...e, partialResult: { ...pr, content: capContent(pr.content) } };
    }
    case "model_select": {
      const m = e.model;
      const prev = e.previousModel;
      return {
        type: "model_select",
        model: modelName(m),
        previousModel: prev ? modelName(prev) : void 0,
        source: e.source
      };
    }
    default:
      return e;
  }
}
function modelName(m) {
  if (!m || typeof m !== "object") return null;
  const { provider, id } = m;
  return provider && id ? `${provider}/${id}` : typeof id === "string" ? id : null;
}
function branchMessages(entries) {
  if (!Array.isArray(entries)) return [];
  const out = [];
  for (const x of entries) {
    if (x?.type === "message" && x.message && !isSystem(x.message)) out.push(x.message);
    else if (x?.type === "custom_message") {
      out.push({
        role: "custom",
        customType: x.customType,
        content: x.content,
        display: x.display,
        details: x.details,
        timestamp: typeof x.timestamp === "string" ? Date.parse(x.timestamp) || x.timestamp : x.timestamp
      });
    }
  }
  return out;
}

// src/pi.ts
function call(fn) {
  try {
    return fn();
  } catch {
    return void 0;
  }
}
var PiInstance = class {
  /** pi's ExtensionAPI; its methods differ between versions, so each call is guarded where it may be missing. */
  api;
  /** The latest ctx of THIS instance (set by every event handler); an old instance's ctx throws after /new or /reload. */
  ctx;
  /** False once this instance got session_shutdown. */
  live = true;
  /** pi's version, found at the first session_start. */
  version = "";
  constructor(pi) {
    this.api = pi;
  }
  sessionFacts() {
    const sm = this.ctx?.sessionManager;
    return {
      session_id: call(() => sm?.getSessionId()) ?? null,
      session_file: call(() => sm?.getSessionFile()) ?? null,
      session_name: call(() => this.api.getSessionName()) ?? null,
      model: modelName(call(() => this.ctx?.model)),
      tools: this.listTools(),
      commands: this.listCommands()
    };
  }
  listTools() {
    const all = call(() => this.api.getAllTools()) ?? [];
    const active = new Set(call(() => this.api.getActiveTools()) ?? []);
    return all.map((t) => ({ name: t?.name, description: t?.description ?? "", active: active.has(t?.name) }));
  }
  /** pi's built-ins a dashboard can run, then pi's `getCommands()` (extensions, templates, skills). */
  listCommands() {
    const version = this.version || cliVersion();
    return [...builtinCommands(version), ...extensionCommands(call(() => this.api.getCommands()) ?? [], version)];
  }
  contextUsage() {
    const u = call(() => this.ctx?.getContextUsage?.());
    return u && typeof u === "object" ? { tokens: u.tokens ?? null, contextWindow: u.contextWindow ?? null, percent: u.percent ?? null } : void 0;
  }
  /** The `hello` line (specs/protocol.md §4.1) with the latest session facts. */
  hello(nodeId) {
    return {
      t: "hello",
      v: 1,
      node_id: nodeId,
      pid: process.pid,
      cwd: call(() => this.ctx?.cwd) ?? process.cwd(),
      pi_version: this.version,
      mode: call(() => this.ctx?.mode) ?? (call(() => this.ctx?.hasUI) ? "interactive" : "print"),
      session: this.sessionFacts()
    };
  }
};

// src/policy.ts
var POLICIES = ["off", "writes", "all"];
var MAX_RULES = 200;
var MAX_PREFIX = 500;
var MAX_TOOL = 64;
var DEFAULT_TIMEOUT_MS = 10 * 6e4;
var SHELLS = /* @__PURE__ */ new Set(["bash", "powershell"]);
var FILE_WRITERS = /* @__PURE__ */ new Set(["write", "edit"]);
var COMPOUND = /[;&|<>`\n\r]|\$\(|\$\{/;
function isPolicy(v) {
  return typeof v === "string" && POLICIES.includes(v);
}
function isShell(toolName) {
  return SHELLS.has(toolName);
}
function commandOf(toolName, input) {
  const c = isShell(toolName) && input && typeof input === "object" ? input.command : void 0;
  return typeof c === "string" ? c : void 0;
}
function askReason(policy, toolName, input, inside) {
  if (policy === "off") return null;
  if (policy === "all") return "every tool call";
  if (isShell(toolName)) return toolName;
  if (FILE_WRITERS.has(toolName)) {
    const p = input && typeof input === "object" ? input.path : void 0;
    if (typeof p !== "string" || !inside(p)) return `${toolName} outside the agent's folder`;
  }
  return null;
}
function commandMatches(prefix, command) {
  const p = prefix.trim();
  const c = command.trim();
  if (!p || COMPOUND.test(c)) return false;
  return c === p || c.startsWith(p) && /\s/.test(c.charAt(p.length));
}
function allowingRule(rules, toolName, input) {
  for (const r of rules) {
    if (r.tool !== toolName) continue;
    if (r.prefix === void 0) return r;
    const cmd = commandOf(toolName, input);
    if (cmd !== void 0 && commandMatches(r.prefix, cmd)) return r;
  }
  return void 0;
}
function rememberRule(toolName, input) {
  const cmd = commandOf(toolName, input);
  if (cmd === void 0) return { tool: toolName };
  const words = cmd.trim().split(/\s+/);
  const first = (words[0] ?? "").split(/[;&|<>`]/)[0];
  if (!first) return { tool: toolName };
  const sub = words[1];
  const prefix = sub !== void 0 && /^[A-Za-z][A-Za-z0-9:_-]*$/.test(sub) ? `${first} ${sub}` : first;
  return { tool: toolName, prefix };
}
function cleanRules(raw) {
  if (!Array.isArray(raw)) return [];
  const out = [];
  const seen = /* @__PURE__ */ new Set();
  for (const item of raw) {
    if (out.length >= MAX_RULES) break;
    if (!item || typeof item !== "object") continue;
    const { tool, prefix } = item;
    if (typeof tool !== "string" || !tool.trim() || tool.length > MAX_TOOL) continue;
    const rule = { tool: tool.trim() };
    if (prefix !== void 0 && prefix !== null) {
      if (typeof prefix !== "string" || !prefix.trim() || prefix.length > MAX_PREFIX) continue;
      rule.prefix = prefix.trim();
    }
    const key = `${rule.tool}\0${rule.prefix ?? ""}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(rule);
  }
  return out;
}
function addRule(rules, rule) {
  if (rules.some((r) => r.tool === rule.tool && (r.prefix ?? "") === (rule.prefix ?? ""))) return false;
  if (rules.length >= MAX_RULES) rules.shift();
  rules.push(rule);
  return true;
}
function parseTimeout(raw) {
  if (raw === void 0 || raw.trim() === "") return void 0;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/i.exec(raw);
  if (!m) return void 0;
  const n = Number(m[1]);
  const unit = (m[2] ?? "s").toLowerCase();
  const ms = unit === "ms" ? n : unit === "s" ? n * 1e3 : unit === "m" ? n * 6e4 : n * 36e5;
  return ms > 0 && Number.isFinite(ms) ? Math.min(ms, 2147e6) : void 0;
}
function timeoutReason(ms) {
  if (ms >= 6e4 && ms % 6e4 === 0) {
    const n = ms / 6e4;
    return `no decision within ${n} minute${n === 1 ? "" : "s"}`;
  }
  const s = Math.round(ms / 100) / 10;
  return `no decision within ${s} second${s === 1 ? "" : "s"}`;
}
function summarize(toolName, input) {
  const cmd = commandOf(toolName, input);
  let s;
  if (cmd !== void 0) s = cmd;
  else if (input && typeof input === "object" && typeof input.path === "string") s = String(input.path);
  else {
    try {
      s = JSON.stringify(input) ?? "";
    } catch {
      s = "";
    }
  }
  s = s.replace(/\s+/g, " ").trim();
  return s.length > 200 ? `${s.slice(0, 199)}\u2026` : s;
}
function resolvePiPath(p, cwd, home) {
  if (p.includes("\0")) return void 0;
  let s = p.replace(/[\u00A0\u2000-\u200A\u202F\u205F\u3000]/g, " ");
  if (s.startsWith("@")) s = s.slice(1);
  if (s === "~") s = home;
  else if (s.startsWith("~/")) s = home + s.slice(1);
  const abs = s.startsWith("/") ? s : `${cwd.replace(/\/+$/, "")}/${s}`;
  const parts = [];
  for (const seg of abs.split("/")) {
    if (!seg || seg === ".") continue;
    if (seg === "..") parts.pop();
    else parts.push(seg);
  }
  return `/${parts.join("/")}`;
}
function isUnder(p, dir) {
  const d = dir.replace(/\/+$/, "") || "/";
  return d === "/" || p === d || p.startsWith(`${d}/`);
}
function denyText(by, reason) {
  const who = by === "dashboard" ? "the user from the Hyper-Pi dashboard" : by === "terminal" ? "the user in the terminal" : by === "timeout" ? "the approval gate" : by === "abort" ? "the user (aborted)" : "the approval gate";
  const r = reason?.trim();
  return r ? `Denied by ${who}: ${r}` : `Denied by ${who}`;
}

// src/gate.ts
var RULES_FILE = "hyper-pi-approvals.json";
var NO_UI_REASON = "approval needed but nobody can answer: pi has no terminal UI here and no Hyper-Pi dashboard is connected";
var GATE_FAILED = "Blocked: the Hyper-Pi approval gate failed, so this call did not run (details in pi-socket.jsonl)";
function approvals(st) {
  if (st.approval) return st.approval;
  let file = {};
  const rulesPath = path3.join(agentDir(), RULES_FILE);
  try {
    if (fs3.existsSync(rulesPath)) {
      const parsed = JSON.parse(fs3.readFileSync(rulesPath, "utf8"));
      if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) file = parsed;
      else shimLog(st, "warn", "approval rules file is not a JSON object; ignored", { file: rulesPath });
    }
  } catch (err) {
    shimLog(st, "warn", "approval rules file unreadable; ignored", { file: rulesPath, error: String(err?.message ?? err) });
  }
  const env = process.env.PI_SOCKET_APPROVAL?.trim().toLowerCase();
  let policy = "off";
  if (env) {
    if (isPolicy(env)) policy = env;
    else {
      policy = "writes";
      shimLog(st, "warn", "PI_SOCKET_APPROVAL is not off|writes|all; using writes", { value: env.slice(0, 40) });
    }
  } else if (isPolicy(file.policy)) policy = file.policy;
  const rawTimeout = process.env.PI_SOCKET_APPROVAL_TIMEOUT;
  let timeoutMs = parseTimeout(rawTimeout);
  if (timeoutMs === void 0) {
    if (rawTimeout?.trim()) shimLog(st, "warn", "PI_SOCKET_APPROVAL_TIMEOUT is invalid; using 10 minutes", { value: rawTimeout.slice(0, 40) });
    timeoutMs = DEFAULT_TIMEOUT_MS;
  }
  st.approval = { policy, rules: cleanRules(file.rules), timeoutMs, pending: /* @__PURE__ */ new Map(), edited: /* @__PURE__ */ new Map(), seq: 0 };
  return st.approval;
}
function approvalSnapshot(st) {
  const ap = approvals(st);
  return { policy: ap.policy, rules: ap.rules, pending: [...ap.pending.values()].map(requestLine) };
}
function requestLine(p) {
  return {
    t: "approval",
    id: p.id,
    tool_call_id: p.toolCallId,
    parent_tool_call_id: p.parentToolCallId,
    tool_name: p.toolName,
    input: p.input,
    policy: p.policy,
    why: p.why,
    queued_at: p.queuedAt / 1e3
  };
}
function sendPolicy(st) {
  const ap = approvals(st);
  writeLine(st, { t: "policy", policy: ap.policy, rules: ap.rules });
}
function setPolicy(st, policy, rules) {
  if (!isPolicy(policy)) throw new Error(`invalid policy ${JSON.stringify(policy)}: use off, writes or all`);
  const ap = approvals(st);
  ap.policy = policy;
  if (rules !== void 0 && rules !== null) ap.rules = cleanRules(rules);
  sendPolicy(st);
  return { policy: ap.policy, rules: ap.rules };
}
function decideFromDashboard(st, m) {
  const p = approvals(st).pending.get(String(m.approval_id ?? ""));
  if (!p) throw new Error("conflict: this call was already decided, aborted or timed out");
  const decision = m.decision;
  if (decision !== "allow" && decision !== "deny") throw new Error("decision must be allow or deny");
  let command;
  if (m.input !== void 0 && m.input !== null) {
    const c = m.input?.command;
    if (decision !== "allow" || !isShell(p.toolName) || typeof c !== "string" || !c.trim()) {
      throw new Error("input: only an allowed bash call takes an edited {command}");
    }
    command = c;
  }
  const reason = typeof m.reason === "string" && m.reason.trim() ? m.reason.slice(0, 2e3) : void 0;
  if (!p.decide({ decision, by: "dashboard", reason, command, remember: m.remember === true })) {
    throw new Error("conflict: this call was already decided, aborted or timed out");
  }
}
function denyAllPending(st, reason) {
  for (const p of [...st.approval?.pending.values() ?? []]) p.decide({ decision: "deny", by: "abort", reason });
}
function installGate(st, pi) {
  const api = pi.api;
  try {
    api.on("tool_call", (event, ctx) => gate(st, pi, event, ctx));
    api.on("tool_result", (event) => editedNote(st, event));
  } catch (err) {
    shimLog(st, "error", "could not install the approval gate", errorFields("gate.install", err));
  }
}
function gate(st, pi, event, ctx) {
  const ap = approvals(st);
  if (ap.policy === "off") return void 0;
  try {
    if (ctx) pi.ctx = ctx;
    const toolName = String(event?.toolName ?? "");
    const input = event?.input;
    const cwd = call(() => ctx?.cwd) ?? process.cwd();
    const why = askReason(ap.policy, toolName, input, (p) => insideFolder(p, cwd));
    if (!why) return void 0;
    const rule = allowingRule(ap.rules, toolName, input);
    if (rule) {
      const id = `r${++ap.seq}`;
      finished(st, pi, { id, toolCallId: String(event?.toolCallId ?? ""), toolName, input }, { decision: "allow", by: "rule", reason: ruleText(rule) }, 0);
      return void 0;
    }
    return ask(st, pi, event, ctx, why);
  } catch (err) {
    shimLog(st, "error", "approval gate failed; the call is blocked", errorFields("gate", err));
    return { block: true, reason: GATE_FAILED };
  }
}
function ruleText(r) {
  return r.prefix === void 0 ? `rule: ${r.tool}` : `rule: ${r.tool} ${r.prefix}`;
}
function insideFolder(p, cwd) {
  const target = resolvePiPath(p, cwd, os3.homedir());
  if (!target) return false;
  return isUnder(realish(target), realish(cwd));
}
function realish(p) {
  let head = p;
  const tail = [];
  for (let i = 0; i < 256; i++) {
    try {
      const real = fs3.realpathSync.native(head);
      return tail.length ? path3.join(real, ...tail.reverse()) : real;
    } catch {
      const parent = path3.dirname(head);
      if (parent === head) break;
      tail.push(path3.basename(head));
      head = parent;
    }
  }
  return p;
}
function ask(st, pi, event, ctx, why) {
  const ap = approvals(st);
  const id = `a${++ap.seq}-${randomBytes2(4).toString("hex")}`;
  const toolName = String(event?.toolName ?? "");
  const signal = call(() => ctx?.signal);
  const hasUI = call(() => ctx?.hasUI) === true;
  return new Promise((resolve2) => {
    const dialog = new AbortController();
    let timer;
    const onAbort = () => {
      p.decide({ decision: "deny", by: "abort", reason: "aborted in pi" });
    };
    const p = {
      id,
      toolCallId: String(event?.toolCallId ?? ""),
      parentToolCallId: typeof event?.parentToolCallId === "string" ? event.parentToolCallId : void 0,
      toolName,
      input: event?.input,
      policy: ap.policy,
      why,
      queuedAt: Date.now(),
      decide: (d) => {
        if (ap.pending.get(id) !== p) return false;
        ap.pending.delete(id);
        if (timer) clearTimeout(timer);
        try {
          signal?.removeEventListener?.("abort", onAbort);
          dialog.abort();
        } catch {
        }
        try {
          if (d.decision === "allow" && d.command !== void 0 && event?.input && typeof event.input === "object") {
            event.input.command = d.command;
            if (ap.edited.size >= 100) ap.edited.clear();
            ap.edited.set(p.toolCallId, d.command);
          }
          if (d.decision === "allow" && d.remember) {
            if (addRule(ap.rules, rememberRule(toolName, event?.input))) sendPolicy(st);
          }
          finished(st, pi, p, d, Date.now() - p.queuedAt);
        } catch (err) {
          shimLog(st, "error", "approval bookkeeping failed", errorFields("gate.decide", err));
        }
        resolve2(d.decision === "allow" ? void 0 : { block: true, reason: denyText(d.by, d.reason) });
        return true;
      }
    };
    ap.pending.set(id, p);
    writeLine(st, requestLine(p));
    if (signal?.aborted) return void onAbort();
    try {
      signal?.addEventListener?.("abort", onAbort, { once: true });
    } catch {
    }
    timer = setTimeout(() => p.decide({ decision: "deny", by: "timeout", reason: timeoutReason(ap.timeoutMs) }), ap.timeoutMs);
    if (hasUI) {
      terminalDialog(ctx, p, dialog.signal).catch(
        (err) => shimLog(st, "warn", "pi's approval dialog failed; the dashboard or the timeout decides", errorFields("gate.dialog", err))
      );
    } else if (st.watching !== true) {
      p.decide({ decision: "deny", by: "no_ui", reason: NO_UI_REASON });
    }
  });
}
async function terminalDialog(ctx, p, signal) {
  const ui = ctx.ui;
  const opts = { signal };
  const cmd = commandOf(p.toolName, p.input);
  const remembered = rememberRule(p.toolName, p.input);
  const ALLOW = "Allow";
  const REMEMBER = `Allow and don't ask again (${remembered.prefix ?? remembered.tool})`;
  const DENY = "Deny";
  const DENY_WHY = "Deny with a reason\u2026";
  const EDIT = "Edit and allow\u2026";
  const choices = cmd !== void 0 ? [ALLOW, REMEMBER, DENY, DENY_WHY, EDIT] : [ALLOW, REMEMBER, DENY, DENY_WHY];
  const title = `Hyper-Pi: allow ${p.toolName}? ${summarize(p.toolName, p.input)}`;
  for (let round = 0; round < 10 && !signal.aborted; round++) {
    const choice = await ui.select(title, choices, opts);
    if (signal.aborted) return;
    if (choice === void 0) {
      call(() => ctx.abort());
      p.decide({ decision: "deny", by: "abort", reason: "aborted in the terminal" });
      return;
    }
    if (choice === ALLOW) return void p.decide({ decision: "allow", by: "terminal" });
    if (choice === REMEMBER) return void p.decide({ decision: "allow", by: "terminal", remember: true });
    if (choice === DENY) return void p.decide({ decision: "deny", by: "terminal" });
    if (choice === DENY_WHY) {
      const reason = await ui.input("Reason for the model", "why not, or what to do instead", opts);
      if (signal.aborted) return;
      return void p.decide({ decision: "deny", by: "terminal", reason: typeof reason === "string" && reason.trim() ? reason : void 0 });
    }
    if (choice === EDIT && cmd !== void 0) {
      const edited = await ui.input(`Command to run instead of: ${cmd.slice(0, 200)}`, cmd.slice(0, 200), opts);
      if (signal.aborted) return;
      if (typeof edited === "string" && edited.trim()) return void p.decide({ decision: "allow", by: "terminal", command: edited });
    }
  }
}
function finished(st, pi, c, d, latencyMs) {
  const summary = summarize(c.toolName, d.command !== void 0 ? { ...c.input, command: d.command } : c.input);
  const decidedAt = Date.now();
  const end = {
    t: "approval_end",
    id: c.id,
    tool_call_id: c.toolCallId,
    tool_name: c.toolName,
    summary,
    decision: d.decision,
    by: d.by,
    reason: d.reason,
    input: d.command !== void 0 ? { command: d.command } : void 0,
    latency_ms: latencyMs,
    decided_at: decidedAt / 1e3
  };
  writeLine(st, end, d.by === "rule" && st.watching !== true);
  audit(st, pi, c, end, decidedAt);
}
function audit(st, pi, c, end, decidedAt) {
  try {
    const ap = approvals(st);
    const sm = pi.ctx?.sessionManager;
    let digest = "";
    try {
      digest = createHash("sha256").update(JSON.stringify(c.input) ?? "").digest("hex");
    } catch {
    }
    const rec = {
      ts: new Date(decidedAt).toISOString(),
      node_id: st.nodeId,
      session_id: call(() => sm?.getSessionId()) ?? null,
      session_file: call(() => sm?.getSessionFile()) ?? null,
      id: c.id,
      tool_call_id: c.toolCallId,
      tool_name: c.toolName,
      args_sha256: digest,
      summary: end.summary,
      decision: end.decision,
      by: end.by,
      reason: end.reason,
      latency_ms: end.latency_ms
    };
    const dir = process.env.PI_SOCKET_LOG_DIR || path3.join(os3.homedir(), ".pi", "logs");
    const line = JSON.stringify(rec) + "\n";
    const append = () => fs3.appendFile(path3.join(dir, "approvals.jsonl"), line, () => {
    });
    if (ap.logDirReady) append();
    else
      fs3.mkdir(dir, { recursive: true }, () => {
        ap.logDirReady = true;
        append();
      });
  } catch {
  }
}
function editedNote(st, event) {
  try {
    const ap = st.approval;
    if (!ap || ap.edited.size === 0) return void 0;
    const id = String(event?.toolCallId ?? "");
    const cmd = ap.edited.get(id);
    if (cmd === void 0) return void 0;
    ap.edited.delete(id);
    const note = { type: "text", text: `[The user edited the command before it ran. It ran: ${cmd}]
` };
    return { content: [note, ...Array.isArray(event?.content) ? event.content : []] };
  } catch {
    return void 0;
  }
}

// src/requests.ts
function requestHandler(st, pi) {
  const api = pi.api;
  const reply = (id, ok, dataOrError) => {
    if (id === void 0) return;
    writeLine(st, ok ? { t: "res", id, ok: true, data: dataOrError ?? null } : { t: "res", id, ok: false, error: String(dataOrError) });
  };
  return (m) => {
    const id = m.id;
    try {
      if (m.op === "approval_decision") {
        decideFromDashboard(st, m);
        return reply(id, true);
      }
      if (m.op === "set_approval_policy") return reply(id, true, setPolicy(st, m.policy, m.rules));
      const ctx = pi.ctx;
      if (!pi.live || !ctx) throw new Error("pi session is not ready");
      switch (m.op) {
        case "send": {
          const text = typeof m.text === "string" ? m.text : "";
          const images = Array.isArray(m.images) ? m.images : [];
          const content = images.length ? [{ type: "text", text }, ...images] : text;
          const promptId = typeof m.prompt_id === "string" && m.prompt_id ? m.prompt_id : void 0;
          if (promptId && claimPrompt(st, promptId)) return reply(id, true, { duplicate: true });
          setTimeout(boundary(st, "send", () => {
            try {
              const idle = pi.ctx.isIdle();
              const deliverAs = idle ? void 0 : m.deliverAs === "steer" || m.deliverAs === "followUp" ? m.deliverAs : "followUp";
              const expand = idle && text.startsWith("/") && canExpand(pi.version || cliVersion());
              api.sendUserMessage(content, deliverAs ? { deliverAs } : expand ? { expandPromptTemplates: true } : void 0);
              reply(id, true, { duplicate: false });
            } catch (err) {
              if (promptId) releasePrompt(st, promptId);
              reply(id, false, err?.message ?? err);
            }
          }), 0);
          return;
        }
        case "abort":
          ctx.abort();
          return reply(id, true);
        case "history":
          return reply(id, true, { messages: branchMessages(ctx.sessionManager.getBranch()) });
        case "state":
          return reply(id, true, {
            session_name: call(() => api.getSessionName()) ?? null,
            model: modelName(call(() => ctx.model)),
            context_usage: pi.contextUsage() ?? null,
            is_streaming: !ctx.isIdle()
          });
        case "tools":
          return reply(id, true, { tools: pi.listTools() });
        case "commands":
          return reply(id, true, { commands: pi.listCommands() });
        case "set_session_name":
          api.setSessionName(String(m.name ?? ""));
          return reply(id, true);
        case "notify":
          if (ctx.hasUI) ctx.ui.notify(String(m.message ?? ""), m.level === "warning" || m.level === "error" ? m.level : "info");
          return reply(id, true);
        case "models":
          return reply(id, true, modelsState(pi));
        case "set_model": {
          const model = call(() => ctx.modelRegistry.find(String(m.provider ?? ""), String(m.model_id ?? "")));
          if (!model) return reply(id, false, `not found: no model ${String(m.provider)}/${String(m.model_id)} in pi's registry`);
          Promise.resolve(api.setModel(model)).then(
            (ok) => ok === false ? reply(id, false, `pi refused ${model.provider}/${model.id}: no API key for its provider`) : reply(id, true, modelsState(pi)),
            (err) => reply(id, false, err?.message ?? err)
          );
          return;
        }
        case "set_thinking_level":
          api.setThinkingLevel(String(m.thinking_level ?? "off"));
          return reply(id, true, modelsState(pi));
        case "compact": {
          if (typeof ctx.compact !== "function") return reply(id, false, "unsupported: this pi has no ctx.compact()");
          const instructions = typeof m.instructions === "string" && m.instructions.trim() ? m.instructions : void 0;
          ctx.compact({
            ...instructions ? { customInstructions: instructions } : {},
            onComplete: () => reply(id, true),
            onError: (err) => reply(id, false, `compaction failed: ${err?.message ?? err}`)
          });
          return;
        }
        case "quit":
          if (typeof ctx.shutdown !== "function") return reply(id, false, "unsupported: this pi has no ctx.shutdown()");
          reply(id, true);
          setTimeout(boundary(st, "quit", () => quitPi(pi.ctx)), 50);
          return;
        case "session_command": {
          const name = m.name === "new" || m.name === "reload" ? m.name : null;
          const version = pi.version || cliVersion();
          if (!name) return reply(id, false, `unknown session command ${String(m.name)}`);
          if (!canExpand(version)) return reply(id, false, `unsupported: pi ${version ?? "of this version"} has no API for /${name} from outside its terminal (needs pi >= 1.5)`);
          if (!ctx.isIdle()) return reply(id, false, `busy: pi is working; stop the run before /${name}`);
          if (st.sessionCommand) return reply(id, false, `busy: a /${st.sessionCommand.name} is already running`);
          st.sessionCommand = { name, done: (error) => error ? reply(id, false, error) : reply(id, true) };
          setTimeout(boundary(st, "session_command", () => {
            try {
              api.sendUserMessage(`/${SESSION_COMMAND} ${name}`, { expandPromptTemplates: true });
            } catch (err) {
              st.sessionCommand = void 0;
              reply(id, false, err?.message ?? err);
            }
          }), 0);
          return;
        }
        default:
          return reply(id, false, `unknown op ${String(m.op)}`);
      }
    } catch (err) {
      reply(id, false, err?.message ?? err);
    }
  };
}
function modelsState(pi) {
  const ctx = pi.ctx;
  const current = call(() => ctx.model);
  const available = call(() => ctx.modelRegistry.getAvailable()) ?? [];
  return {
    models: available.map(modelInfo),
    current: current ? { provider: String(current.provider), id: String(current.id) } : null,
    thinking_level: call(() => pi.api.getThinkingLevel()) ?? null,
    thinking_levels: thinkingLevels(current, pi.version || cliVersion())
  };
}
function sessionCommandHandler(st) {
  return async (args, ctx) => {
    const pending = st.sessionCommand;
    st.sessionCommand = void 0;
    const name = args.trim();
    if (!pending || pending.name !== name) return;
    try {
      if (name === "new") {
        const r = await ctx.newSession();
        pending.done(r?.cancelled ? "cancelled: an extension cancelled the new session" : void 0);
      } else {
        pending.done();
        await ctx.reload();
      }
    } catch (err) {
      pending.done(err?.message ?? String(err));
    }
  };
}

// src/deltas.ts
var DeltaGate = class {
  /** Since the watch began, no message has started or ended: a delta now belongs to one that began unwatched. */
  missed;
  watching;
  constructor(watching) {
    this.watching = watching;
    this.missed = watching;
  }
  /** Feed message_start, message_end and agent_end (the shim's other events are ignored). */
  observe(e) {
    if (e.type === "message_start" || e.type === "message_end" || e.type === "agent_end") this.missed = false;
  }
  /** The bridge gained its first client (true) or lost its last one (false). */
  setWatching(on) {
    if (on === this.watching) return;
    this.watching = on;
    if (on) this.missed = true;
  }
  /** What to do with one `message_update`. */
  delta() {
    if (!this.watching) return "drop";
    if (this.missed) {
      this.missed = false;
      return "snapshot";
    }
    return "plain";
  }
};

// src/events.ts
var FORWARDED = [
  "agent_start",
  "agent_end",
  "agent_settled",
  "agent_before_settle",
  "turn_start",
  "turn_end",
  "message_start",
  "message_update",
  "message_end",
  "tool_execution_start",
  "tool_execution_update",
  "tool_execution_end",
  "queue_update",
  "session_info_changed",
  "model_select",
  "thinking_level_select",
  "auto_retry_start",
  "auto_retry_end",
  "session_before_compact",
  "session_compact",
  "session_compact_failed",
  "compaction_start",
  "compaction_end",
  "ui_prompt_start",
  "ui_prompt_end"
];
var CONTEXT_USAGE = "context_usage";
var SUBSCRIBED_WHILE_WATCHED = ["message_start", "turn_start", "turn_end", "agent_before_settle", "queue_update"];
var TOOL_PROGRESS_MS = 1e4;
var WATCH_ONLY = /* @__PURE__ */ new Set([...SUBSCRIBED_WHILE_WATCHED, "message_update", CONTEXT_USAGE]);
var ROSTER_EVENTS = /* @__PURE__ */ new Set(["agent_start", "agent_end", "agent_settled", "session_info_changed", "model_select"]);

// src/turns.ts
function outcomeOf(message) {
  const r = message?.stopReason;
  return r === "aborted" ? "aborted" : r === "error" ? "error" : "completed";
}
var TurnEnds = class {
  open = false;
  turnIndex = void 0;
  message = void 0;
  toolResults = [];
  /**
   * Feed each pi event before it is forwarded; returns the previous turn's `turn_end` when it is due
   * (forward it first), else undefined.
   */
  before(e) {
    const type = e.type;
    let due;
    if (type === "turn_start" || type === "agent_end") due = this.close();
    if (type === "turn_start") {
      this.open = true;
      this.turnIndex = e.turnIndex;
      this.message = void 0;
      this.toolResults = [];
    } else if (type === "message_end" && this.open) {
      const m = e.message;
      if (m && m.role === "assistant") {
        this.message = m;
        this.toolResults = [];
      } else if (m && m.role === "toolResult") {
        this.toolResults.push(m);
      }
    }
    return due;
  }
  /**
   * Forget the open turn: the shim stops following `turn_start` while nobody watches (index.ts), so a turn
   * still open then would later close with messages of several turns. A watcher arriving mid-turn gets
   * turn_end from the next turn on.
   */
  reset() {
    this.open = false;
    this.message = void 0;
    this.toolResults = [];
  }
  close() {
    if (!this.open) return void 0;
    this.open = false;
    const message = this.message;
    const toolResults = this.toolResults;
    this.message = void 0;
    this.toolResults = [];
    if (!message) return void 0;
    const out = { type: "turn_end" };
    if (this.turnIndex !== void 0) out.turnIndex = this.turnIndex;
    out.message = message;
    out.toolResults = toolResults;
    out.outcome = outcomeOf(message);
    return out;
  }
};

// src/subscriptions.ts
function subscribe(st, pi) {
  const api = pi.api;
  const on = (name, fn) => {
    try {
      const off = api.on(name, boundary(st, `on.${name}`, (e, c) => {
        if (c) pi.ctx = c;
        if (pi.live) fn(typeof e?.type === "string" ? e : { ...e, type: name });
        return void 0;
      }));
      return { off: typeof off === "function" ? off : void 0 };
    } catch (err) {
      shimLog(st, "warn", "pi.on refused an event name", { event: name, ...errorFields(`on.${name}`, err), needsHardening: false });
      return void 0;
    }
  };
  on("session_start", (e) => {
    if (!pi.version) pi.version = piVersion(pi.ctx);
    if (st.link) writeLine(st, { t: "session", reason: e?.reason ?? null, ...pi.sessionFacts() });
    else ensureBridge(st, launchSpec(call(() => pi.ctx?.cwd)));
  });
  on("session_shutdown", (e) => {
    pi.live = false;
    if (e?.reason === "quit" || e?.reason === void 0) {
      denyAllPending(st, "pi is quitting");
      stopBridge(st, "quit");
    }
  });
  const major = Number((cliVersion() ?? "").split(".")[0]);
  const turns = major >= 1 ? new TurnEnds() : void 0;
  const gate2 = new DeltaGate(st.watching === true);
  const progress = /* @__PURE__ */ new Map();
  const send = (e) => {
    const watching = st.watching === true;
    const type = String(e.type);
    if (!watching && WATCH_ONLY.has(type)) return;
    if (type === "tool_execution_end") progress.delete(String(e.toolCallId));
    if (!watching && type === "tool_execution_update") {
      const id = String(e.toolCallId);
      const now = Date.now();
      if (now - (progress.get(id) ?? 0) < TOOL_PROGRESS_MS) return;
      if (progress.size > 100) progress.clear();
      progress.set(id, now);
      writeLine(st, { t: "event", e: { type, toolCallId: e.toolCallId, toolName: e.toolName } }, true);
      return;
    }
    const slim = slimEvent(e);
    if (slim) writeLine(st, { t: "event", e: slim }, !watching && !ROSTER_EVENTS.has(type));
    if (type === "turn_end") {
      const u = pi.contextUsage();
      if (u) writeLine(st, { t: "event", e: { type: CONTEXT_USAGE, ...u } });
    }
  };
  const forward = (ev) => {
    gate2.observe(ev);
    if (turns) {
      const due = turns.before(ev);
      if (due) send(due);
    }
    send(ev);
  };
  for (const name of FORWARDED) {
    if (name === "message_update" || SUBSCRIBED_WHILE_WATCHED.includes(name)) continue;
    on(name, forward);
  }
  const watchOnly = SUBSCRIBED_WHILE_WATCHED.filter((n) => !(n === "turn_end" && turns));
  let subscriptions;
  const onDelta = (e) => {
    const action = gate2.delta();
    if (action === "drop") return;
    const slim = slimEvent(e);
    if (slim && action === "snapshot" && e?.message?.role === "assistant") slim.message = e.message;
    if (slim) writeLine(st, { t: "event", e: slim });
  };
  const setWatching = (watching) => {
    st.watching = watching;
    gate2.setWatching(watching);
    if (watching) {
      if (!subscriptions) subscriptions = [on("message_update", onDelta), ...watchOnly.map((n) => on(n, forward))];
      flushLines(st);
      return;
    }
    turns?.reset();
    if (subscriptions?.every((s) => !s || s.off)) {
      for (const s of subscriptions) {
        try {
          s?.off?.();
        } catch (err) {
          shimLog(st, "warn", "could not unsubscribe a watch-only event", { ...errorFields("watch", err), needsHardening: false });
        }
      }
      subscriptions = void 0;
    }
  };
  if (st.watching) setWatching(true);
  return setWatching;
}

// src/index.ts
function piSocket(pi) {
  const st = shared();
  const instance = new PiInstance(pi);
  const setWatching = subscribe(st, instance);
  const handleRequest = requestHandler(st, instance);
  installGate(st, instance);
  call(() => pi.registerCommand(SESSION_COMMAND, { description: "Hyper-Pi: a dashboard's /new or /reload", handler: sessionCommandHandler(st) }));
  const dispatch = (line) => {
    if (line.t === "req") return handleRequest(line);
    if (line.t === "watch") return setWatching(line.on === true);
    if (line.t === "ready") {
      onReady(st, line.port, line.url);
      setWatching(line.watch === true ? line.watching === true : true);
      if (!st.notified && typeof line.url === "string" && call(() => instance.ctx?.hasUI)) {
        st.notified = true;
        call(() => instance.ctx.ui.notify(`Hyper-Pi: this agent is at ${line.url}`, "info"));
      }
    }
  };
  st.dispatch = boundary(st, "dispatch", dispatch);
  st.hello = boundary(st, "hello", () => ({ ...instance.hello(st.nodeId), approval: approvalSnapshot(st) }));
}
export {
  piSocket as default,
  launchSpec
};
