import { describe, expect, it } from "vitest";
import type { CommandInfo, ModelInfo } from "../protocol/types";
import { commandCompletions } from "./autocomplete";
import { argCompletions, argTrigger, imageWarning, slashAction } from "./slash";

const b = (name: string, available = true, note?: string): CommandInfo => ({ name, source: "builtin", available, note, description: name });
const commands: CommandInfo[] = [
  b("compact"),
  b("model"),
  b("thinking"),
  b("name"),
  b("new", false, "pi 0.73.1 cannot run it from outside its terminal"),
  b("reload"),
  b("export", false, "pi has no API for /export from an extension"),
  { name: "skill:harden", source: "skill", available: true },
  { name: "greet", source: "prompt", available: true },
  { name: "todo", source: "extension", available: true },
];
const models: ModelInfo[] = [
  { provider: "fake", id: "fake-model", name: "Fake Model", input: ["text"] },
  { provider: "fake", id: "fake-vision", name: "Fake Vision", input: ["text", "image"], reasoning: true },
];
const levels = ["off", "minimal", "low", "medium", "high"];
const act = (t: string) => slashAction(t, commands, models, levels);

describe("slash commands", () => {
  it("runs pi's built-ins through their APIs", () => {
    expect(act("/compact")).toEqual({ kind: "compact", args: "" });
    expect(act("/compact keep the plan")).toEqual({ kind: "compact", args: "keep the plan" });
    expect(act("/reload")).toEqual({ kind: "reload", args: "" });
    expect(act("/name  my session ")).toEqual({ kind: "name", args: "my session" });
    expect(act("/model fake/fake-vision")).toEqual({ kind: "model", provider: "fake", id: "fake-vision" });
    expect(act("/model fake-vision")).toEqual({ kind: "model", provider: "fake", id: "fake-vision" });
    expect(act("/thinking high")).toEqual({ kind: "thinking", level: "high" });
  });
  it("says why instead of sending text that does nothing", () => {
    expect(act("/new")).toEqual({ kind: "refuse", message: "/new cannot be run from here: pi 0.73.1 cannot run it from outside its terminal" });
    expect(act("/export")).toMatchObject({ kind: "refuse", message: expect.stringContaining("no API for /export") });
    expect(act("/name")).toMatchObject({ kind: "refuse" });
    expect(act("/model nope")).toMatchObject({ kind: "refuse", message: "No model nope among this agent's models" });
    expect(act("/thinking loud")).toMatchObject({ kind: "refuse" });
  });
  it("templates, skills and text go to pi; an extension command expects no echo", () => {
    expect(act("/greet Ada")).toEqual({ kind: "prompt", noEcho: false });
    expect(act("/skill:harden")).toEqual({ kind: "prompt", noEcho: false });
    expect(act("/todo add x")).toEqual({ kind: "prompt", noEcho: true });
    expect(act("/etc/hosts is odd")).toEqual({ kind: "prompt", noEcho: false });
  });
  it("lists what this pi cannot run as unavailable, with the reason", () => {
    const items = commandCompletions(commands, "");
    expect(items.find((i) => i.value === "new")).toMatchObject({ disabled: true, detail: expect.stringContaining("cannot run it") });
    expect(items.find((i) => i.value === "compact")?.disabled).toBeFalsy();
    expect(items.map((i) => i.value)).toEqual(expect.arrayContaining(["greet", "skill:harden", "todo"]));
  });
  it("completes /model and /thinking arguments", () => {
    expect(argTrigger("/model vis", 10)).toEqual({ command: "model", query: "vis", start: 7, end: 10 });
    expect(argTrigger("/compact x", 10)).toBeNull();
    expect(argCompletions("model", "vis", models, levels, "fake/fake-model").map((c) => c.value)).toEqual(["fake/fake-vision"]);
    expect(argCompletions("thinking", "m", models, levels, "off").map((c) => c.value)).toEqual(["minimal", "medium"]);
  });
  it("warns about images for a text-only model", () => {
    expect(imageWarning(models[0])).toMatch(/fake\/fake-model takes no images/);
    expect(imageWarning(models[1])).toBeNull();
    expect(imageWarning(null)).toBeNull();
  });
});
