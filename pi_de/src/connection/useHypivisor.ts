// The registry link (`/ws`): roster push events plus RPC (list_directories, spawn_agent).
// Phases: connecting → connected; a first connection that fails shows the error screen (or the token
// prompt after a 401); a drop after that shows the reconnect banner. Both retry with backoff, and the
// roster is kept meanwhile, so open agent links are not disturbed by a registry outage.
// Fail-over (specs/cluster.md §8): the page's own hypivisor may name its peers in `init`; when the link to the
// current one fails the next of [own, ...peers] is tried (failover.ts: at once, then the backoff across the
// list; sticky), and `endpoints` says which hypivisor the link is on, so agent links open through it too.
import { useCallback, useEffect, useMemo, useReducer, useRef, useState } from "react";
import type { IndexProgressEvent, ListAttentionResult, ListMachinesResult, MachineInfo, NodeInfo, RpcResponse, SearchResultsEvent } from "../protocol/types";
import { emptyRoster, rosterReducer, type RosterState } from "../model/rosterReducer";
import { emptyInbox, inboxReducer, isInboxEvent, type InboxState } from "../model/inbox";
import { emptyMachines, isMachineEvent, machineList, machinesReducer } from "../model/machines";
import { asRegistryEvent, KNOWN_REGISTRY_EVENTS, noteUnknown } from "../protocol/frames";
import { offlineWhileGoingAway } from "./fallback";
import { registrySocketUrl, registryUrl, type Endpoints } from "./endpoints";
import { endpointsOf, Failover, peerBases } from "./failover";
import { RpcClient, RpcError } from "./rpc";
import { probeUnauthorized, subprotocols } from "./token";

export type HypivisorPhase = "connecting" | "connected" | "failed" | "unauthorized" | "reconnecting";

export interface Hypivisor {
  phase: HypivisorPhase;
  roster: RosterState;
  url: string;
  /** The hypivisor the registry link is on (the page's own one, or a peer it failed over to). */
  endpoints: Endpoints;
  /** The own hypivisor named peers, so the page can fail over (it then fetches its on-demand screens early). */
  canFailOver: boolean;
  /** Seconds until the next automatic attempt (null while connected or connecting). */
  retryInMs: number | null;
  retryNow(): void;
  request<T>(method: string, params?: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  /** The attention inbox: list_attention on every (re)connect, kept current by its events. */
  inbox: InboxState;
  /** The machines (specs/machines.md): list_machines on every (re)connect, kept current by its events. */
  machines: MachineInfo[];
  /** search_results and index_progress frames (the Sessions screen listens while it is open). */
  onSessionEvent(listener: (e: SessionEvent) => void): () => void;
}

export type SessionEvent = SearchResultsEvent | IndexProgressEvent;

export function useHypivisor(endpoints: Endpoints, token: string | null): Hypivisor {
  const [roster, dispatch] = useReducer(rosterReducer, emptyRoster);
  const [inbox, dispatchInbox] = useReducer(inboxReducer, emptyInbox);
  const [machines, dispatchMachines] = useReducer(machinesReducer, emptyMachines);
  const [phase, setPhase] = useState<HypivisorPhase>("connecting");
  const [retryInMs, setRetryInMs] = useState<number | null>(null);
  const [kick, setKick] = useState(0);
  const rpcRef = useRef<RpcClient | null>(null);
  const sessionListeners = useRef(new Set<(e: SessionEvent) => void>());
  // The own hypivisor's peers (WebSocket bases), for the page's life: in memory only, never from the URL or storage.
  const peersRef = useRef<string[]>([]);
  const [currentBase, setCurrentBase] = useState(endpoints.wsBase);
  const [canFailOver, setCanFailOver] = useState(false);
  const current = useMemo(() => endpointsOf(currentBase, endpoints), [currentBase, endpoints]);
  const url = registryUrl(current);

  useEffect(() => {
    let disposed = false;
    let everConnected = false;
    const own = endpoints.wsBase;
    const failover = new Failover([own, ...peersRef.current]);
    let timer: ReturnType<typeof setTimeout> | undefined;
    let ws: WebSocket | null = null;
    // The nodes as the current socket last described them, and when a node_offline arrived for each
    // (see offlineWhileGoingAway); kept here, not read from React state, which may not have rendered yet.
    const known = new Map<string, NodeInfo>();
    const offlineAt = new Map<string, number>();
    setPhase("connecting");

    const connect = () => {
      if (disposed) return;
      setRetryInMs(null);
      const base = failover.url;
      const sock = new WebSocket(registrySocketUrl(endpointsOf(base, endpoints)), subprotocols(token));
      ws = sock;
      const rpc = new RpcClient((f) => sock.send(f));
      rpcRef.current = rpc;
      sock.onopen = () => {
        if (disposed) return;
        everConnected = true;
        failover.succeeded();
        setCurrentBase(base);
        setPhase("connected");
        // The inbox snapshot, on every (re)connect; events that race it are replayed over it (model/inbox.ts).
        // A hypivisor without an inbox answers METHOD_NOT_FOUND: the inbox stays empty.
        dispatchInbox({ event: "sync_started" });
        rpc.request<ListAttentionResult>("list_attention", {}, 60_000).then(
          (result) => !disposed && rpcRef.current === rpc && dispatchInbox({ event: "snapshot", result }),
          () => undefined,
        );
        // A hypivisor without machines answers METHOD_NOT_FOUND: the list stays empty (no grouping, no choice).
        dispatchMachines({ event: "sync_started" });
        rpc.request<ListMachinesResult>("list_machines", {}, 60_000).then(
          (result) => !disposed && rpcRef.current === rpc && dispatchMachines({ event: "snapshot", machines: result.machines }),
          () => undefined,
        );
      };
      sock.onmessage = (ev) => {
        if (disposed || typeof ev.data !== "string") return;
        let f: unknown;
        try {
          f = JSON.parse(ev.data);
        } catch {
          return;
        }
        if (f && typeof f === "object" && rpc.handle(f as RpcResponse)) return;
        const ev0 = (f as { event?: unknown } | null)?.event;
        if (ev0 === "search_results" || ev0 === "index_progress") {
          for (const l of sessionListeners.current) l(f as SessionEvent);
          return;
        }
        const e = asRegistryEvent(f);
        if (!e) return;
        if (!KNOWN_REGISTRY_EVENTS.has(e.event)) return void noteUnknown("registry", e.event);
        if (isInboxEvent(e)) return dispatchInbox(e);
        if (isMachineEvent(e)) return dispatchMachines(e);
        if (e.event === "init") {
          // Peers count only from the page's own hypivisor over a link that carried the token (it names them
          // only then): the token held for the own origin goes to them because that hypivisor named them.
          if (base === own && endpoints.sameOrigin && token) {
            peersRef.current = peerBases(e.peers, own);
            failover.setUrls([own, ...peersRef.current]);
            setCanFailOver(peersRef.current.length > 0);
          }
          known.clear();
          offlineAt.clear();
          for (const n of e.nodes) known.set(n.id, n);
        } else if (e.event === "node_offline") offlineAt.set(e.id, Date.now());
        else if (e.event === "node_joined" || e.event === "node_updated" || e.event === "nodes_joined") {
          for (const n of e.event === "nodes_joined" ? e.nodes : [e.node]) {
            known.set(n.id, n);
            offlineAt.delete(n.id);
          }
        } else if (e.event === "node_removed") {
          known.delete(e.id);
          offlineAt.delete(e.id);
        }
        dispatch(e.event === "node_removed" ? { ...e, receivedAt: Date.now() } : e);
      };
      sock.onclose = async () => {
        if (disposed) return;
        rpc.rejectAll("connection to the hypivisor closed");
        if (rpcRef.current === rpc) rpcRef.current = null;
        // A clean stop (close code 1001, or any close) is handled like a crash: the agents that were
        // reported offline as the hypivisor went away are still running, reachable on their own ports.
        for (const id of offlineWhileGoingAway(offlineAt, Date.now())) {
          const n = known.get(id);
          if (n) dispatch({ event: "node_updated", node: { ...n, status: "active" } });
        }
        offlineAt.clear();
        const delay = failover.failed();
        if (!everConnected) {
          // the token is asked for only by the own hypivisor (it is stored for that one)
          const unauthorized = base === own && (await probeUnauthorized(`${endpoints.httpBase}/ws`, token));
          if (disposed) return;
          setPhase(unauthorized ? "unauthorized" : "failed");
          if (unauthorized) return; // retrying with the same bad token is pointless
        } else {
          setPhase("reconnecting");
        }
        setRetryInMs(delay);
        timer = setTimeout(connect, delay);
      };
    };
    connect();

    return () => {
      disposed = true;
      clearTimeout(timer);
      rpcRef.current?.rejectAll("closed");
      if (ws) {
        ws.onopen = ws.onmessage = ws.onclose = null;
        ws.close();
      }
    };
  }, [endpoints, token, kick]);

  const request = useCallback(<T,>(method: string, params: Record<string, unknown> = {}, timeoutMs?: number) => {
    const rpc = rpcRef.current;
    if (!rpc) return Promise.reject(new RpcError(0, "not connected to the hypivisor"));
    return rpc.request<T>(method, params, timeoutMs);
  }, []);

  const machineArray = useMemo(() => machineList(machines), [machines]);
  const onSessionEvent = useCallback((listener: (e: SessionEvent) => void) => {
    sessionListeners.current.add(listener);
    return () => void sessionListeners.current.delete(listener);
  }, []);
  return { phase, roster, url, endpoints: current, canFailOver, retryInMs, retryNow: useCallback(() => setKick((k) => k + 1), []), request, inbox, machines: machineArray, onSessionEvent };
}

export function isActive(n: NodeInfo | undefined): boolean {
  return !!n && n.status !== "offline";
}
