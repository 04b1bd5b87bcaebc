import { useState } from "react";
import type { NodeInfo } from "../protocol/types";
import { displayText } from "../model/displayText";
import { folderName, groupByProject, type RosterState } from "../model/rosterReducer";
import { SafeText } from "../ui/SafeText";

interface Props {
  roster: RosterState;
  selected: string | null;
  onSelect(id: string): void;
}

export function Roster({ roster, selected, onSelect }: Props) {
  const [collapsed, setCollapsed] = useState<Record<string, boolean>>({});
  const groups = groupByProject(roster);
  if (groups.length === 0) return <div className="roster-empty muted">No agents yet. Start pi with the pi_socket extension, or spawn one.</div>;
  return (
    <nav className="roster" aria-label="Agents" data-testid="roster">
      {groups.map((g) => (
        <div className="group" key={g.cwd} data-testid="roster-group">
          <button type="button" className="group-head" aria-expanded={!collapsed[g.cwd]} title={displayText(g.cwd)} onClick={() => setCollapsed((c) => ({ ...c, [g.cwd]: !c[g.cwd] }))}>
            <span className="chev">{collapsed[g.cwd] ? "▸" : "▾"}</span>
            <SafeText className="group-name" text={g.name} />
            <span className="badge">{g.nodes.length}</span>
          </button>
          {!collapsed[g.cwd] && g.nodes.map((n) => <NodeCard key={n.id} n={n} selected={n.id === selected} onSelect={onSelect} />)}
        </div>
      ))}
    </nav>
  );
}

function NodeCard({ n, selected, onSelect }: { n: NodeInfo; selected: boolean; onSelect(id: string): void }) {
  const offline = n.status === "offline";
  const working = !offline && n.activity === "working";
  return (
    <button
      type="button"
      className={`node${selected ? " selected" : ""}${offline ? " offline" : ""}`}
      data-testid="node-card"
      data-node-id={n.id}
      data-activity={offline ? "offline" : (n.activity ?? "idle")}
      aria-disabled={offline}
      title={offline ? "Agent offline: it will reappear when its pi reconnects" : displayText(n.cwd)}
      onClick={() => !offline && onSelect(n.id)}
    >
      <span className={`dot ${offline ? "off" : working ? "working" : "idle"}`} aria-label={offline ? "offline" : working ? "working" : "idle"} />
      <span className="node-main">
        <span className="node-title">
          {n.session_name ? <SafeText text={n.session_name} /> : "unnamed session"}
          {working && <span className="working-tag">working</span>}
        </span>
        <span className="node-meta">
          <SafeText text={folderName(n.cwd)} /> · <SafeText text={n.machine} />:{n.port} · pid {n.pid ?? "?"}
        </span>
        <span className="node-meta">
          {n.model ? <SafeText text={n.model} /> : "no model"} · ${(n.cost ?? 0).toFixed(3)}
        </span>
      </span>
    </button>
  );
}
