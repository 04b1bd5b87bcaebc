// The agent link: one WebSocket to `/ws/agent/<nodeId>` through the hypivisor, or, while the hypivisor
// is unreachable, straight to the bridge's port (rules in fallback.ts). It feeds frames into
// agentReducer and exposes send helpers. Every socket belongs to a generation and only the current
// socket may dispatch, so conversations never mix and two links never feed the view at once; a
// switch of route starts with the new link's init_state, which replaces the whole view.
import { useCallback, useEffect, useReducer, useRef, useState } from "react";
import { agentReducer, initialAgentView, type AgentView, type PendingPrompt } from "../model/agentReducer";
import { asAgentFrame, type AgentServerFrame, type ClientMessage } from "../protocol/frames";
import type { PromptMsg } from "../protocol/types";
import { agentUrl, type Endpoints } from "./endpoints";
import { DIRECT_OPEN_TIMEOUT_MS, directUrls, nextStep, type DirectTarget, type Route } from "./fallback";
import { FrameBatcher } from "./frameBatcher";
import { newId } from "./ids";
import { subprotocols } from "./token";

export interface AgentLink {
  view: AgentView;
  /** Route of the link that is up right now (null while connecting or down). */
  route: Route | null;
  sendPrompt(text: string, attachments?: PendingPrompt["attachments"]): void;
  abort(): void;
  fetchOlder(limit?: number): void;
  listCommands(): void;
  listFiles(prefix: string): void;
  setSessionName(name: string): void;
  dismissError(id: number): void;
}

export interface AgentLinkOptions {
  /** The registry socket is connected (default true). Down means: reach the agent directly. */
  registryUp?: boolean;
  /** The node's port and machine, for the direct route (the last one seen is remembered). */
  target?: DirectTarget | null;
  /** The page's location (default window.location): its hostname is the first direct candidate. */
  page?: { hostname: string; protocol: string };
}

export function useAgentLink(endpoints: Endpoints, token: string | null, nodeId: string, nodeActive: boolean, opts: AgentLinkOptions = {}): AgentLink {
  const [view, dispatch] = useReducer(agentReducer, initialAgentView);
  const [route, setRoute] = useState<Route | null>(null);
  const viewRef = useRef(view);
  viewRef.current = view;
  const wsRef = useRef<WebSocket | null>(null);
  const genRef = useRef(0);
  // Read by the link machine when it decides; changing them never tears down a working link.
  const activeRef = useRef(nodeActive);
  activeRef.current = nodeActive;
  const registryUpRef = useRef(opts.registryUp ?? true);
  registryUpRef.current = opts.registryUp ?? true;
  const targetRef = useRef<DirectTarget | null>(null);
  if (opts.target) targetRef.current = opts.target;
  const pageRef = useRef(opts.page);
  pageRef.current = opts.page;
  const controlRef = useRef<{ setActive(active: boolean): void } | null>(null);

  useEffect(() => {
    const gen = ++genRef.current;
    const live = () => gen === genRef.current;
    let ws: WebSocket | null = null; // the one agent socket (never two at once)
    let wsRoute: Route = "proxy";
    let wsHealthy = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let openTimer: ReturnType<typeof setTimeout> | undefined;
    let attempt = 0;
    let waiting = false; // node inactive and no working link: dial when it is active again
    const batcher = new FrameBatcher<AgentServerFrame>((frames) => {
      if (live()) dispatch({ kind: "frames", frames });
    });

    const drop = () => {
      clearTimeout(openTimer);
      if (ws) {
        ws.onopen = ws.onmessage = ws.onclose = null;
        ws.close();
      }
      ws = null;
      wsRef.current = null;
    };

    // One socket; `done(healthy)` runs once when it closes or fails to open in time.
    const dial = (url: string, r: Route, done: (healthy: boolean) => void, openTimeoutMs = 0) => {
      if (!live()) return;
      dispatch({ kind: "status", status: "connecting" });
      let s: WebSocket;
      try {
        s = new WebSocket(url, subprotocols(token));
      } catch {
        done(false); // e.g. a ws:// URL from an https page
        return;
      }
      ws = s;
      wsRef.current = s;
      wsRoute = r;
      wsHealthy = false;
      if (openTimeoutMs > 0) {
        openTimer = setTimeout(() => {
          if (ws !== s || s.readyState === WebSocket.OPEN) return;
          drop();
          done(false);
        }, openTimeoutMs);
      }
      s.onopen = () => {
        if (!live() || ws !== s) return;
        clearTimeout(openTimer);
        // Unacknowledged prompts go out again with the same id; the bridge acks a repeat without
        // giving it to pi twice.
        for (const p of viewRef.current.pending) if (p.state === "sending") s.send(promptFrame(p));
      };
      s.onmessage = (ev) => {
        if (!live() || ws !== s || typeof ev.data !== "string") return;
        try {
          const f = asAgentFrame(JSON.parse(ev.data));
          if (!f) return;
          if (f.type === "init_state" && !wsHealthy) {
            wsHealthy = true;
            attempt = 0;
            setRoute(r);
          }
          batcher.push(f);
        } catch {
          /* not JSON: ignore, the bridge never sends that */
        }
      };
      s.onclose = () => {
        if (!live() || ws !== s) return;
        const healthy = wsHealthy;
        ws = null;
        wsRef.current = null;
        clearTimeout(openTimer);
        setRoute(null);
        dispatch({ kind: "status", status: "lost" });
        done(healthy);
      };
    };

    const proxy = () => dial(agentUrl(endpoints, nodeId), "proxy", (healthy) => ended("proxy", healthy));
    const direct = (i = 0) => {
      const target = targetRef.current;
      const page = pageRef.current ?? (typeof location !== "undefined" ? location : { hostname: "", protocol: "http:" });
      const urls = target ? directUrls(page.hostname, target, page.protocol) : [];
      if (i >= urls.length) return ended("direct", false);
      dial(urls[i], "direct", (healthy) => (healthy ? ended("direct", true) : direct(i + 1)), DIRECT_OPEN_TIMEOUT_MS);
    };

    const ended = (r: Route, healthy: boolean) => {
      if (!live()) return;
      if (!activeRef.current) {
        waiting = true; // the registry says the node is gone: wait for it instead of dialling
        dispatch({ kind: "status", status: "lost" });
        return;
      }
      if (healthy) attempt = 0;
      const step = nextStep({ route: r, opened: healthy, registryUp: registryUpRef.current, target: targetRef.current, attempt });
      if (step.route === "proxy") attempt++; // a direct try does not cost a backoff step: 1, 2, 4 s… as before
      clearTimeout(timer);
      const go = step.route === "direct" ? () => direct() : proxy;
      if (step.delayMs <= 0) go();
      else timer = setTimeout(go, step.delayMs);
    };

    controlRef.current = {
      setActive(active: boolean) {
        if (!live()) return;
        if (active) {
          if (!waiting) return;
          waiting = false;
          attempt = 0;
          clearTimeout(timer);
          proxy();
          return;
        }
        // A working direct link stays: a restarted hypivisor lists the node only once the bridge
        // registered again, and the link itself says when the agent is really gone.
        if (ws && wsRoute === "direct" && wsHealthy) return;
        clearTimeout(timer);
        drop();
        setRoute(null);
        waiting = true;
        dispatch({ kind: "status", status: "lost" });
      },
    };

    if (activeRef.current) proxy();
    else {
      waiting = true;
      dispatch({ kind: "status", status: "lost" });
    }

    return () => {
      genRef.current++;
      controlRef.current = null;
      batcher.cancel();
      clearTimeout(timer);
      drop();
    };
  }, [endpoints, token, nodeId]);

  useEffect(() => {
    controlRef.current?.setActive(nodeActive);
  }, [nodeActive]);

  const send = useCallback((frame: ClientMessage) => {
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
    route,
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
  const frame: PromptMsg = { type: "prompt", id: p.id, text: p.text };
  if (p.attachments.length) frame.attachments = p.attachments;
  if (p.deliverAs) frame.deliver_as = p.deliverAs;
  return JSON.stringify(frame);
}
