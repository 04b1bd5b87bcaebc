// Registry push events → the roster. Nodes are keyed by id only: many agents share a folder, so
// nothing here ever dedupes by cwd.
import type { RegistryEvent } from "../protocol/frames";
import type { NodeInfo } from "../protocol/types";

/** An agent whose pi quit (its bridge deregistered it): not a lost link, it will not come back. */
export interface ExitedNode {
  node: NodeInfo;
  /** When the page learned it (ms since the epoch). */
  at: number;
}

export interface RosterState {
  nodes: Record<string, NodeInfo>;
  /** Insertion order, so cards don't shuffle when a node updates. */
  order: string[];
  protocolVersion: string | null;
  /** The last MAX_EXITED agents that exited, by id, so an open conversation can say so and offer a resume. */
  exited: Record<string, ExitedNode>;
}

export const MAX_EXITED = 50;

export const emptyRoster: RosterState = { nodes: {}, order: [], protocolVersion: null, exited: {} };

export type { RegistryEvent };

/** A registry event as the page received it: node_removed carries the time it arrived. */
export type RosterAction = RegistryEvent & { receivedAt?: number };

function upsert(s: RosterState, node: NodeInfo): RosterState {
  const known = node.id in s.nodes;
  return {
    ...s,
    nodes: { ...s.nodes, [node.id]: node },
    order: known ? s.order : [...s.order, node.id],
    exited: node.id in s.exited ? without(s.exited, node.id) : s.exited,
  };
}

/** Many upserts in one copy (a large roster's chunk): `upsert` per node would copy the roster per node. */
function upsertAll(s: RosterState, list: NodeInfo[]): RosterState {
  if (list.length === 0) return s;
  const nodes = { ...s.nodes };
  const order = [...s.order];
  let exited = s.exited;
  for (const n of list) {
    if (!(n.id in nodes)) order.push(n.id);
    nodes[n.id] = n;
    if (n.id in exited) exited = without(exited, n.id);
  }
  return { ...s, nodes, order, exited };
}

function without<T>(r: Record<string, T>, id: string): Record<string, T> {
  const { [id]: _gone, ...rest } = r;
  return rest;
}

function addExited(exited: Record<string, ExitedNode>, node: NodeInfo, at: number): Record<string, ExitedNode> {
  const next = { ...exited, [node.id]: { node, at } };
  const ids = Object.keys(next);
  if (ids.length <= MAX_EXITED) return next;
  ids.sort((a, b) => next[a].at - next[b].at);
  for (const id of ids.slice(0, ids.length - MAX_EXITED)) delete next[id];
  return next;
}

export function rosterReducer(s: RosterState, e: RosterAction): RosterState {
  switch (e.event) {
    case "init": {
      const nodes: Record<string, NodeInfo> = {};
      for (const n of e.nodes) nodes[n.id] = n;
      let exited = s.exited;
      for (const n of e.nodes) if (n.id in exited) exited = without(exited, n.id);
      return { nodes, order: e.nodes.map((n) => n.id), protocolVersion: e.protocol_version ?? null, exited };
    }
    case "node_joined":
    case "node_updated":
      return upsert(s, e.node);
    case "nodes_joined":
      return upsertAll(s, e.nodes);
    case "node_offline": {
      const n = s.nodes[e.id];
      if (!n) return s;
      return { ...s, nodes: { ...s.nodes, [e.id]: { ...n, status: "offline", activity: "idle" } } };
    }
    case "node_removed": {
      const gone = s.nodes[e.id];
      if (!gone) return s;
      // deregistered = its bridge said goodbye because pi exited; evicted, ttl and ghost are not exits
      const exited = e.reason === "deregistered" ? addExited(s.exited, gone, e.receivedAt ?? Date.now()) : s.exited;
      return { ...s, nodes: without(s.nodes, e.id), order: s.order.filter((id) => id !== e.id), exited };
    }
    default:
      return s;
  }
}

export interface ProjectGroup {
  cwd: string;
  name: string;
  nodes: NodeInfo[];
}

export function folderName(cwd: string): string {
  const parts = cwd.split(/[\\/]+/).filter(Boolean);
  return parts[parts.length - 1] ?? cwd;
}

/** Groups by the full cwd (two folders both called `app` stay apart), sorted by folder name. */
export function groupByProject(s: RosterState): ProjectGroup[] {
  const groups = new Map<string, ProjectGroup>();
  for (const id of s.order) {
    const n = s.nodes[id];
    if (!n) continue;
    let g = groups.get(n.cwd);
    if (!g) groups.set(n.cwd, (g = { cwd: n.cwd, name: folderName(n.cwd), nodes: [] }));
    g.nodes.push(n);
  }
  return [...groups.values()].sort((a, b) => a.name.localeCompare(b.name) || a.cwd.localeCompare(b.cwd));
}
