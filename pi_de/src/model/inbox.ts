// The inbox as this page knows it: the hypivisor's open attention items and per-agent unread counts,
// from a list_attention snapshot plus the attention_added / attention_resolved / unread_changed events.
// Pure. A (re)connect starts a sync: events that arrive before the snapshot's answer are applied at once
// and also kept, then replayed over the snapshot, so the result is right whichever came first and an item
// is never listed twice.
import type { AttentionAddedEvent, AttentionItem, AttentionResolvedEvent, ListAttentionResult, UnreadChangedEvent } from "../protocol/types";

export type InboxEvent = AttentionAddedEvent | AttentionResolvedEvent | UnreadChangedEvent;
export type InboxKind = AttentionItem["kind"];

export interface InboxState {
  /** Open items by id. */
  items: Record<string, AttentionItem>;
  /** node id → unread count (only non-zero). */
  unread: Record<string, number>;
  /** A snapshot has arrived on the current connection at least once. */
  loaded: boolean;
  /** Events received since the current sync started (null when no sync is under way). */
  buffer: InboxEvent[] | null;
}

export const emptyInbox: InboxState = { items: {}, unread: {}, loaded: false, buffer: null };

export type InboxAction = InboxEvent | { event: "sync_started" } | { event: "snapshot"; result: ListAttentionResult };

const INBOX_EVENTS: ReadonlySet<string> = new Set(["attention_added", "attention_resolved", "unread_changed"]);

/** A registry event that belongs to the inbox. */
export function isInboxEvent(e: { event: string }): e is InboxEvent {
  return INBOX_EVENTS.has(e.event);
}

/** Runs bounded: a page that never gets its snapshot answer does not grow without end. */
const MAX_BUFFER = 10_000;

function apply(s: InboxState, e: InboxEvent): InboxState {
  switch (e.event) {
    case "attention_added": {
      const item = e.item;
      if (!item || typeof item.id !== "string") return s;
      return { ...s, items: { ...s.items, [item.id]: item } };
    }
    case "attention_resolved": {
      if (!(e.id in s.items)) return s;
      const { [e.id]: _gone, ...rest } = s.items;
      return { ...s, items: rest };
    }
    case "unread_changed": {
      const n = Math.max(0, Math.floor(Number(e.unread) || 0));
      if ((s.unread[e.node_id] ?? 0) === n) return s;
      const unread = { ...s.unread };
      if (n > 0) unread[e.node_id] = n;
      else delete unread[e.node_id];
      return { ...s, unread };
    }
    default:
      return s;
  }
}

export function inboxReducer(s: InboxState, a: InboxAction): InboxState {
  switch (a.event) {
    case "sync_started":
      return { ...s, buffer: [] };
    case "snapshot": {
      const items: Record<string, AttentionItem> = {};
      for (const item of a.result.items ?? []) if (item && typeof item.id === "string") items[item.id] = item;
      const unread: Record<string, number> = {};
      for (const [id, n] of Object.entries(a.result.unread ?? {})) if (n > 0) unread[id] = n;
      let next: InboxState = { items, unread, loaded: true, buffer: null };
      for (const e of s.buffer ?? []) next = apply(next, e);
      return next;
    }
    default: {
      const next = apply(s, a);
      if (s.buffer === null) return next;
      const buffer = s.buffer.length < MAX_BUFFER ? [...s.buffer, a] : s.buffer;
      return { ...next, buffer };
    }
  }
}

// ---------------------------------------------------------------------------------------------- selectors

/** Kinds that wait for a person's answer; they come first. */
const URGENT: ReadonlySet<InboxKind> = new Set<InboxKind>(["approval", "question", "error"]);
/** Kinds that reading the agent ends (mark_read). */
export const READ_KINDS: ReadonlySet<InboxKind> = new Set<InboxKind>(["finished", "error", "exited"]);

/** Approvals, questions and errors first, then the rest; newest first within each. */
export function orderedItems(s: InboxState): AttentionItem[] {
  return Object.values(s.items).sort((a, b) => {
    const ua = URGENT.has(a.kind) ? 0 : 1;
    const ub = URGENT.has(b.kind) ? 0 : 1;
    return ua - ub || b.created_at - a.created_at || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
  });
}

/** The number in the title and on the favicon: open items. */
export function inboxCount(s: InboxState): number {
  return Object.keys(s.items).length;
}

/** Open items by agent. */
export function itemsByAgent(s: InboxState): Record<string, AttentionItem[]> {
  const out: Record<string, AttentionItem[]> = {};
  for (const item of orderedItems(s)) (out[item.node_id] ??= []).push(item);
  return out;
}

/** Agents with something that reading them clears: unread output or a finished/error/exited item. */
export function agentsToRead(s: InboxState): string[] {
  const ids = new Set(Object.keys(s.unread));
  for (const item of Object.values(s.items)) if (READ_KINDS.has(item.kind)) ids.add(item.node_id);
  return [...ids].sort();
}

/** Whether reading this agent now would clear something. */
export function hasSomethingToRead(s: InboxState, nodeId: string): boolean {
  if ((s.unread[nodeId] ?? 0) > 0) return true;
  for (const item of Object.values(s.items)) if (item.node_id === nodeId && READ_KINDS.has(item.kind)) return true;
  return false;
}

/**
 * What makes one "moment of reading" an agent: its id plus the unread count and the read-clearable items
 * it has now. A mark_read is sent once per distinct key while a person is looking; new output makes a new
 * key (so it is read too), re-renders with nothing new do not.
 */
export function readKey(s: InboxState, nodeId: string): string | null {
  if (!hasSomethingToRead(s, nodeId)) return null;
  const ids: string[] = [];
  for (const item of Object.values(s.items)) if (item.node_id === nodeId && READ_KINDS.has(item.kind)) ids.push(item.id);
  return `${nodeId}|${s.unread[nodeId] ?? 0}|${ids.sort().join(",")}`;
}

export const KIND_LABEL: Record<InboxKind, string> = {
  approval: "Approval",
  question: "Question",
  finished: "Finished",
  error: "Error",
  stalled: "Stalled",
  budget: "Budget",
  exited: "Exited",
};

/** A short relative time: "now", "5m ago", "3h ago", "2d ago". */
export function ago(createdAt: number, nowSeconds: number): string {
  const s = Math.max(0, Math.floor(nowSeconds - createdAt));
  if (s < 60) return "just now";
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ago`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ago`;
  return `${Math.floor(h / 24)}d ago`;
}

/** The agent's name on an item: its session name, else its folder's name, else its id. */
export function itemAgentName(item: Pick<AttentionItem, "session_name" | "cwd" | "node_id">): string {
  if (item.session_name) return item.session_name;
  if (item.cwd) {
    const parts = item.cwd.split(/[\\/]+/).filter(Boolean);
    if (parts.length) return parts[parts.length - 1];
  }
  return item.node_id;
}

/** The title with the open-item count in front: "(3) Pi-DE". */
export function titleWithCount(title: string, count: number): string {
  return count > 0 ? `(${count > 99 ? "99+" : count}) ${title}` : title;
}
