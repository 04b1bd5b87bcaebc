// The Budget view (#/budget, specs/budgets.md): totals today and all time per machine and per folder, spend by
// agent, folder, machine or day with a small bar chart (inline SVG, no charting library), the budgets (set,
// change, remove) and the held agents with their override. Asked from the hypivisor while the view is open.
// Every name and path is shown through SafeText.
import { useCallback, useEffect, useMemo, useState } from "react";
import type { Budget, GetSpendResult, GetTotalsResult, ListBudgetsResult, NodeInfo } from "../protocol/types";
import { SafeText } from "../ui/SafeText";
import { folderName } from "../model/rosterReducer";
import { bars, labelled, money, shortPath, tokens } from "./format";
import { displayText } from "../model/displayText";
import "./budget.css";

type Request = <T>(method: string, params?: Record<string, unknown>, timeoutMs?: number) => Promise<T>;
type Group = "agent" | "folder" | "machine" | "day";
type Scope = "agent" | "folder" | "day";

const REFRESH_MS = 4000;
const SCOPE_LABEL: Record<Scope, string> = { day: "All agents, per day", folder: "A folder, per day", agent: "An agent, per day" };

interface Props {
  request: Request;
  nodes: Record<string, NodeInfo>;
  connected: boolean;
  onOpen(nodeId: string): void;
  onBack?(): void;
}

export function BudgetView({ request, nodes, connected, onOpen, onBack }: Props) {
  const [group, setGroup] = useState<Group>("day");
  const [days, setDays] = useState(7);
  const [totals, setTotals] = useState<GetTotalsResult | null>(null);
  const [spend, setSpend] = useState<GetSpendResult | null>(null);
  const [budgets, setBudgets] = useState<ListBudgetsResult | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  const refresh = useCallback(() => setTick((t) => t + 1), []);

  useEffect(() => {
    if (!connected) return;
    let live = true;
    Promise.all([
      request<GetTotalsResult>("get_totals"),
      request<GetSpendResult>("get_spend", { group_by: group, days }),
      request<ListBudgetsResult>("list_budgets"),
    ]).then(
      ([t, s, b]) => {
        if (!live) return;
        setTotals(t);
        setSpend(s);
        setBudgets(b);
        setError(null);
      },
      (e: Error) => live && setError(e.message),
    );
    const timer = setTimeout(refresh, REFRESH_MS);
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [request, group, days, connected, tick, refresh]);

  const act = useCallback(
    (method: string, params: Record<string, unknown>) =>
      request(method, params).then(
        () => {
          setError(null);
          refresh();
        },
        (e: Error) => setError(e.message),
      ),
    [request, refresh],
  );

  const held = Object.entries(budgets?.states ?? {}).filter(([, st]) => st.level === "held");
  return (
    <section className="budget-view" data-testid="budget-view" aria-label="Budget">
      <header className="budget-head">
        {onBack && (
          <button type="button" className="btn" onClick={onBack} aria-label="Back to agents">
            ‹ Agents
          </button>
        )}
        <h2>Budget</h2>
        {totals && <span className="muted">today is {totals.day}</span>}
      </header>
      {error && (
        <div className="budget-error" role="alert" data-testid="budget-error">
          {error}
        </div>
      )}
      {held.length > 0 && (
        <div className="budget-held" data-testid="budget-held">
          <h3>Held</h3>
          <ul>
            {held.map(([id, st]) => (
              <li key={id} data-testid="held-agent" data-node-id={id}>
                <button type="button" className="link-btn" onClick={() => onOpen(id)}>
                  <SafeText text={agentName(nodes[id], id)} />
                </button>{" "}
                <SafeText className="muted" text={`${st.note ?? "a budget"} reached (${Math.round(st.percent)} %)`} />{" "}
                <button type="button" className="btn btn-primary" data-testid="override" onClick={() => void act("override_budget", { node_id: id })}>
                  Override once
                </button>
              </li>
            ))}
          </ul>
        </div>
      )}
      <Totals totals={totals} />
      <div className="budget-spend">
        <div className="budget-controls" role="group" aria-label="Spend by">
          {(["day", "agent", "folder", "machine"] as Group[]).map((g) => (
            <button key={g} type="button" className={`btn${group === g ? " btn-primary" : ""}`} aria-pressed={group === g} data-testid={`group-${g}`} onClick={() => setGroup(g)}>
              by {g}
            </button>
          ))}
          <select aria-label="Days" value={days} onChange={(e) => setDays(Number(e.target.value))}>
            <option value={1}>today</option>
            <option value={7}>7 days</option>
            <option value={30}>30 days</option>
          </select>
        </div>
        {spend && <SpendChart spend={spend} nodes={nodes} />}
      </div>
      <Budgets budgets={budgets} nodes={nodes} onSet={(p) => act("set_budget", p)} />
    </section>
  );
}

function agentName(n: NodeInfo | undefined, id: string, label?: string | null): string {
  return n?.session_name || label || (n ? folderName(n.cwd) : id);
}

function Totals({ totals }: { totals: GetTotalsResult | null }) {
  if (!totals) return <p className="muted">Loading spend…</p>;
  const rows: [string, string, GetTotalsResult["today"], GetTotalsResult["all_time"]][] = [
    ["all", "All agents", totals.today, totals.all_time],
    ...totals.by_machine.map((r) => [`m:${r.key}`, r.key, r.today, r.all_time] as [string, string, typeof r.today, typeof r.all_time]),
    ...totals.by_folder.map((r) => [`f:${r.key}`, r.key, r.today, r.all_time] as [string, string, typeof r.today, typeof r.all_time]),
  ];
  return (
    <table className="budget-table" data-testid="budget-totals">
      <thead>
        <tr>
          <th />
          <th>today</th>
          <th>all time</th>
        </tr>
      </thead>
      <tbody>
        {rows.map(([key, name, today, all], i) => (
          <tr key={key} className={i === 0 ? "total-row" : key.startsWith("m:") ? "machine-row" : "folder-row"} data-testid="totals-row">
            <td>
              {key.startsWith("m:") ? "machine " : key.startsWith("f:") ? "folder " : ""}
              {key.startsWith("f:") ? (
                <span title={displayText(name)}>
                  <SafeText text={shortPath(name)} />
                </span>
              ) : (
                <SafeText text={name} />
              )}
            </td>
            <td>
              {money(today.cost)} · {tokens(today.tokens)}{"\u00a0"}tok
            </td>
            <td>
              {money(all.cost)} · {tokens(all.tokens)}{"\u00a0"}tok
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

const CHART_W = 560;
const CHART_H = 120;

function SpendChart({ spend, nodes }: { spend: GetSpendResult; nodes: Record<string, NodeInfo> }) {
  const rows = spend.group_by === "day" ? spend.rows : spend.rows.slice(0, 20);
  const geometry = useMemo(() => bars(rows.map((r) => ({ key: r.key, value: r.cost })), CHART_W, CHART_H), [rows]);
  const name = (r: (typeof rows)[number]) => (spend.group_by === "agent" ? agentName(nodes[r.key], r.key, r.label) : spend.group_by === "day" ? r.key.slice(5) : r.key);
  return (
    <div className="budget-chart">
      <svg viewBox={`0 0 ${CHART_W} ${CHART_H + 16}`} role="img" aria-label={`Spend by ${spend.group_by}`} data-testid="spend-chart">
        {geometry.map((b, i) => (
          <g key={b.key}>
            <rect x={b.x} y={b.y} width={b.width} height={b.height} className="bar" data-testid="spend-bar">
              <title>{`${name(rows[i])}: ${money(b.value)}, ${tokens(rows[i].tokens)} tokens`}</title>
            </rect>
            {spend.group_by === "day" && labelled(i, geometry.length) && (
              <text x={b.x + b.width / 2} y={CHART_H + 12} textAnchor="middle" className="bar-label">
                {name(rows[i])}
              </text>
            )}
          </g>
        ))}
      </svg>
      <table className="budget-table" data-testid="spend-table">
        <tbody>
          {(spend.group_by === "day" ? [...rows].reverse() : rows).map((r) => (
            <tr key={r.key} data-testid="spend-row" data-key={r.key}>
              <td>
                <SafeText text={spend.group_by === "agent" ? agentName(nodes[r.key], r.key, r.label) : r.key} />
                {r.machine && <SafeText className="muted" text={` · ${r.machine}`} />}
              </td>
              <td>{money(r.cost)}</td>
              <td>{tokens(r.tokens)} tok</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Budgets({ budgets, nodes, onSet }: { budgets: ListBudgetsResult | null; nodes: Record<string, NodeInfo>; onSet(p: Record<string, unknown>): void }) {
  const [scope, setScope] = useState<Scope>("day");
  const [key, setKey] = useState("");
  const [usd, setUsd] = useState("");
  const [tok, setTok] = useState("");
  const folders = useMemo(() => [...new Set(Object.values(nodes).map((n) => n.cwd))].sort(), [nodes]);
  const agents = Object.values(nodes);
  const submit = () => {
    const cost = usd.trim() ? Number(usd) : null;
    const t = tok.trim() ? Math.round(Number(tok)) : null;
    onSet({ scope, ...(scope === "day" ? {} : { key }), cost, tokens: t });
  };
  const label = (b: Budget) =>
    b.scope === "day" ? "all agents" : b.default ? `each ${b.scope}` : b.scope === "agent" ? agentName(nodes[b.key], b.key) : b.key;
  return (
    <div className="budget-budgets" data-testid="budgets">
      <h3>Budgets</h3>
      <ul className="budget-list">
        {[...(budgets?.budgets ?? []), ...(budgets?.defaults ?? [])].map((b) => (
          <li key={`${b.default ? "d" : "s"}:${b.scope}:${b.key}`} data-testid="budget-row" data-scope={b.scope}>
            <span>
              {b.scope} · <SafeText text={label(b)} />: {b.cost != null ? `${money(b.cost)}/day` : ""}
              {b.cost != null && b.tokens != null ? " and " : ""}
              {b.tokens != null ? `${tokens(b.tokens)} tokens/day` : ""}
              {b.default ? <span className="muted"> (default from the hypivisor's flags)</span> : null}
            </span>
            {!b.default && (
              <button type="button" className="link-btn" onClick={() => onSet({ scope: b.scope, ...(b.scope === "day" ? {} : { key: b.key }), cost: null, tokens: null })}>
                remove
              </button>
            )}
          </li>
        ))}
        {budgets && !budgets.budgets.length && !budgets.defaults.length && <li className="muted">No budgets: agents spend without a limit.</li>}
      </ul>
      <form
        className="budget-form"
        onSubmit={(e) => {
          e.preventDefault();
          submit();
        }}
      >
        <select aria-label="Budget for" value={scope} onChange={(e) => (setScope(e.target.value as Scope), setKey(""))}>
          {(Object.keys(SCOPE_LABEL) as Scope[]).map((s) => (
            <option key={s} value={s}>
              {SCOPE_LABEL[s]}
            </option>
          ))}
        </select>
        {scope !== "day" && (
          <select aria-label={scope === "agent" ? "Agent" : "Folder"} value={key} onChange={(e) => setKey(e.target.value)}>
            <option value="">choose…</option>
            {scope === "agent"
              ? agents.map((n) => (
                  <option key={n.id} value={n.id}>
                    {agentName(n, n.id)}
                  </option>
                ))
              : folders.map((f) => (
                  <option key={f} value={f}>
                    {f}
                  </option>
                ))}
          </select>
        )}
        <input aria-label="USD per day" inputMode="decimal" placeholder="USD / day" value={usd} onChange={(e) => setUsd(e.target.value)} />
        <input aria-label="Tokens per day" inputMode="numeric" placeholder="tokens / day" value={tok} onChange={(e) => setTok(e.target.value)} />
        <button type="submit" className="btn btn-primary" disabled={(scope !== "day" && !key) || (!usd.trim() && !tok.trim())}>
          Set budget
        </button>
      </form>
    </div>
  );
}
