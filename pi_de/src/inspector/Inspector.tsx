import { memo } from "react";
import type { AgentView } from "../model/agentReducer";
import type { ApprovalPolicy } from "../model/approvals";
import type { ApprovalRule } from "../protocol/types";
import { SafeText } from "../ui/SafeText";
import { ApprovalSettings } from "./ApprovalSettings";
import { TmuxAttach } from "./TmuxAttach";
import { WorktreeSection, type WorktreeInfo } from "./WorktreeSection";

const fmt = (n: number | null | undefined) => (n == null ? "–" : n >= 10_000 ? `${(n / 1000).toFixed(1)}k` : String(n));

export type InspectorData = Pick<AgentView, "tools" | "commands" | "model" | "contextUsage" | "tokens" | "cost" | "approvals"> & { connected: boolean };

interface Props {
  view: InspectorData;
  onClose?: () => void;
  /** Change the agent's approval policy and rules; without it the approvals section is not shown. */
  onSetPolicy?: (policy: ApprovalPolicy, rules?: ApprovalRule[]) => void;
  /** A spawned agent's tmux session and its machine: the inspector shows how to attach to it. */
  tmuxSession?: string | null;
  machine?: string;
  /** The git worktree the agent runs in (listed with it), and how to remove it on request. */
  worktree?: WorktreeInfo | null;
  onRemoveWorktree?(path: string, force: boolean): Promise<unknown>;
}

/** Memoised on the fields it shows, so streamed frames (which only touch the conversation) skip it. */
export const Inspector = memo(function Inspector({ view, onClose, onSetPolicy, tmuxSession, machine, worktree, onRemoveWorktree }: Props) {
  const cu = view.contextUsage;
  const pct = cu?.percent ?? (cu?.tokens && cu?.context_window ? (100 * cu.tokens) / cu.context_window : null);
  const t = view.tokens;
  return (
    <aside className="inspector" data-testid="inspector" aria-label="Agent inspector">
      <div className="inspector-head">
        <h2>Inspector</h2>
        {onClose && (
          <button type="button" className="icon-btn drawer-close" onClick={onClose} aria-label="Close inspector">
            ✕
          </button>
        )}
      </div>
      {tmuxSession && <TmuxAttach session={tmuxSession} machine={machine ?? "its machine"} />}
      {worktree && <WorktreeSection worktree={worktree} onRemove={onRemoveWorktree} />}
      <section>
        <h3>Model</h3>
        <div className="mono">{view.model ? <SafeText text={view.model} /> : "unknown"}</div>
      </section>
      {onSetPolicy && <ApprovalSettings approvals={view.approvals} toolNames={view.tools.map((t) => t.name)} connected={view.connected} onSetPolicy={onSetPolicy} />}
      <section>
        <h3>Context</h3>
        {pct != null ? (
          <>
            <div className="meter" role="meter" aria-valuenow={Math.round(pct)} aria-valuemin={0} aria-valuemax={100}>
              <div style={{ width: `${Math.min(100, pct)}%` }} />
            </div>
            <div className="muted">
              {fmt(cu?.tokens)} / {fmt(cu?.context_window)} tokens ({pct.toFixed(1)}%)
            </div>
          </>
        ) : (
          <div className="muted">not reported yet</div>
        )}
      </section>
      <section>
        <h3>Usage</h3>
        <table className="kv">
          <tbody>
            <tr><td>input</td><td>{fmt(t?.input)}</td></tr>
            <tr><td>output</td><td>{fmt(t?.output)}</td></tr>
            <tr><td>cache read</td><td>{fmt(t?.cache_read)}</td></tr>
            <tr><td>cache write</td><td>{fmt(t?.cache_write)}</td></tr>
            <tr><td>total</td><td>{fmt(t?.total)}</td></tr>
            <tr><td>cost</td><td>${view.cost.toFixed(4)}</td></tr>
          </tbody>
        </table>
      </section>
      <section>
        <h3>Tools ({view.tools.length})</h3>
        <ul className="inspector-list">
          {view.tools.map((tool) => (
            <li key={tool.name} className={tool.active === false ? "inactive" : ""} title={tool.active === false ? "not active in this session" : undefined}>
              <span className="mono">
                <SafeText text={tool.name} />
                {tool.active === false && <span className="muted"> (inactive)</span>}
              </span>
              {tool.description && <span className="desc">{tool.description}</span>}
            </li>
          ))}
        </ul>
      </section>
      <section>
        <h3>Commands ({view.commands.length})</h3>
        <ul className="inspector-list">
          {view.commands.map((c) => (
            <li key={c.name}>
              <span className="mono">/<SafeText text={c.name} /></span>
              {c.description && <span className="desc">{c.description}</span>}
            </li>
          ))}
        </ul>
      </section>
    </aside>
  );
});
