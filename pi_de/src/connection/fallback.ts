// Where the agent link goes next: through the hypivisor's proxy (`/ws/agent/<id>`), or straight to
// the bridge's own port when the hypivisor is unreachable. Pure functions, so the rules are tested
// without sockets (fallback.test.ts); useAgentLink only carries them out.
//
// Rules:
// - the proxy is the normal route; after a proxy link that worked drops, we go back to it
//   (with backoff) as long as the registry socket is up;
// - the hypivisor counts as unreachable when the registry socket is down, or when a proxy attempt
//   failed before it opened; then, if we know the agent's port, we try it directly at once;
// - direct candidates: the page's hostname (hypivisor, dashboard and agents on one machine, the
//   default: bridges bind 127.0.0.1), then the node's machine name; one at a time, each with a
//   short open timeout, so there is never more than one agent socket;
// - a working direct link is kept while it works, also after the hypivisor came back (switching
//   would only cost a fresh init_state); when it drops we start over from these rules;
// - when every direct candidate failed, the proxy is retried with backoff, then direct again;
// - a clean hypivisor stop counts as a crash: nodes reported offline just before the registry
//   socket closed (whatever its close code) are listed active again (offlineWhileGoingAway).

import { backoffDelay } from "./backoff";

export type Route = "proxy" | "direct";

/** What the agent is, as far as the direct route needs it (kept from the roster while it is away). */
export interface DirectTarget {
  port: number;
  machine: string;
}

export interface LinkOutcome {
  /** The route of the socket that just closed (or failed to open). */
  route: Route;
  /** It delivered an init_state before it closed (a socket that opened and died at once did not). */
  opened: boolean;
  /** The registry socket is connected right now. */
  registryUp: boolean;
  /** Port and machine of the node (null: never seen in the roster, so no direct route). */
  target: DirectTarget | null;
  /** Consecutive failed attempts so far (reset when a link opens). */
  attempt: number;
}

export type NextStep = { route: "proxy"; delayMs: number } | { route: "direct"; delayMs: number };

/** Open timeout of one direct candidate: a dead host must not hold up the next one. */
export const DIRECT_OPEN_TIMEOUT_MS = 1500;

export function nextStep(o: LinkOutcome): NextStep {
  const canDirect = !!o.target && Number.isInteger(o.target.port) && o.target.port > 0;
  if (o.route === "proxy") {
    const hypivisorDown = !o.registryUp || !o.opened;
    if (hypivisorDown && canDirect) return { route: "direct", delayMs: 0 };
    return { route: "proxy", delayMs: backoffDelay(o.attempt) };
  }
  // A direct link (or every direct candidate) ended.
  // The agent blipped while the hypivisor is still away: the bridge is the only way back.
  if (o.opened && !o.registryUp && canDirect) return { route: "direct", delayMs: backoffDelay(o.attempt) };
  return { route: "proxy", delayMs: o.opened && o.registryUp ? 0 : backoffDelay(o.attempt) };
}

/**
 * `ws://<host>:<port>/` for each candidate host, in order, without repeats. None from an https page:
 * the bridge speaks plain ws, which a secure page may not open (mixed content).
 */
export function directUrls(pageHostname: string, target: DirectTarget, pageProtocol = "http:"): string[] {
  if (pageProtocol === "https:") return [];
  const hosts: string[] = [];
  for (const h of [pageHostname, target.machine]) {
    const host = (h || "").trim();
    if (!host || hosts.includes(host)) continue;
    hosts.push(host);
  }
  return hosts.map((h) => `ws://${h.includes(":") && !h.startsWith("[") ? `[${h}]` : h}:${target.port}/`);
}

/**
 * How shortly before the registry socket closes a `node_offline` counts as the hypivisor going away
 * rather than the agent: a stopping hypivisor (SIGTERM, Ctrl+C) may report each bridge's socket closing
 * as that node going offline just before its own socket closes. The agents still run, so those nodes
 * are listed active again and their direct links are tried, exactly as after a crash.
 */
export const GOING_AWAY_WINDOW_MS = 3000;

/** The nodes whose `node_offline` (id → time it arrived) came within the window before `closedAt`. */
export function offlineWhileGoingAway(offlineAt: ReadonlyMap<string, number>, closedAt: number): string[] {
  const ids: string[] = [];
  for (const [id, at] of offlineAt) if (closedAt - at <= GOING_AWAY_WINDOW_MS && at <= closedAt) ids.push(id);
  return ids;
}
