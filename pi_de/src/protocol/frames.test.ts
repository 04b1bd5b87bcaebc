import { describe, expect, it } from "vitest";
import { asAgentFrame, asRegistryEvent, isBridgeFrame, type AgentServerFrame, type ClientMessage, type RegistryEvent } from "./frames";

describe("frame unions", () => {
  it("tells the bridge's frames from pi's passed-through events", () => {
    const frames: AgentServerFrame[] = [
      { type: "ack", id: "p1" },
      { type: "init_state", node: { id: "n", cwd: "/", machine: "m", port: 1 }, messages: [] },
      { type: "message_start", message: { role: "assistant" } },
      { type: "turn_start" },
    ];
    expect(frames.map(isBridgeFrame)).toEqual([true, true, false, false]);
    const f = frames[0];
    if (isBridgeFrame(f) && f.type === "ack") expect(f.id).toBe("p1"); // narrows to AckMsg
  });

  it("accepts only the link's envelope from parsed JSON", () => {
    expect(asAgentFrame({ type: "agent_start" })).toEqual({ type: "agent_start" });
    for (const bad of [null, 1, "x", [], { type: 3 }, { event: "init" }]) expect(asAgentFrame(bad)).toBeNull();
    expect(asRegistryEvent({ event: "node_removed", id: "a" })).toEqual({ event: "node_removed", id: "a" });
    for (const bad of [null, 1, "x", { event: 3 }, { type: "init" }]) expect(asRegistryEvent(bad)).toBeNull();
  });

  it("types what the client may send (checked by `npm run typecheck`)", () => {
    const ok: ClientMessage[] = [
      { type: "prompt", id: "p", text: "hi", deliver_as: "followUp" },
      { type: "abort" },
      { type: "fetch_history", before: 10, limit: 50 },
      { type: "list_commands" },
      { type: "list_files", prefix: "src/" },
      { type: "set_session_name", name: "n" },
    ];
    // @ts-expect-error a typo in a client message type is a compile error
    const typo: ClientMessage = { type: "abrot" };
    // @ts-expect-error fetch_history needs its cursor
    const missing: ClientMessage = { type: "fetch_history", limit: 5 };
    // @ts-expect-error a registry event's discriminant is `event`, checked against the model names
    const unknownEvent: RegistryEvent = { event: "node_exploded", id: "x" };
    expect([ok.length, typo, missing, unknownEvent].length).toBe(4);
  });
});
