// The agent link: one WebSocket to `/ws/agent/<nodeId>` through the hypivisor, or, while the hypivisor
// is unreachable, straight to the bridge's port (rules in fallback.ts, state machine in agentLink.ts).
// It feeds frames into agentReducer and exposes typed send helpers. Each (endpoints, token, node) gets
// its own machine and only the current one may dispatch, so conversations never mix and two links
// never feed the view at once; a switch of route starts with the new link's init_state, which
// replaces the whole view.
import { useCallback, useEffect, useReducer, useRef, useState } from "react";
import { agentReducer, initialAgentView, type AgentView, type PendingPrompt } from "../model/agentReducer";
import type { AgentServerFrame, ClientMessage } from "../protocol/frames";
import type { ApprovalDecisionMsg, ApprovalRule, PromptMsg, RunCommandMsg, SetThinkingLevelMsg } from "../protocol/types";
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
  /** While pi works a prompt is a follow-up held here until the run ends (editable, cancellable), or with
   *  `deliverAs: "steer"` goes to pi's queue at once. `noEcho`: an extension command (pi echoes no message). */
  sendPrompt(text: string, attachments?: PendingPrompt["attachments"], opts?: SendOptions): void;
  editHeld(id: string, text: string): void;
  dropHeld(id: string): void;
  listModels(): void;
  setModel(provider: string, id: string): void;
  setThinkingLevel(level: string): void;
  /** pi's /compact, /new or /reload (run_command); the view's `command` shows it until answered. */
  runCommand(name: RunCommandMsg["name"], args?: string): void;
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

export interface SendOptions {
  deliverAs?: "steer" | "followUp";
  noEcho?: boolean;
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
    (text: string, attachments: PendingPrompt["attachments"] = [], opts: SendOptions = {}) => {
      const running = viewRef.current.running;
      const steer = running && opts.deliverAs === "steer";
      const p: PendingPrompt = {
        id: newId(),
        text,
        attachments,
        // While pi works: a steer goes to pi's queue now; a follow-up waits here for the run to end.
        deliverAs: steer ? "steer" : running ? "followUp" : undefined,
        state: running && !steer ? "held" : "sending",
        ...(opts.noEcho ? { noEcho: true } : {}),
      };
      dispatch({ kind: "send", prompt: p });
      if (p.state === "sending") linkRef.current?.send(promptFrame(p));
    },
    [],
  );

  // The run ended (or the page joined an idle pi): held follow-ups go now, oldest first, as ordinary prompts
  // (pi queues the second and later ones itself, as follow-ups of the run the first one starts).
  const heldIds = view.pending.filter((p) => p.state === "held").map((p) => p.id).join(",");
  useEffect(() => {
    const v = viewRef.current;
    if (!heldIds || v.running || v.status !== "open" || !v.initialized) return;
    const held = v.pending.filter((p) => p.state === "held");
    dispatch({ kind: "release_held", ids: held.map((p) => p.id) });
    for (const p of held) linkRef.current?.send(promptFrame({ ...p, deliverAs: undefined, state: "sending" }));
  }, [heldIds, view.running, view.status, view.initialized]);

  // pi's models and thinking level: asked for on every init_state (a new session may have a new model), of a
  // bridge that speaks it (an older one would answer "unknown type").
  useEffect(() => {
    if (view.initSeq > 0 && viewRef.current.remoteCommands) send({ type: "list_models" });
  }, [view.initSeq, send]);

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

  const runCommand = useCallback(
    (name: RunCommandMsg["name"], args?: string) => {
      const id = newId();
      const frame: RunCommandMsg = args && args.trim() ? { type: "run_command", id, name, args } : { type: "run_command", id, name };
      if (send(frame)) dispatch({ kind: "command_sent", id, name });
      else dispatch({ kind: "local_error", message: `Not connected to the agent: /${name} was not sent.` });
    },
    [send],
  );

  return {
    view,
    route,
    runCommand,
    editHeld: useCallback((id: string, text: string) => dispatch({ kind: "edit_held", id, text }), []),
    dropHeld: useCallback((id: string) => dispatch({ kind: "drop_held", id }), []),
    listModels: useCallback(() => void send({ type: "list_models" }), [send]),
    setModel: useCallback((provider: string, id: string) => void send({ type: "set_model", provider, id }), [send]),
    setThinkingLevel: useCallback((level: string) => void send({ type: "set_thinking_level", level: level as SetThinkingLevelMsg["level"] }), [send]),
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
