// The agent link: one WebSocket to `/ws/agent/<nodeId>` through the hypivisor. It feeds frames into
// agentReducer and exposes send helpers. Every socket belongs to a generation; a socket from an old
// generation (previous agent, previous attempt) can never dispatch, so conversations never mix.
import { useCallback, useEffect, useReducer, useRef } from "react";
import { agentReducer, initialAgentView, type AgentView, type PendingPrompt } from "../chat/agentReducer";
import { backoffDelay } from "./backoff";
import { agentUrl, type Endpoints } from "./endpoints";
import { FrameBatcher } from "./frameBatcher";
import { newId } from "./ids";
import { subprotocols } from "./token";

export interface AgentLink {
  view: AgentView;
  sendPrompt(text: string, attachments?: PendingPrompt["attachments"]): void;
  abort(): void;
  fetchOlder(limit?: number): void;
  listCommands(): void;
  listFiles(prefix: string): void;
  setSessionName(name: string): void;
  dismissError(id: number): void;
}

export function useAgentLink(endpoints: Endpoints, token: string | null, nodeId: string, nodeActive: boolean): AgentLink {
  const [view, dispatch] = useReducer(agentReducer, initialAgentView);
  const viewRef = useRef(view);
  viewRef.current = view;
  const wsRef = useRef<WebSocket | null>(null);
  const genRef = useRef(0);

  useEffect(() => {
    if (!nodeActive) {
      dispatch({ kind: "status", status: "lost" });
      return;
    }
    const gen = ++genRef.current;
    let attempt = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let ws: WebSocket | null = null;
    const batcher = new FrameBatcher<any>((frames) => {
      if (gen === genRef.current) dispatch({ kind: "frames", frames });
    });

    const connect = () => {
      if (gen !== genRef.current) return;
      dispatch({ kind: "status", status: "connecting" });
      ws = new WebSocket(agentUrl(endpoints, nodeId), subprotocols(token));
      wsRef.current = ws;
      ws.onopen = () => {
        if (gen !== genRef.current) return;
        attempt = 0;
        // Unacknowledged prompts go out again with the same id; the bridge acks a repeat without
        // giving it to pi twice.
        for (const p of viewRef.current.pending) if (p.state === "sending") ws?.send(promptFrame(p));
      };
      ws.onmessage = (ev) => {
        if (gen !== genRef.current || typeof ev.data !== "string") return;
        try {
          const f = JSON.parse(ev.data);
          if (f && typeof f.type === "string") batcher.push(f);
        } catch {
          /* not JSON: ignore, the bridge never sends that */
        }
      };
      ws.onclose = () => {
        if (gen !== genRef.current) return;
        wsRef.current = null;
        dispatch({ kind: "status", status: "lost" });
        timer = setTimeout(connect, backoffDelay(attempt++));
      };
    };
    connect();

    return () => {
      genRef.current++;
      batcher.cancel();
      clearTimeout(timer);
      if (ws) {
        ws.onopen = ws.onmessage = ws.onclose = null;
        ws.close();
      }
      wsRef.current = null;
    };
  }, [endpoints, token, nodeId, nodeActive]);

  const send = useCallback((frame: object) => {
    const ws = wsRef.current;
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }, []);

  const sendPrompt = useCallback(
    (text: string, attachments: PendingPrompt["attachments"] = []) => {
      const p: PendingPrompt = {
        id: newId(),
        text,
        attachments,
        // While pi works, a new prompt waits for the run to finish instead of failing as "busy".
        deliverAs: viewRef.current.running ? "followUp" : undefined,
        state: "sending",
      };
      dispatch({ kind: "send", prompt: p });
      const ws = wsRef.current;
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(promptFrame(p));
    },
    [],
  );

  // Scroll events fire many times before React re-renders with loadingOlder=true; this ref makes
  // sure one cursor is asked for once (cleared when the page lands, is refused, or the link drops).
  const requested = useRef<number | null>(null);
  useEffect(() => {
    if (!view.loadingOlder) requested.current = null;
  }, [view.loadingOlder]);
  const fetchOlder = useCallback(
    (limit = 50) => {
      const v = viewRef.current;
      if (v.loadingOlder || v.cursor <= 0 || !v.initialized || requested.current === v.cursor) return;
      if (send({ type: "fetch_history", before: v.cursor, limit })) {
        requested.current = v.cursor;
        dispatch({ kind: "older_requested" });
      }
    },
    [send],
  );

  return {
    view,
    sendPrompt,
    abort: useCallback(() => void send({ type: "abort" }), [send]),
    fetchOlder,
    listCommands: useCallback(() => void send({ type: "list_commands" }), [send]),
    listFiles: useCallback((prefix: string) => void send({ type: "list_files", prefix }), [send]),
    setSessionName: useCallback((name: string) => void send({ type: "set_session_name", name }), [send]),
    dismissError: useCallback((id: number) => dispatch({ kind: "dismiss_error", id }), []),
  };
}

function promptFrame(p: PendingPrompt): string {
  const frame: Record<string, unknown> = { type: "prompt", id: p.id, text: p.text };
  if (p.attachments.length) frame.attachments = p.attachments;
  if (p.deliverAs) frame.deliver_as = p.deliverAs;
  return JSON.stringify(frame);
}
