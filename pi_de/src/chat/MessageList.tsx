// The virtualised conversation. Only visible rows are in the DOM, so 10,000 messages open as fast
// as 10. Rows are keyed by absolute message index: prepending an older page keeps every measured
// size, and we shift scrollTop by the height added above, so the view does not jump.
import { useVirtualizer } from "@tanstack/react-virtual";
import { useCallback, useEffect, useLayoutEffect, useMemo, useRef } from "react";
import type { ChatMessage } from "../protocol/pi";
import { textOf } from "../protocol/pi";
import { resultsByCallId, type AgentView } from "../model/agentReducer";
import { MessageView, type ToolLookup } from "./MessageView";

type Row =
  | { key: string; kind: "msg"; m: ChatMessage }
  | { key: string; kind: "streaming"; m: ChatMessage }
  | { key: string; kind: "pending"; text: string; state: string; files: number };

const NEAR_BOTTOM_PX = 80;
const LOAD_OLDER_PX = 400;

export function MessageList({ view, onLoadOlder }: { view: AgentView; onLoadOlder: () => void }) {
  const scrollRef = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
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
      rows.push({ key: `m${view.cursor + i}`, kind: "msg", m });
    });
    return rows;
  }, [view.messages, view.cursor]);

  const rows = useMemo(() => {
    const extra: Row[] = [];
    if (view.streaming) extra.push({ key: "streaming", kind: "streaming", m: view.streaming });
    for (const p of view.pending) extra.push({ key: `p-${p.id}`, kind: "pending", text: p.text, state: p.state, files: p.attachments.length });
    return extra.length ? [...msgRows, ...extra] : msgRows;
  }, [msgRows, view.streaming, view.pending]);

  const tools: ToolLookup = useMemo(() => ({ results, live: view.liveTools, running: view.running }), [results, view.liveTools, view.running]);

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
    atBottom.current = true;
    virtualizer.scrollToIndex(rows.length - 1, { align: "end" });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [view.initSeq]);

  const onScroll = useCallback(() => {
    const el = scrollRef.current;
    if (!el) return;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < NEAR_BOTTOM_PX;
    if (el.scrollTop < LOAD_OLDER_PX && view.cursor > 0 && !view.loadingOlder) onLoadOlder();
  }, [view.cursor, view.loadingOlder, onLoadOlder]);

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
    </div>
  );
}
