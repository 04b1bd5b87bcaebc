// The agent link: one WebSocket to `/ws/agent/<nodeId>` through the hypivisor, or, while the hypivisor
// is unreachable, straight to the bridge's port (rules in fallback.ts, state machine in agentLink.ts).
// It feeds frames into agentReducer and exposes typed send helpers. Each (endpoints, token, node) gets
// its own machine and only the current one may dispatch, so conversations never mix and two links
// never feed the view at once; a switch of route starts with the new link's init_state, which
// replaces the whole view.
import { useCallback, useEffect, useReducer, useRef, useState } from "react";
import { agentReducer, initialAgentView, type AgentView, type PendingPrompt } from "../model/agentReducer";
import type { AgentServerFrame, ClientMessage } from "../protocol/frames";
import type { ApprovalDecisionMsg, ApprovalRule, PromptMsg } from "../protocol/types";
import type { ApprovalPolicy } from "../model/approvals";
import { agentUrl, type Endpoints } from "./endpoints";
import { AgentLinkMachine } from "./agentLink";
import { directUrls, type DirectTarget, type Route } from "./fallback";
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
  /** Answer a waiting tool call (specs/approvals.md); its buttons wait for approval_resolved or an error. */
  decideApproval(id: string, decision: Omit<ApprovalDecisionMsg, "type" | "id">): void;
  /** Replace the agent's policy, and its allow rules when given. */
  setApprovalPolicy(policy: ApprovalPolicy, rules?: ApprovalRule[]): void;
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
  // Read by the link machine when it decides; changing them never tears down a working link.
  const activeRef = useRef(nodeActive);
  activeRef.current = nodeActive;
  const registryUpRef = useRef(opts.registryUp ?? true);
  registryUpRef.current = opts.registryUp ?? true;
  const targetRef = useRef<DirectTarget | null>(null);
  if (opts.target) targetRef.current = opts.target;
  const pageRef = useRef(opts.page);
  pageRef.current = opts.page;
  const linkRef = useRef<AgentLinkMachine | null>(null);

  useEffect(() => {
    let live = true;
    const batcher = new FrameBatcher<AgentServerFrame>((frames) => {
      if (live) dispatch({ kind: "frames", frames, now: Date.now() });
    });
    const link = new AgentLinkMachine({
      open: (url) => new WebSocket(url, subprotocols(token)),
      proxyUrl: agentUrl(endpoints, nodeId),
      directUrls: () => {
        const target = targetRef.current;
        const page = pageRef.current ?? (typeof location !== "undefined" ? location : { hostname: "", protocol: "http:" });
        return target ? directUrls(page.hostname, target, page.protocol) : [];
      },
      isActive: () => activeRef.current,
      registryUp: () => registryUpRef.current,
      target: () => targetRef.current,
      onFrame: (f) => batcher.push(f),
      onStatus: (status) => dispatch({ kind: "status", status }),
      onRoute: setRoute,
      onOpen: (send) => {
        for (const p of viewRef.current.pending) if (p.state === "sending") send(promptFrame(p));
      },
    });
    linkRef.current = link;
    link.start();
    return () => {
      live = false;
      if (linkRef.current === link) linkRef.current = null;
      batcher.cancel();
      link.stop();
    };
  }, [endpoints, token, nodeId]);

  useEffect(() => {
    linkRef.current?.setActive(nodeActive);
  }, [nodeActive]);

  const send = useCallback((frame: ClientMessage) => linkRef.current?.send(JSON.stringify(frame)) ?? false, []);

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
      linkRef.current?.send(promptFrame(p));
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

  const decideApproval = useCallback(
    (id: string, d: Omit<ApprovalDecisionMsg, "type" | "id">) => {
      if (send({ type: "approval_decision", id, ...d })) dispatch({ kind: "approval_answered", id });
      else dispatch({ kind: "local_error", message: "Not connected to the agent: your decision was not sent. It is asked again when the link is back." });
    },
    [send],
  );
  const setApprovalPolicy = useCallback(
    (policy: ApprovalPolicy, rules?: ApprovalRule[]) => {
      if (!send(rules ? { type: "set_approval_policy", policy, rules } : { type: "set_approval_policy", policy }))
        dispatch({ kind: "local_error", message: "Not connected to the agent: the approval policy was not changed." });
    },
    [send],
  );

  return {
    view,
    route,
    decideApproval,
    setApprovalPolicy,
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
