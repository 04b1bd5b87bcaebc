// Registry push events → the roster. Nodes are keyed by id only: many agents share a folder, so
// nothing here ever dedupes by cwd.
import type { RegistryEvent } from "../protocol/frames";
import type { NodeInfo } from "../protocol/types";

export interface RosterState {
  nodes: Record<string, NodeInfo>;
  /** Insertion order, so cards don't shuffle when a node updates. */
  order: string[];
  protocolVersion: string | null;
}

export const emptyRoster: RosterState = { nodes: {}, order: [], protocolVersion: null };

export type { RegistryEvent };

function upsert(s: RosterState, node: NodeInfo): RosterState {
  const known = node.id in s.nodes;
  return {
    ...s,
    nodes: { ...s.nodes, [node.id]: node },
    order: known ? s.order : [...s.order, node.id],
  };
}

export function rosterReducer(s: RosterState, e: RegistryEvent): RosterState {
  switch (e.event) {
    case "init": {
      const nodes: Record<string, NodeInfo> = {};
      for (const n of e.nodes) nodes[n.id] = n;
      return { nodes, order: e.nodes.map((n) => n.id), protocolVersion: e.protocol_version ?? null };
    }
    case "node_joined":
    case "node_updated":
      return upsert(s, e.node);
    case "node_offline": {
      const n = s.nodes[e.id];
      if (!n) return s;
      return { ...s, nodes: { ...s.nodes, [e.id]: { ...n, status: "offline", activity: "idle" } } };
    }
    case "node_removed": {
      if (!(e.id in s.nodes)) return s;
      const { [e.id]: _gone, ...rest } = s.nodes;
      return { ...s, nodes: rest, order: s.order.filter((id) => id !== e.id) };
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
