// What a `/…` prompt means (pure): one of pi's built-ins the page runs through the agent link, a command this
// pi cannot run from outside its terminal (said, never sent), an extension command (pi echoes no message), or
// text for pi (prompt templates and skills expand there). Also the argument completion of /model and /thinking.
import type { CommandInfo, ModelInfo } from "../protocol/types";
import type { Completion } from "./autocomplete";

export type SlashAction =
  | { kind: "compact" | "new" | "reload"; args: string }
  | { kind: "name"; args: string }
  | { kind: "model"; provider: string; id: string }
  | { kind: "thinking"; level: string }
  /** Not run: the message says why (unavailable here, or an argument is missing or unknown). */
  | { kind: "refuse"; message: string }
  /** Sent as a prompt; `noEcho`: an extension command, pi runs it and echoes no user message. */
  | { kind: "prompt"; noEcho: boolean };

const RUN = new Set(["compact", "new", "reload"]);

/** The command named by the first word of `text`, when it starts with `/` and pi listed that name. */
export function slashCommand(text: string, commands: CommandInfo[]): { cmd: CommandInfo; args: string } | null {
  const m = /^\/(\S+)(?:\s+([\s\S]*))?$/.exec(text.trim());
  if (!m) return null;
  const cmd = commands.find((c) => c.name === m[1]);
  return cmd ? { cmd, args: (m[2] ?? "").trim() } : null;
}

export function slashAction(text: string, commands: CommandInfo[], models: ModelInfo[], levels: string[]): SlashAction {
  const hit = slashCommand(text, commands);
  if (!hit) return { kind: "prompt", noEcho: false }; // not a command pi listed: plain text (e.g. a path)
  const { cmd, args } = hit;
  if (cmd.available === false) return { kind: "refuse", message: `/${cmd.name} cannot be run from here: ${cmd.note ?? "this pi has no API for it"}` };
  if (cmd.source !== "builtin") return { kind: "prompt", noEcho: cmd.source === "extension" };
  if (RUN.has(cmd.name)) return { kind: cmd.name as "compact" | "new" | "reload", args };
  if (cmd.name === "name") return args ? { kind: "name", args } : { kind: "refuse", message: "/name needs a name: /name my session" };
  if (cmd.name === "model") {
    const found = models.find((m) => `${m.provider}/${m.id}` === args || m.id === args);
    if (found) return { kind: "model", provider: found.provider, id: found.id };
    return { kind: "refuse", message: args ? `No model ${args} among this agent's models` : "Choose a model: /model <provider/id> or the model picker in the header" };
  }
  if (cmd.name === "thinking") {
    if (levels.includes(args)) return { kind: "thinking", level: args };
    return { kind: "refuse", message: args ? `This model offers no thinking level ${args} (${levels.join(", ") || "none"})` : `Choose a level: /thinking ${levels.join("|") || "off"}` };
  }
  return { kind: "refuse", message: `/${cmd.name} cannot be run from here` };
}

/** `/model <query>` and `/thinking <query>` up to the caret: completion of the argument. */
export function argTrigger(text: string, caret: number): { command: "model" | "thinking"; query: string; start: number; end: number } | null {
  const m = /^\/(model|thinking)\s+(\S*)$/.exec(text.slice(0, caret));
  if (!m) return null;
  return { command: m[1] as "model" | "thinking", query: m[2], start: caret - m[2].length, end: caret };
}

export function argCompletions(command: "model" | "thinking", query: string, models: ModelInfo[], levels: string[], current: string | null): Completion[] {
  const q = query.toLowerCase();
  if (command === "thinking")
    return levels.filter((l) => l.startsWith(q)).map((l) => ({ value: l, label: l, detail: l === current ? "current" : undefined }));
  return models
    .map((m) => ({ m, key: `${m.provider}/${m.id}` }))
    .filter(({ m, key }) => key.toLowerCase().includes(q) || (m.name ?? "").toLowerCase().includes(q))
    .map(({ m, key }) => ({ value: key, label: key, detail: [m.name, m.input?.includes("image") ? "images" : null, key === current ? "current" : null].filter(Boolean).join(" · ") }));
}

/** The warning shown beside image attachments when the agent's model takes text only. */
export function imageWarning(model: ModelInfo | null): string | null {
  if (!model || (model.input ?? ["text"]).includes("image")) return null;
  return `${model.provider}/${model.id} takes no images: pi will not show them to the model. Choose a model that takes images in the header.`;
}
