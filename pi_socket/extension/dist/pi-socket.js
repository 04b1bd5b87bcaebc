// GENERATED from src/*.ts by `python -m pi_socket build-shim` (sources sha256:98122cd19527e8febde777b619318472eb9c0a893593c3e3af8aa2747d90248b).
// Edit src/, then rebuild: pi loads this one file (one module for pi's loader instead of one per source).

// src/child.ts
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
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
  const stdin = st.child?.stdin;
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
function writeChunk(st, child, chunk) {
  if (st.child !== child) return;
  const stdin = child.stdin;
  if (!stdin || !stdin.writable || stdin.destroyed) return;
  try {
    if (!stdin.write(chunk) && st.blockedSince === void 0) st.blockedSince = Date.now();
    const stuckFor = st.blockedSince === void 0 ? 0 : Date.now() - st.blockedSince;
    if (stdin.writableLength > STDIN_STUCK_BYTES && stuckFor > STDIN_STUCK_MS) {
      st.blockedSince = void 0;
      shimLog(st, "error", "bridge stopped reading its stdin; restarting it", { buffered: stdin.writableLength });
      child.kill("SIGKILL");
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
  if (st.child || st.stopped || st.restartTimer) return;
  startChild(st);
}
function startChild(st) {
  const launch = st.launch;
  if (!launch || st.stopped) return;
  const env = { ...launch.env, PI_SOCKET_NODE_ID: st.nodeId, PI_SOCKET_NODE_SECRET: st.nodeSecret };
  if (st.port) env.PI_SOCKET_PREFERRED_PORT = String(st.port);
  let child;
  try {
    child = spawn(launch.python, launch.args, { stdio: ["pipe", "pipe", "pipe"], env, cwd: launch.cwd, windowsHide: true });
  } catch (err) {
    shimLog(st, "error", "could not start the bridge", { ...errorFields("bridge.spawn", err), python: launch.python });
    scheduleRestart(st);
    return;
  }
  st.child = child;
  st.out = new LineQueue(
    (chunk) => writeChunk(st, child, chunk),
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
  let buf = "";
  const onData = boundary(st, "bridge.stdout", (chunk) => {
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
  child.stdout?.setEncoding("utf8");
  child.stdout?.on("data", onData);
  child.stdout?.on("error", () => {
  });
  child.stderr?.on("data", () => {
  });
  child.stderr?.on("error", () => {
  });
  child.stdin?.on("error", () => {
  });
  child.stdin?.on("drain", () => {
    st.blockedSince = void 0;
  });
  st.blockedSince = void 0;
  child.on("error", boundary(st, "bridge.error", (err) => {
    shimLog(st, "error", "bridge process error", { error: String(err?.message ?? err), python: launch.python });
    onExit(st, child);
  }));
  child.on("exit", boundary(st, "bridge.exit", (code, signal) => {
    if (!st.stopped) shimLog(st, "warn", "bridge exited; restarting", { code, signal, restarts: st.restarts });
    onExit(st, child);
  }));
  const hello = st.hello?.();
  if (hello) writeLine(st, hello);
}
function onExit(st, child) {
  if (st.child !== child) return;
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
      startChild(st);
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
  const child = st.child;
  if (!child) return;
  writeLine(st, { t: "bye", reason });
  flushLines(st);
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
  listCommands() {
    return (call(() => this.api.getCommands()) ?? []).map((c) => ({
      name: c?.name,
      description: c?.description ?? "",
      source: c?.source ?? "extension"
    }));
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
              api.sendUserMessage(content, deliverAs ? { deliverAs } : void 0);
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
        default:
          return reply(id, false, `unknown op ${String(m.op)}`);
      }
    } catch (err) {
      reply(id, false, err?.message ?? err);
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
var SUBSCRIBED_WHILE_WATCHED = [
  "message_start",
  "turn_start",
  "turn_end",
  "tool_execution_start",
  "tool_execution_update",
  "tool_execution_end",
  "agent_before_settle",
  "queue_update"
];
var WATCH_ONLY = /* @__PURE__ */ new Set([...SUBSCRIBED_WHILE_WATCHED, "message_update", CONTEXT_USAGE]);
var ROSTER_EVENTS = /* @__PURE__ */ new Set(["agent_start", "agent_end", "agent_settled", "session_info_changed", "model_select"]);

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
    if (st.child) writeLine(st, { t: "session", reason: e?.reason ?? null, ...pi.sessionFacts() });
    else ensureBridge(st, launchSpec(call(() => pi.ctx?.cwd)));
  });
  on("session_shutdown", (e) => {
    pi.live = false;
    if (e?.reason === "quit" || e?.reason === void 0) stopBridge(st, "quit");
  });
  const major = Number((cliVersion() ?? "").split(".")[0]);
  const turns = major >= 1 ? new TurnEnds() : void 0;
  const gate = new DeltaGate(st.watching === true);
  const send = (e) => {
    const watching = st.watching === true;
    const type = String(e.type);
    if (!watching && WATCH_ONLY.has(type)) return;
    const slim = slimEvent(e);
    if (slim) writeLine(st, { t: "event", e: slim }, !watching && !ROSTER_EVENTS.has(type));
    if (type === "turn_end") {
      const u = pi.contextUsage();
      if (u) writeLine(st, { t: "event", e: { type: CONTEXT_USAGE, ...u } });
    }
  };
  const forward = (ev) => {
    gate.observe(ev);
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
    const action = gate.delta();
    if (action === "drop") return;
    const slim = slimEvent(e);
    if (slim && action === "snapshot" && e?.message?.role === "assistant") slim.message = e.message;
    if (slim) writeLine(st, { t: "event", e: slim });
  };
  const setWatching = (watching) => {
    st.watching = watching;
    gate.setWatching(watching);
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
  st.hello = boundary(st, "hello", () => instance.hello(st.nodeId));
}
export {
  piSocket as default,
  launchSpec
};
