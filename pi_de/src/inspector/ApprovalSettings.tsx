// The agent's approval gate in the inspector (specs/approvals.md): its policy (off / writes / all),
// its allow rules (remove one, add one), and its recent decisions. Every change goes to the agent as
// set_approval_policy; what is shown is what the agent reports back (approval_policy), so every open
// dashboard shows the same policy.
import { useState, type FormEvent } from "react";
import type { ApprovalRule } from "../protocol/types";
import { APPROVAL_POLICIES, byText, latencyText, parseRule, ruleText, sameRule, type ApprovalPolicy, type ApprovalsView } from "../model/approvals";
import { displayText } from "../model/displayText";

const POLICY_HELP: Record<ApprovalPolicy, string> = {
  off: "never asks",
  writes: "asks before bash, and before writes outside the folder",
  all: "asks before every tool call",
};

interface Props {
  approvals: Pick<ApprovalsView, "policy" | "rules" | "recent">;
  /** Tool names the agent has, offered when typing a rule. */
  toolNames: string[];
  connected: boolean;
  onSetPolicy(policy: ApprovalPolicy, rules?: ApprovalRule[]): void;
}

export function ApprovalSettings({ approvals, toolNames, connected, onSetPolicy }: Props) {
  const { policy, rules, recent } = approvals;
  const [tool, setTool] = useState("");
  const [prefix, setPrefix] = useState("");
  const [problem, setProblem] = useState<string | null>(null);

  const add = (e: FormEvent) => {
    e.preventDefault();
    const parsed = parseRule(tool, prefix);
    if ("error" in parsed) return setProblem(parsed.error);
    setProblem(null);
    setTool("");
    setPrefix("");
    if (!rules.some((r) => sameRule(r, parsed.rule))) onSetPolicy(policy, [...rules, parsed.rule]);
  };

  return (
    <section data-testid="approval-settings">
      <h3>Approvals</h3>
      <label className="field-inline approval-policy">
        <span className="muted">asks</span>
        <select aria-label="Approval policy" data-testid="policy-select" value={policy} disabled={!connected} onChange={(e) => onSetPolicy(e.target.value as ApprovalPolicy)}>
          {APPROVAL_POLICIES.map((p) => (
            <option key={p} value={p}>
              {p}
            </option>
          ))}
        </select>
      </label>
      <div className="muted small">{POLICY_HELP[policy] ?? ""}</div>

      <h4>Allow rules ({rules.length})</h4>
      {rules.length === 0 && <div className="muted small">none: every call the policy picks is asked</div>}
      <ul className="inspector-list rule-list" data-testid="rule-list">
        {rules.map((r) => (
          <li key={ruleText(r)} className="rule-row">
            <span className="mono">{displayText(ruleText(r))}</span>
            <button type="button" className="link-btn" aria-label={`Remove rule ${displayText(ruleText(r))}`} disabled={!connected} onClick={() => onSetPolicy(policy, rules.filter((x) => !sameRule(x, r)))}>
              remove
            </button>
          </li>
        ))}
      </ul>
      <form className="rule-form" onSubmit={add} aria-label="Add an allow rule">
        <input aria-label="Rule tool" placeholder="tool, e.g. bash or read" list="approval-tools" value={tool} onChange={(e) => setTool(e.target.value)} autoCapitalize="off" autoCorrect="off" />
        <input aria-label="Rule command prefix" placeholder="shell command prefix (optional)" value={prefix} onChange={(e) => setPrefix(e.target.value)} autoCapitalize="off" autoCorrect="off" spellCheck={false} />
        <button type="submit" className="btn" disabled={!connected}>
          Add rule
        </button>
        <datalist id="approval-tools">
          {toolNames.map((t) => (
            <option key={t} value={t} />
          ))}
        </datalist>
      </form>
      {problem && (
        <div className="attach-problem" role="alert">
          {problem}
        </div>
      )}

      <h4>Recent decisions ({recent.length})</h4>
      <ul className="inspector-list recent-list" data-testid="recent-approvals">
        {[...recent].reverse().map((r) => (
          <li key={r.id} data-decision={r.decision}>
            <span className="mono recent-call">
              {displayText(r.tool_name)} {displayText(r.summary)}
            </span>
            <span className="desc">
              <span className={r.decision === "allow" ? "ok" : "no"}>{r.decision === "allow" ? "allowed" : "denied"}</span> {byText(r.by)} · {timeOf(r.decided_at)} · after {latencyText(r.latency_ms)}
              {r.reason ? <> · {displayText(r.reason)}</> : null}
            </span>
          </li>
        ))}
      </ul>
    </section>
  );
}

function timeOf(unixSeconds: number): string {
  const d = new Date(unixSeconds * 1000);
  return isNaN(d.getTime()) ? "?" : d.toLocaleTimeString();
}
