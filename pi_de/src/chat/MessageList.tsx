// The virtualised conversation. Only visible rows are in the DOM, so 10,000 messages open as fast
// as 10. Rows are keyed by absolute message index: prepending an older page keeps every measured
// size, and we shift scrollTop by the height added above, so the view does not jump.
import { useVirtualizer } from "@tanstack/react-virtual";
import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from "react";
import type { ChatMessage } from "../protocol/pi";
import { textOf } from "../protocol/pi";
import { isQueued, resultsByCallId, type AgentView } from "../model/agentReducer";
import { MessageView, type ToolLookup } from "./MessageView";
import { jumpLabel, markSeen, newIds, unseenCount, type SeenMark } from "./follow";

type Row =
  | { key: string; kind: "msg"; m: ChatMessage; abs: number }
  | { key: string; kind: "streaming"; m: ChatMessage }
  | { key: string; kind: "pending"; text: string; state: string; files: number };

const NEAR_BOTTOM_PX = 80;
const LOAD_OLDER_PX = 400;

/** `onFollowing`: whether the reader is at the latest message (the inbox marks the agent read then).
 *  `openAt`: the absolute index of the message to open at (a past session opened at a search hit), else the newest. */
/** `emptyHint`: what to say while the conversation has nothing in it yet (a fresh agent), instead of a blank pane. */
export function MessageList({ view, onLoadOlder, onFollowing, openAt, emptyHint }: { view: AgentView; onLoadOlder: () => void; onFollowing?: (following: boolean) => void; openAt?: number | null; emptyHint?: string | null }) {
  const scrollRef = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  // Rendered mirror of atBottom, and what the reader had seen when they scrolled up.
  const [following, setFollowing] = useState(true);
  useEffect(() => {
    onFollowing?.(following);
  }, [following, onFollowing]);
  useEffect(() => () => onFollowing?.(false), [onFollowing]);
  const [seen, setSeen] = useState<SeenMark>(() => markSeen(0, false));
  const end = view.cursor + view.messages.length;
  const endRef = useRef({ end, streaming: !!view.streaming });
  endRef.current = { end, streaming: !!view.streaming };
  const results = useMemo(() => resultsByCallId(view.messages), [view.messages]);

  const msgRows = useMemo(() => {
    const rows: Row[] = [];
    const calls = new Set<string>();
    for (const m of view.messages)
      if (m.role === "assistant" && Array.isArray(m.content))
        for (const b of m.content) if (b.type === "toolCall") calls.add((b as { id: string }).id);
    view.messages.forEach((m, i) => {
      // A tool result is drawn inside the card of the call that made it.
      if (m.role === "toolResult" && m.toolCallId && calls.has(m.toolCallId)) return;
      rows.push({ key: `m${view.cursor + i}`, kind: "msg", m, abs: view.cursor + i });
    });
    return rows;
  }, [view.messages, view.cursor]);

  const rows = useMemo(() => {
    const extra: Row[] = [];
    if (view.streaming) extra.push({ key: "streaming", kind: "streaming", m: view.streaming });
    // Queued prompts (follow-ups, steers) show in the queue above the composer (QueuePanel).
    for (const p of view.pending) if (!isQueued(p)) extra.push({ key: `p-${p.id}`, kind: "pending", text: p.text, state: p.state, files: p.attachments.length });
    return extra.length ? [...msgRows, ...extra] : msgRows;
  }, [msgRows, view.streaming, view.pending]);

  const pendingApprovals = view.approvals.pending;
  const waiting = useMemo(() => new Set(pendingApprovals.map((p) => p.tool_call_id)), [pendingApprovals]);
  const tools: ToolLookup = useMemo(() => ({ results, live: view.liveTools, running: view.running, waiting }), [results, view.liveTools, view.running, waiting]);

  // getItemKey changes only when the set of rows does: the virtualizer recomputes every row's
  // offset (O(n)) whenever it changes, and the streaming row's content changes every frame.
  const rowsRef = useRef(rows);
  rowsRef.current = rows;
  const hasStreaming = !!view.streaming;
  // eslint-disable-next-line react-hooks/exhaustive-deps
  const getItemKey = useCallback((i: number) => rowsRef.current[i]?.key ?? i, [msgRows, view.pending, hasStreaming]);
  const virtualizer = useVirtualizer({
    count: rows.length,
    getScrollElement: () => scrollRef.current,
    estimateSize: () => 90,
    overscan: 6,
    getItemKey,
  });

  // Prepend: keep the first previously visible message where it was.
  const firstKey = useRef<string | null>(null);
  const prevCursor = useRef(view.cursor);
  useLayoutEffect(() => {
    const el = scrollRef.current;
    const oldFirst = firstKey.current;
    firstKey.current = rows[0]?.key ?? null;
    if (!el || view.cursor >= prevCursor.current || !oldFirst) {
      prevCursor.current = view.cursor;
      return;
    }
    prevCursor.current = view.cursor;
    const idx = rows.findIndex((r) => r.key === oldFirst);
    if (idx > 0) {
      const added = virtualizer.getOffsetForIndex(idx, "start")?.[0] ?? 0;
      el.scrollTop += added;
    }
  }, [rows, view.cursor, virtualizer]);

  // A prompt this page just sent: show it and what follows, however far up the reader was.
  const pendingIds = useMemo(() => view.pending.map((p) => p.id), [view.pending]);
  const prevPendingIds = useRef(pendingIds);
  useLayoutEffect(() => {
    const sent = newIds(prevPendingIds.current, pendingIds).length > 0;
    prevPendingIds.current = pendingIds;
    if (!sent) return;
    atBottom.current = true;
    setFollowing(true);
    if (scrollRef.current) scrollRef.current.scrollTop = 1e9;
  }, [pendingIds]);

  // Stick to the bottom while new content arrives, unless the reader scrolled up.
  const total = virtualizer.getTotalSize();
  const lastStreamLen = view.streaming ? textOf(view.streaming.content).length + (Array.isArray(view.streaming.content) ? view.streaming.content.length : 0) : 0;
  useLayoutEffect(() => {
    const el = scrollRef.current;
    // Assigning past the end clamps to the bottom without reading scrollHeight (a forced layout).
    if (el && atBottom.current) el.scrollTop = 1e9;
  }, [total, rows.length, lastStreamLen]);

  // Open at the newest message (also after a reconnect's or a pi session switch's init_state).
  useEffect(() => {
    if (!view.initialized || rows.length === 0) return;
    const at = openAt == null ? -1 : rows.findIndex((r) => r.kind === "msg" && r.abs >= openAt);
    if (at >= 0 && at < rows.length - 1) {
      atBottom.current = false;
      setFollowing(false);
      setSeen(markSeen(endRef.current.end, false)); // what is loaded is not "new"
      virtualizer.scrollToIndex(at, { align: "start" });
      return;
    }
    atBottom.current = true;
    setFollowing(true);
    virtualizer.scrollToIndex(rows.length - 1, { align: "end" });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [view.initSeq]);

  const onScroll = useCallback(() => {
    const el = scrollRef.current;
    if (!el) return;
    const bottom = el.scrollHeight - el.scrollTop - el.clientHeight < NEAR_BOTTOM_PX;
    if (bottom !== atBottom.current) {
      atBottom.current = bottom;
      setFollowing(bottom);
      // Leaving the bottom: everything up to here counts as seen.
      if (!bottom) setSeen(markSeen(endRef.current.end, endRef.current.streaming));
    }
    if (el.scrollTop < LOAD_OLDER_PX && view.cursor > 0 && !view.loadingOlder) onLoadOlder();
  }, [view.cursor, view.loadingOlder, onLoadOlder]);

  const unseen = following ? 0 : unseenCount(msgRowIndexes(msgRows), seen, !!view.streaming);
  const jumpToLatest = useCallback(() => {
    const el = scrollRef.current;
    atBottom.current = true;
    setFollowing(true);
    if (rowsRef.current.length) virtualizer.scrollToIndex(rowsRef.current.length - 1, { align: "end" });
    // Rows below were never measured: scroll again once they are (the stick-to-bottom effect does too).
    if (el) requestAnimationFrame(() => (el.scrollTop = 1e9));
  }, [virtualizer]);

  const loaded = view.messages.length;
  return (
    <div className="message-pane">
      {view.cursor > 0 && (
        <div className="history-note" data-testid="history-note">
          Showing recent history ({loaded} of {view.total}){view.loadingOlder ? " · loading older messages…" : " · scroll up for more"}
        </div>
      )}
    <div className="message-scroll" ref={scrollRef} onScroll={onScroll} data-testid="message-list">
      <div style={{ height: total, position: "relative", width: "100%" }}>
        {virtualizer.getVirtualItems().map((vi) => {
          const row = rows[vi.index];
          return (
            <div key={vi.key} data-index={vi.index} ref={virtualizer.measureElement} className="row" style={{ position: "absolute", top: 0, left: 0, width: "100%", transform: `translateY(${vi.start}px)` }}>
              {row.kind === "pending" ? (
                <div className={`msg msg-user msg-pending`} data-role="pending" data-state={row.state}>
                  <div className="user-text">{row.text}</div>
                  <div className="msg-meta">
                    {row.files > 0 && `${row.files} attachment${row.files > 1 ? "s" : ""} · `}
                    {row.state === "sending" ? "sending…" : "queued"}
                  </div>
                </div>
              ) : (
                <MessageView m={row.m} tools={tools} streaming={row.kind === "streaming"} />
              )}
            </div>
          );
        })}
      </div>
    </div>
      {emptyHint && view.initialized && rows.length === 0 && view.cursor === 0 && (
        <div className="conversation-empty muted" data-testid="empty-conversation">
          {emptyHint}
        </div>
      )}
      {unseen > 0 && (
        <button type="button" className="jump-latest" data-testid="jump-latest" onClick={jumpToLatest}>
          {jumpLabel(unseen)}
        </button>
      )}
    </div>
  );
}

function msgRowIndexes(rows: Row[]): number[] {
  const out: number[] = [];
  for (const r of rows) if (r.kind === "msg") out.push(r.abs);
  return out;
}
