import { describe, expect, it } from "vitest";
import { agentReducer, initialAgentView, resultsByCallId, type AgentView } from "./agentReducer";

const user = (text: string) => ({ role: "user", content: [{ type: "text", text }] });
const asst = (text: string, extra = {}) => ({ role: "assistant", content: [{ type: "text", text }], stopReason: "stop", ...extra });
const feed = (s: AgentView, ...frames: any[]) => agentReducer(s, { kind: "frames", frames });
const init = (extra: any = {}) =>
  feed(initialAgentView, { type: "init_state", protocol_version: "1", node: { id: "n", machine: "m", cwd: "/c", port: 1 }, messages: [], ...extra });

describe("agent reducer: init_state", () => {
  it("takes history, paging position and inspector data", () => {
    const s = init({ messages: [user("a"), asst("b")], truncated: true, total_messages: 102, cursor: 100, tools: [{ name: "read" }], model: "fake/m" });
    expect(s.status).toBe("open");
    expect(s.messages).toHaveLength(2);
    expect(s.cursor).toBe(100);
    expect(s.total).toBe(102);
    expect(s.tools[0].name).toBe("read");
    expect(s.versionWarning).toBeNull();
  });

  it("keeps pi's session file, for a resume after pi exits", () => {
    expect(init({ session_file: "/h/.pi/agent/sessions/x.jsonl" }).sessionFile).toBe("/h/.pi/agent/sessions/x.jsonl");
    expect(init().sessionFile).toBeNull();
  });

  it("shows the partial message when joining mid-stream", () => {
    const s = init({ is_streaming: true, partial: asst("half an ans") });
    expect(s.running).toBe(true);
    expect(s.streaming?.content).toEqual([{ type: "text", text: "half an ans" }]);
    // …and the stream continues from there
    const t = feed(s, { type: "message_update", assistantMessageEvent: { type: "text_delta", contentIndex: 0, delta: "wer" } });
    expect((t.streaming!.content as any)[0].text).toBe("half an answer");
  });

  it("warns about another major protocol version, not a newer minor", () => {
    expect(init({ protocol_version: "2.0" }).versionWarning).toMatch(/speaks protocol 2\.0/);
    expect(init({ protocol_version: "1.4" }).versionWarning).toBeNull();
  });
});

describe("agent reducer: pi event stream", () => {
  it("builds the streamed reply from trimmed deltas, thinking and tool calls included", () => {
    let s = init();
    s = feed(
      s,
      { type: "agent_start" },
      { type: "message_start", message: user("hi") },
      { type: "message_end", message: user("hi") },
      { type: "message_start", message: { role: "assistant", content: [] } },
      { type: "message_update", assistantMessageEvent: { type: "thinking_start", contentIndex: 0 } },
      { type: "message_update", assistantMessageEvent: { type: "thinking_delta", contentIndex: 0, delta: "hmm" } },
      { type: "message_update", assistantMessageEvent: { type: "text_start", contentIndex: 1 } },
      { type: "message_update", assistantMessageEvent: { type: "text_delta", contentIndex: 1, delta: "Hel" } },
      { type: "message_update", assistantMessageEvent: { type: "text_delta", contentIndex: 1, delta: "lo" } },
      { type: "message_update", assistantMessageEvent: { type: "toolcall_start", contentIndex: 2 } },
      { type: "message_update", assistantMessageEvent: { type: "toolcall_delta", contentIndex: 2, delta: '{"com' } },
    );
    expect(s.running).toBe(true);
    expect(s.messages).toHaveLength(1);
    expect(s.streaming!.content).toEqual([
      { type: "thinking", thinking: "hmm" },
      { type: "text", text: "Hello" },
      { type: "toolCall", id: "", name: "", arguments: {}, partialJson: '{"com' },
    ]);
    const call = { type: "toolCall", id: "c1", name: "bash", arguments: { command: "ls" } };
    s = feed(
      s,
      { type: "message_update", assistantMessageEvent: { type: "toolcall_end", contentIndex: 2, toolCall: call } },
      { type: "message_end", message: { role: "assistant", content: [{ type: "text", text: "Hello" }, call], stopReason: "toolUse" } },
      { type: "tool_execution_start", toolCallId: "c1", toolName: "bash", args: { command: "ls" } },
      { type: "tool_execution_update", toolCallId: "c1", toolName: "bash", partialResult: { content: [{ type: "text", text: "a\n" }] } },
    );
    expect(s.streaming).toBeNull();
    expect(s.liveTools.c1).toMatchObject({ toolName: "bash", done: false });
    expect((s.liveTools.c1.result!.content as any)[0].text).toBe("a\n");
    const result = { role: "toolResult", toolCallId: "c1", toolName: "bash", content: [{ type: "text", text: "a\nb\n" }], isError: false };
    s = feed(
      s,
      { type: "tool_execution_end", toolCallId: "c1", toolName: "bash", result: { content: result.content }, isError: false },
      { type: "message_start", message: result },
      { type: "message_end", message: result },
      { type: "message_start", message: { role: "assistant", content: [] } },
      { type: "message_end", message: asst("done", { usage: { cost: { total: 0.5 } } }) },
      { type: "agent_end", messages: [] },
    );
    expect(s.running).toBe(false);
    expect(s.messages.map((m) => m.role)).toEqual(["user", "assistant", "toolResult", "assistant"]);
    expect(resultsByCallId(s.messages).get("c1")?.toolName).toBe("bash");
    expect(s.cost).toBe(0.5);
    expect(s.tokens).toMatchObject({ input: 0, output: 0 });
    expect(s.finishedRuns).toBe(1);
    expect(s.lastFinish).toEqual({ kind: "done", text: "done" });
    // agent_settled after agent_end is the same run, not a second notification
    expect(feed(s, { type: "agent_settled" }).finishedRuns).toBe(1);
  });

  it("reports a failed run as an error", () => {
    const s = feed(init(), { type: "agent_start" }, { type: "message_end", message: asst("", { stopReason: "error", errorMessage: "429" }) }, { type: "agent_end" });
    expect(s.lastFinish).toEqual({ kind: "error", text: "429" });
  });

  it("shows user messages typed in pi's own terminal", () => {
    const s = feed(init(), { type: "message_start", message: user("from tui") }, { type: "message_end", message: user("from tui") });
    expect(s.messages).toEqual([user("from tui")]);
  });
});

describe("agent reducer: prompts", () => {
  const prompt = (id: string, text: string) => ({ kind: "send" as const, prompt: { id, text, attachments: [], state: "sending" as const } });

  it("keeps a prompt pending until acked, and until pi echoes it", () => {
    let s = agentReducer(init(), prompt("p1", "do it"));
    expect(s.pending[0].state).toBe("sending");
    s = feed(s, { type: "ack", id: "p1" });
    expect(s.pending[0].state).toBe("acked");
    s = feed(s, { type: "message_end", message: user("do it") });
    expect(s.pending).toEqual([]);
    expect(s.messages).toHaveLength(1);
  });

  it("a re-sent prompt (same id) is one pending row, never two", () => {
    let s = agentReducer(init(), prompt("p1", "x"));
    s = agentReducer(s, prompt("p1", "x"));
    expect(s.pending).toHaveLength(1);
  });

  it("unacked prompts survive a reconnect's init_state; delivered ones are dropped", () => {
    let s = agentReducer(init(), prompt("p1", "sent before drop"));
    s = agentReducer(s, prompt("p2", "never acked"));
    s = feed(s, { type: "ack", id: "p1" });
    s = agentReducer(s, { kind: "status", status: "lost" });
    s = feed(s, { type: "init_state", node: {}, messages: [user("sent before drop"), asst("ok")], total_messages: 2, cursor: 0 });
    expect(s.pending.map((p) => p.id)).toEqual(["p2"]);
  });

  it("pi's echo settles the prompt by its ack, not its text: an appended attachment does not strand it", () => {
    let s = agentReducer(init(), prompt("p1", "see the attachment"));
    s = feed(s, { type: "ack", id: "p1" });
    s = feed(s, { type: "message_end", message: user("see the attachment\n\n<file name=\"notes.txt\">\nattached text\n</file>") });
    expect(s.pending).toEqual([]);
    expect(s.messages).toHaveLength(1);
  });

  it("echoes settle acked prompts oldest first, whatever their text", () => {
    let s = agentReducer(init(), prompt("p1", "same"));
    s = agentReducer(s, prompt("p2", "same"));
    s = feed(s, { type: "ack", id: "p1" }, { type: "ack", id: "p2" });
    s = feed(s, { type: "message_end", message: user("something else entirely") });
    expect(s.pending.map((p) => p.id)).toEqual(["p2"]);
    s = feed(s, { type: "message_end", message: user("same") });
    expect(s.pending).toEqual([]);
  });

  it("an echo that arrives before the ack settles the prompt when the ack comes", () => {
    let s = agentReducer(init(), prompt("p1", "quick"));
    s = feed(s, { type: "message_end", message: user("quick") });
    expect(s.pending.map((p) => p.state)).toEqual(["sending"]);
    s = feed(s, { type: "ack", id: "p1" });
    expect(s.pending).toEqual([]);
    expect(s.earlyEchoes).toBe(0);
  });

  it("a message typed in pi's terminal settles none of ours when none is in flight", () => {
    let s = feed(init(), { type: "message_end", message: user("from tui") });
    expect(s.earlyEchoes).toBe(0);
    s = agentReducer(s, prompt("p1", "later"));
    s = feed(s, { type: "ack", id: "p1" });
    expect(s.pending.map((p) => p.state)).toEqual(["acked"]);
    s = feed(s, { type: "ack", id: "p1" }); // a repeated ack changes nothing
    expect(s.pending.map((p) => p.state)).toEqual(["acked"]);
  });

  it("a reconnect to a busy pi drops as many acked prompts as user messages joined its history", () => {
    let s = feed(init(), { type: "message_end", message: user("first") });
    s = agentReducer(s, prompt("p1", "queued one"));
    s = agentReducer(s, prompt("p2", "queued two"));
    s = feed(s, { type: "ack", id: "p1" }, { type: "ack", id: "p2" });
    s = agentReducer(s, { kind: "status", status: "lost" });
    const history = [user("first"), asst("ok"), user("queued one + attachment")];
    s = feed(s, { type: "init_state", node: {}, messages: history, total_messages: 3, cursor: 0, is_streaming: true });
    expect(s.pending.map((p) => p.id)).toEqual(["p2"]);
    s = feed(s, { type: "init_state", node: {}, messages: history, total_messages: 3, cursor: 0, is_streaming: false });
    expect(s.pending).toEqual([]);
  });

  it("an error for a prompt id drops that prompt and shows the message", () => {
    let s = agentReducer(init(), prompt("p1", "x"));
    s = feed(s, { type: "error", id: "p1", code: 1007, message: "too large" });
    expect(s.pending).toEqual([]);
    expect(s.errors[0].message).toBe("too large");
  });
});

describe("agent reducer: history paging", () => {
  const msgs = (from: number, n: number) => Array.from({ length: n }, (_, i) => user(`m${from + i}`));

  it("prepends a page that ends at the cursor, and moves the cursor", () => {
    let s = init({ messages: msgs(90, 10), truncated: true, total_messages: 100, cursor: 90 });
    s = agentReducer(s, { kind: "older_requested" });
    expect(s.loadingOlder).toBe(true);
    s = feed(s, { type: "history_page", messages: msgs(40, 50), cursor: 40, before: 90, has_more: true, total_messages: 100 });
    expect(s.cursor).toBe(40);
    expect(s.loadingOlder).toBe(false);
    expect(s.messages.map((m: any) => m.content[0].text)).toEqual(msgs(40, 60).map((m) => m.content[0].text));
  });

  it("ignores a repeated or stale page, so nothing is ever duplicated", () => {
    let s = init({ messages: msgs(90, 10), total_messages: 100, cursor: 90 });
    const page = { type: "history_page", messages: msgs(40, 50), cursor: 40, before: 90, has_more: true, total_messages: 100 };
    s = feed(s, page, page);
    expect(s.messages).toHaveLength(60);
    const texts = s.messages.map((m: any) => m.content[0].text);
    expect(new Set(texts).size).toBe(texts.length);
    // a page for some other position (e.g. from before a reconnect) is dropped too
    s = feed(s, { type: "history_page", messages: msgs(0, 50), cursor: 0, before: 50, has_more: false, total_messages: 100 });
    expect(s.cursor).toBe(40);
  });
});

describe("agent reducer: details from the bridge's protocol (specs/protocol.md §3.2)", () => {
  it("names a tool call from toolcall_start and shows the arguments parsed so far", () => {
    let s = feed(init(), { type: "message_start", message: { role: "assistant", content: [] } });
    s = feed(
      s,
      { type: "message_update", assistantMessageEvent: { type: "toolcall_start", contentIndex: 0, toolCall: { type: "toolCall", id: "t1", name: "bash" } } },
      { type: "message_update", assistantMessageEvent: { type: "toolcall_delta", contentIndex: 0, delta: '{"command": "ls -' } },
    );
    expect(s.streaming!.content).toEqual([{ type: "toolCall", id: "t1", name: "bash", arguments: { command: "ls -" }, partialJson: '{"command": "ls -' }]);
  });

  it("maps pi's camelCase context_usage and model_select", () => {
    const s = feed(init(), { type: "context_usage", tokens: 5000, contextWindow: 100000, percent: 5 }, { type: "model_select", model: { provider: "fake", id: "m2" } });
    expect(s.contextUsage).toEqual({ tokens: 5000, context_window: 100000, percent: 5 });
    expect(s.model).toBe("fake/m2");
  });

  it("a session switch's init_state replaces the whole conversation", () => {
    let s = init({ messages: [user("old session")], total_messages: 1 });
    s = feed(s, { type: "init_state", node: {}, messages: [], total_messages: 0, cursor: 0, session_name: "new" });
    expect(s.messages).toEqual([]);
    expect(s.initSeq).toBe(2);
    expect(s.sessionName).toBe("new");
  });

  it("session_info_changed renames the session", () => {
    expect(feed(init(), { type: "session_info_changed", name: "renamed" }).sessionName).toBe("renamed");
  });
});

describe("agent reducer: usage totals", () => {
  it("adds each finished assistant message's usage to the session totals", () => {
    let s = init({ tokens: { input: 100, output: 10, cache_read: 0, cache_write: 0, total: 110 }, cost: 0.01 });
    s = feed(s, { type: "message_end", message: asst("x", { usage: { input: 50, output: 5, cacheRead: 7, totalTokens: 62, cost: { total: 0.02 } } }) });
    expect(s.tokens).toEqual({ input: 150, output: 15, cache_read: 7, cache_write: 0, total: 172 });
    expect(s.cost).toBeCloseTo(0.03);
  });
});

describe("agent reducer: models, commands and the queue (#20)", () => {
  const list = {
    type: "models_list",
    models: [
      { provider: "fake", id: "fake-model", input: ["text"] },
      { provider: "fake", id: "fake-vision", input: ["text", "image"], reasoning: true },
    ],
    current: { provider: "fake", id: "fake-model" },
    thinking_level: "off",
    thinking_levels: ["off"],
  };
  it("keeps pi's models; model_select and thinking_level_select move the current ones", async () => {
    const { currentModel } = await import("./agentReducer");
    let s = feed(init(), list);
    expect(currentModel(s)?.id).toBe("fake-model");
    s = feed(s, { type: "model_select", model: "fake/fake-vision" }, { type: "thinking_level_select", level: "high" });
    expect(s.models?.current).toEqual({ provider: "fake", id: "fake-vision" });
    expect(s.models?.thinkingLevel).toBe("high");
    expect(s.model).toBe("fake/fake-vision");
  });
  it("a command's error ends it with a message; a lost link forgets it", () => {
    let s = agentReducer(init(), { kind: "command_sent", id: "c1", name: "new" });
    s = feed(s, { type: "error", id: "c1", code: 1014, message: "/new failed: unsupported" });
    expect(s.command).toBeNull();
    expect(s.errors.at(-1)?.message).toBe("/new failed: unsupported");
    s = agentReducer(s, { kind: "command_sent", id: "c2", name: "compact" });
    expect(agentReducer(s, { kind: "status", status: "lost" }).command).toBeNull();
  });
  it("an extension command is settled by its ack (pi echoes no user message)", () => {
    let s = agentReducer(init(), { kind: "send", prompt: { id: "p1", text: "/todo x", attachments: [], state: "sending", noEcho: true } });
    s = feed(s, { type: "ack", id: "p1" });
    expect(s.pending).toEqual([]);
  });
  it("held follow-ups are queued, not acked by a stray ack, and released as plain prompts", async () => {
    const { isQueued } = await import("./agentReducer");
    let s = agentReducer(init({ is_streaming: true }), { kind: "send", prompt: { id: "h1", text: "later", attachments: [], state: "held", deliverAs: "followUp" } });
    expect(isQueued(s.pending[0])).toBe(true);
    s = feed(s, { type: "ack", id: "h1" });
    expect(s.pending[0].state).toBe("held");
    s = agentReducer(s, { kind: "release_held", ids: ["h1"] });
    expect(s.pending[0]).toMatchObject({ state: "sending", deliverAs: undefined });
    expect(isQueued(s.pending[0])).toBe(false);
  });
});
