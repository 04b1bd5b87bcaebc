// pi's own message and event shapes (specs/pi-runtime.md §3). Our schema models them as open objects
// (`PiMessage {role, ...}`, `PiEvent {type, ...}`) because pi owns them; these narrow views cover the
// fields Pi-DE reads. Unknown roles and block types are rendered generically, never dropped.
import type { PiMessage } from "./types";

export interface TextBlock { type: "text"; text: string }
export interface ThinkingBlock { type: "thinking"; thinking: string }
export interface ImageBlock { type: "image"; data?: string; mimeType?: string }
export interface ToolCallBlock {
  type: "toolCall";
  id: string;
  name: string;
  arguments: Record<string, unknown>;
  /** Pi-DE only: JSON fragments received while the call is still being streamed. */
  partialJson?: string;
}
export type ContentBlock = TextBlock | ThinkingBlock | ImageBlock | ToolCallBlock | { type: string; [k: string]: unknown };

export interface Usage {
  input?: number;
  output?: number;
  totalTokens?: number;
  cost?: { total?: number };
}

export interface ChatMessage extends PiMessage {
  role: string;
  content?: string | ContentBlock[];
  timestamp?: number;
  stopReason?: string;
  errorMessage?: string;
  usage?: Usage;
  toolCallId?: string;
  toolName?: string;
  isError?: boolean;
  details?: unknown;
}

export interface ToolResultLike {
  content?: string | ContentBlock[];
  isError?: boolean;
  details?: unknown;
}

/** Joins the text blocks of a message or tool result (strings pass through). */
export function textOf(content: string | ContentBlock[] | undefined): string {
  if (content == null) return "";
  if (typeof content === "string") return content;
  return content
    .filter((b): b is TextBlock => b.type === "text" && typeof (b as TextBlock).text === "string")
    .map((b) => b.text)
    .join("");
}

export function blocksOf(m: ChatMessage): ContentBlock[] {
  if (typeof m.content === "string") return [{ type: "text", text: m.content }];
  return Array.isArray(m.content) ? m.content : [];
}

/** pi's streaming sub-event inside message_update (`assistantMessageEvent`). */
export interface AssistantMessageEvent {
  type: string;
  contentIndex?: number;
  delta?: string;
  content?: unknown;
  id?: string;
  name?: string;
  toolCall?: ToolCallBlock;
}

/** Narrow views of the pi events Pi-DE reads; any other event type is ignored. */
export type AgentPiEvent =
  | { type: "agent_start" }
  | { type: "agent_end" | "agent_settled" }
  | { type: "message_start" | "message_end"; message: ChatMessage }
  | { type: "message_update"; message?: ChatMessage; assistantMessageEvent?: AssistantMessageEvent; assistant_message_event?: AssistantMessageEvent }
  | { type: "tool_execution_start"; toolCallId: string; toolName: string; args?: unknown }
  | { type: "tool_execution_update"; toolCallId: string; partialResult?: ToolResultLike }
  | { type: "tool_execution_end"; toolCallId: string; result?: ToolResultLike; isError?: boolean }
  | { type: "session_info_changed"; name?: string | null; session_name?: string | null }
  | { type: "model_select"; model?: unknown }
  | { type: "thinking_level_select"; level?: string }
  | { type: "context_usage"; tokens?: number | null; contextWindow?: number | null; context_window?: number | null; percent?: number | null };
