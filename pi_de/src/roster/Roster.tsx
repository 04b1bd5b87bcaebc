import { useState } from "react";
import type { NodeInfo } from "../protocol/types";
import { displayText } from "../model/displayText";
import { folderName, groupByProject, type RosterState } from "../model/rosterReducer";
import { SafeText } from "../ui/SafeText";
import { useNow } from "../ui/useNow";
import { activityText, severalMachines } from "../model/nodeMeta";
import { budgetBadge } from "../budget/format";

interface Props {
  roster: RosterState;
  selected: string | null;
  onSelect(id: string): void;
}

export function Roster({ roster, selected, onSelect }: Props) {
  const [collapsed, setCollapsed] = useState<Record<string, boolean>>({});
  const groups = groupByProject(roster);
  const several = severalMachines(Object.values(roster.nodes));
  const now = useNow();
  if (groups.length === 0) return <div className="roster-empty muted">No agents yet. Start pi with the pi_socket extension, or spawn one.</div>;
  return (
    <nav className="roster" aria-label="Agents" data-testid="roster">
      {groups.map((g) => (
        <div className="group" key={g.cwd} data-testid="roster-group">
          <button type="button" className="group-head" aria-expanded={!collapsed[g.cwd]} title={displayText(g.cwd)} onClick={() => setCollapsed((c) => ({ ...c, [g.cwd]: !c[g.cwd] }))}>
            <span className="chev">{collapsed[g.cwd] ? "▸" : "▾"}</span>
            <SafeText className="group-name" text={g.name} />
            {collapsed[g.cwd] && waitingIn(g.nodes) > 0 && <span className="waiting-tag" data-testid="group-waiting">waiting · {waitingIn(g.nodes)}</span>}
            <span className="badge">{g.nodes.length}</span>
          </button>
          {!collapsed[g.cwd] && g.nodes.map((n) => <NodeCard key={n.id} n={n} selected={n.id === selected} onSelect={onSelect} several={several} now={now} />)}
        </div>
      ))}
    </nav>
  );
}

/** Tool calls waiting for a decision across these agents (offline agents ask nobody). */
function waitingIn(nodes: NodeInfo[]): number {
  return nodes.reduce((sum, n) => sum + (n.status === "offline" ? 0 : (n.pending_approvals ?? 0)), 0);
}

function NodeCard({ n, selected, onSelect, several, now }: { n: NodeInfo; selected: boolean; onSelect(id: string): void; several: boolean; now: number }) {
  const offline = n.status === "offline";
  const working = !offline && n.activity === "working";
  const waiting = waitingIn([n]);
  const badge = budgetBadge(n);
  return (
    <button
      type="button"
      className={`node${selected ? " selected" : ""}${offline ? " offline" : ""}`}
      data-testid="node-card"
      data-node-id={n.id}
      data-activity={offline ? "offline" : (n.activity ?? "idle")}
      data-waiting={waiting}
      aria-disabled={offline}
      title={offline ? "Agent offline: it will reappear when its pi reconnects" : `${displayText(n.cwd)} · ${displayText(n.machine)}:${n.port} · pid ${n.pid ?? "?"}`}
      onClick={() => !offline && onSelect(n.id)}
    >
      <span className={`dot ${offline ? "off" : working ? "working" : "idle"}`} aria-label={offline ? "offline" : working ? "working" : "idle"} />
      <span className="node-main">
        <span className="node-title">
          {n.session_name ? <SafeText text={n.session_name} /> : "unnamed session"}
          {working && <span className="working-tag">working</span>}
        </span>
        {waiting > 0 && (
          <span className="waiting-tag" data-testid="waiting-badge" title={`${waiting} tool call${waiting === 1 ? "" : "s"} waiting for your decision`}>
            waiting for you{waiting > 1 ? ` · ${waiting}` : ""}
          </span>
        )}
        {badge && (
          <span className={`budget-tag ${badge.level}`} data-testid="budget-badge" data-level={badge.level} title={badge.title}>
            {badge.text}
          </span>
        )}
        {!!n.unread && (
          <span className="unread-tag" data-testid="unread-badge" title={`${n.unread} new message${n.unread === 1 ? "" : "s"} since anyone last read this agent`}>
            {n.unread} new
          </span>
        )}
        <span className="node-meta">
          <SafeText text={folderName(n.cwd)} />
          {n.git_branch && (
            <span className="branch" data-testid="branch" title="git branch">
              {" "}· ⎇ <SafeText text={n.git_branch} />
            </span>
          )}
          {several && (
            <span data-testid="machine">
              {" "}· <SafeText text={n.machine} />
            </span>
          )}
          {n.approval_policy && (
            <span className="policy-tag" data-testid="policy-tag" title="Tool calls this agent asks a person about (off, writes, all)">
              {" "}· asks: {n.approval_policy}
            </span>
          )}
        </span>
        <span className="node-meta">
          <span data-testid="activity-time">{activityText(n, now)}</span> · {n.model ? <SafeText text={n.model} /> : "no model"} · ${(n.cost ?? 0).toFixed(3)}
        </span>
      </span>
    </button>
  );
}
