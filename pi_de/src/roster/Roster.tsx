import { useState, type ReactNode } from "react";
import type { MachineInfo, NodeInfo } from "../protocol/types";
import { displayText } from "../model/displayText";
import { folderName, groupByProject, type RosterState } from "../model/rosterReducer";
import { SafeText } from "../ui/SafeText";
import { useNow } from "../ui/useNow";
import { activityText, severalMachines, shortModel } from "../model/nodeMeta";
import { agentTitles, baseTitle } from "../model/agentTitles";
import { budgetBadge } from "../budget/format";
import { NodeMenu } from "./NodeMenu";
import type { NodeActions } from "./useNodeActions";

interface Props {
  roster: RosterState;
  selected: string | null;
  onSelect(id: string): void;
  /** The hypivisor's machines (list_machines); with more than one, the roster groups by machine, then folder. */
  machines?: MachineInfo[];
  /** Rename and stop from a card's ⋯ menu; without them the cards have no menu. */
  actions?: NodeActions;
}

/** The machines to show as groups: the listed ones (own first), then any an agent names that the list lacks. */
export function machineGroups(roster: RosterState, machines: MachineInfo[]): { name: string; info: MachineInfo | null }[] {
  const out = machines.map((m) => ({ name: m.name, info: m as MachineInfo | null }));
  const seen = new Set(out.map((m) => m.name));
  const extra = new Set<string>();
  for (const id of roster.order) {
    const n = roster.nodes[id];
    if (n && !seen.has(n.machine)) extra.add(n.machine);
  }
  for (const name of [...extra].sort()) out.push({ name, info: null });
  return out;
}

export function Roster({ roster, selected, onSelect, machines = [], actions }: Props) {
  const [collapsed, setCollapsed] = useState<Record<string, boolean>>({});
  const groups = groupByProject(roster);
  const several = severalMachines(Object.values(roster.nodes));
  const now = useNow();
  const byMachine = machineGroups(roster, machines);
  const titles = agentTitles(Object.values(roster.nodes));
  const toggle = (key: string) => setCollapsed((c) => ({ ...c, [key]: !c[key] }));
  const folders = (gs: ReturnType<typeof groupByProject>, prefix: string) =>
    gs.map((g) => {
      const key = prefix + g.cwd;
      return (
        <div className="group" key={key} data-testid="roster-group">
          <button type="button" className="group-head" aria-expanded={!collapsed[key]} title={displayText(g.cwd)} onClick={() => toggle(key)}>
            <span className="chev">{collapsed[key] ? "▸" : "▾"}</span>
            <SafeText className="group-name" text={g.name} />
            {collapsed[key] && waitingIn(g.nodes) > 0 && <span className="waiting-tag" data-testid="group-waiting">waiting · {waitingIn(g.nodes)}</span>}
            <span className="badge">{g.nodes.length}</span>
          </button>
          {!collapsed[key] && g.nodes.map((n) => <NodeCard key={n.id} n={n} title={titles[n.id] ?? nodeTitle(n)} selected={n.id === selected} onSelect={onSelect} several={several} now={now} actions={actions} />)}
        </div>
      );
    });
  if (byMachine.length > 1) {
    return (
      <nav className="roster" aria-label="Agents" data-testid="roster">
        {byMachine.map(({ name, info }) => {
          const mine = groupByProject({ ...roster, order: roster.order.filter((id) => roster.nodes[id]?.machine === name) });
          const online = info ? info.online : true;
          const key = `machine:${name}`;
          return (
            <section className={`machine-group${online ? "" : " offline"}`} key={key} data-testid="machine-group" data-machine={name} data-online={online}>
              <button type="button" className="machine-head" aria-expanded={!collapsed[key]} onClick={() => toggle(key)} title={info?.os ? displayText(info.os) : undefined}>
                <span className="chev">{collapsed[key] ? "▸" : "▾"}</span>
                <SafeText className="machine-name" text={name} />
                <span className={`machine-state ${online ? "on" : "off"}`} data-testid="machine-state">
                  {online ? "online" : "offline"}
                </span>
                <span className="badge">{mine.reduce((sum, g) => sum + g.nodes.length, 0)}</span>
              </button>
              {!collapsed[key] && (mine.length > 0 ? folders(mine, `${name}\u0000`) : <div className="muted machine-none">no agents</div>)}
            </section>
          );
        })}
      </nav>
    );
  }
  if (groups.length === 0) return <div className="roster-empty muted">No agents yet. Start pi with the pi_socket extension, or spawn one.</div>;
  return (
    <nav className="roster" aria-label="Agents" data-testid="roster">
      {folders(groups, "")}
    </nav>
  );
}

/** Tool calls waiting for a decision across these agents (offline agents ask nobody). */
function waitingIn(nodes: NodeInfo[]): number {
  return nodes.reduce((sum, n) => sum + (n.status === "offline" ? 0 : (n.pending_approvals ?? 0)), 0);
}

/** What a card and the header call an agent: pi's session name, else its folder (never its id). */
export const nodeTitle = baseTitle;

function NodeCard(props: { n: NodeInfo; title: string; selected: boolean; onSelect(id: string): void; several: boolean; now: number; actions?: NodeActions }) {
  const { n, actions } = props;
  const card = <NodeButton {...props} />;
  if (!actions) return card;
  return (
    <div className="node-row">
      {card}
      <NodeMenu
        title={props.title}
        sessionName={n.session_name ?? null}
        inTmux={!!n.tmux_session}
        disabled={n.status === "offline"}
        onStop={() => actions.stop(n.id)}
        onRename={(name) => actions.rename(n.id, name)}
      />
    </div>
  );
}

function NodeButton({ n, title, selected, onSelect, several, now }: { n: NodeInfo; title: string; selected: boolean; onSelect(id: string): void; several: boolean; now: number }) {
  const offline = n.status === "offline";
  const named = !!n.session_name?.trim();
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
          <SafeText text={title} />
          {working && <span className="working-tag">working</span>}
        </span>
        {(waiting > 0 || badge || !!n.unread) && (
          <span className="node-tags">
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
          </span>
        )}
        <span className="node-meta">
          {joined([
            named && <SafeText key="f" text={folderName(n.cwd)} />,
            n.git_branch && (
              <span key="b" className="branch" data-testid="branch" title="git branch">
                ⎇ <SafeText text={n.git_branch} />
              </span>
            ),
            n.worktree && (
              <span key="w" className="worktree-tag" data-testid="worktree-tag" title={`a git worktree: ${displayText(n.worktree)}${n.worktree_of ? ` (of ${displayText(n.worktree_of)})` : ""}`}>
                worktree
              </span>
            ),
            several && (
              <span key="m" data-testid="machine">
                <SafeText text={n.machine} />
              </span>
            ),
            n.approval_policy && (
              <span key="p" className="policy-tag" data-testid="policy-tag" title="Tool calls this agent asks a person about (off, writes, all)">
                asks: {n.approval_policy}
              </span>
            ),
          ])}
        </span>
        <span className="node-meta node-stats">
          {joined([
            <span key="a" data-testid="activity-time">
              {activityText(n, now)}
            </span>,
            <span key="m" title={n.model ? displayText(n.model) : undefined}>
              {n.model ? <SafeText text={shortModel(n.model)} /> : "no model"}
            </span>,
            <span key="c" data-testid="card-cost">
              ${(n.cost ?? 0).toFixed(3)}
            </span>,
          ])}
        </span>
      </span>
    </button>
  );
}

/** The parts that are there, with " · " between them. */
function joined(parts: ReactNode[]): ReactNode[] {
  return parts.filter(Boolean).flatMap((p, i) => (i ? [" · ", p] : [p]));
}
