// The frame unions of both links, built from the generated model types (types.ts). Each union is
// discriminated by its `type` / `event` field; a frame with an unknown discriminant is still let in
// (the reducers ignore it), so a newer peer never breaks an older Pi-DE.
import type { AgentPiEvent } from "./pi";
import type {
  AbortMsg,
  AckMsg,
  ApprovalDecisionMsg,
  ApprovalPolicyMsg,
  ApprovalRequestMsg,
  ApprovalResolvedMsg,
  CommandsListMsg,
  ErrorMsg,
  FetchHistoryMsg,
  FilesListMsg,
  HistoryPageMsg,
  InitEvent,
  InitStateMsg,
  ListCommandsMsg,
  ListFilesMsg,
  ListModelsMsg,
  ModelsListMsg,
  NodeJoinedEvent,
  NodesJoinedEvent,
  NodeOfflineEvent,
  NodeRemovedEvent,
  NodeUpdatedEvent,
  PiEvent,
  PromptMsg,
  RunCommandMsg,
  SetApprovalPolicyMsg,
  SetModelMsg,
  SetSessionNameMsg,
  SetThinkingLevelMsg,
} from "./types";

/** Push events of the registry link (`/ws`). */
export type RegistryEvent = InitEvent | NodeJoinedEvent | NodesJoinedEvent | NodeUpdatedEvent | NodeOfflineEvent | NodeRemovedEvent;

/** Frames the bridge itself writes on the agent link. */
export type BridgeFrame =
  | InitStateMsg
  | AckMsg
  | HistoryPageMsg
  | CommandsListMsg
  | FilesListMsg
  | ErrorMsg
  | ApprovalRequestMsg
  | ApprovalResolvedMsg
  | ApprovalPolicyMsg
  | ModelsListMsg;

/** Everything the agent link receives: the bridge's frames and pi's events passed through as pi emitted them. */
export type AgentServerFrame = BridgeFrame | PiEvent;

/** Everything Pi-DE sends on the agent link. */
export type ClientMessage =
  | PromptMsg
  | AbortMsg
  | FetchHistoryMsg
  | ListCommandsMsg
  | ListFilesMsg
  | SetSessionNameMsg
  | ApprovalDecisionMsg
  | SetApprovalPolicyMsg
  | ListModelsMsg
  | SetModelMsg
  | SetThinkingLevelMsg
  | RunCommandMsg;

const BRIDGE_TYPES: ReadonlySet<string> = new Set<BridgeFrame["type"]>([
  "init_state",
  "ack",
  "history_page",
  "commands_list",
  "files_list",
  "error",
  "approval_request",
  "approval_resolved",
  "approval_policy",
  "models_list",
]);

/** A bridge frame (narrows on `type`), as opposed to one of pi's events. */
export function isBridgeFrame(f: AgentServerFrame): f is BridgeFrame {
  return BRIDGE_TYPES.has(f.type);
}

/** The narrow view of a pi event whose fields Pi-DE reads (pi owns the shape; fields may be missing). */
export function piEventView(f: PiEvent): AgentPiEvent {
  return f as AgentPiEvent;
}

/** A parsed JSON value that has the agent link's envelope (an object with a string `type`). */
export function asAgentFrame(v: unknown): AgentServerFrame | null {
  return v && typeof v === "object" && typeof (v as { type?: unknown }).type === "string" ? (v as AgentServerFrame) : null;
}

/** A parsed JSON value that has the registry link's event envelope (an object with a string `event`). */
export function asRegistryEvent(v: unknown): RegistryEvent | null {
  return v && typeof v === "object" && typeof (v as { event?: unknown }).event === "string" ? (v as RegistryEvent) : null;
}

/**
 * The push events this build knows on the registry link (a test pins it to schema.json). Anything else comes from a
 * newer hypivisor: ignored, and said once in the console (specs/protocol.md §0).
 */
export const KNOWN_REGISTRY_EVENTS: ReadonlySet<string> = new Set([
  "init",
  "node_joined",
  "nodes_joined",
  "node_updated",
  "node_offline",
  "node_removed",
  "attention_added",
  "attention_resolved",
  "unread_changed",
  "machine_joined",
  "machine_updated",
  "machine_left",
  "machine_request",
  "dial_back",
  "approval_decision",
  "budget_changed",
  "search_results",
  "index_progress",
]);

const noted = new Set<string>();

/** A frame or event type this build does not know (a newer peer's): logged once per type, then ignored. */
export function noteUnknown(link: "registry" | "agent", kind: string, log: (msg: string) => void = console.warn): boolean {
  const key = `${link}:${kind.slice(0, 64)}`;
  if (noted.has(key) || noted.size >= 200) return false;
  noted.add(key);
  log(`Pi-DE: ignoring an unknown ${link} ${link === "registry" ? "event" : "frame"} "${kind.slice(0, 64)}" (a newer peer?)`);
  return true;
}
