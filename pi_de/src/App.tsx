import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { resolveEndpoints } from "./connection/endpoints";
import { hostOf } from "./connection/failover";
import { loadToken, saveToken } from "./connection/token";
import { useHypivisor } from "./connection/useHypivisor";
import { askPermission, canNotify, notifyRun } from "./notify/notify";
import { versionWarning } from "./protocol/version";
import { Roster } from "./roster/Roster";
import { baseTitle, titlesWithExited } from "./model/agentTitles";
import { folderName } from "./model/rosterReducer";
import { displayText } from "./model/displayText";
import { BudgetView, ChatStage, ErrorScreen, preloadScreens, SessionsView, SessionView, SpawnModal, TokenScreen } from "./screens";
import { THEME_NAMES } from "./theme/piTheme";
import { useTheme } from "./theme/useTheme";
import { HOME, parseRoute } from "./routing/route";
import { useRoute } from "./routing/useRoute";
import { NoSuchAgent } from "./routing/RouteScreens";
import { Inbox } from "./inbox/Inbox";
import { useInboxActions } from "./inbox/useInboxActions";
import { useMarkRead } from "./inbox/useMarkRead";
import { useFaviconCount } from "./inbox/favicon";
import { inboxCount, titleWithCount } from "./model/inbox";
import { useMedia } from "./ui/useMedia";
import { severalMachines } from "./model/nodeMeta";
import type { NodeInfo, SpawnAgentResult } from "./protocol/types";
import { usePush } from "./push/usePush";
import { PushSettings } from "./push/PushSettings";
import { BudgetHold } from "./budget/BudgetHold";
import { DriverKeys } from "./keys/DriverKeys";
import { useNodeActions } from "./roster/useNodeActions";

export function App() {
  const endpoints = useMemo(() => resolveEndpoints(window.location), []);
  const [token, setToken] = useState<string | null>(() => loadToken(endpoints.wsBase, endpoints.sameOrigin));
  const [askToken, setAskToken] = useState(false);
  const hv = useHypivisor(endpoints, token);
  // agent links open through the hypivisor the registry link is on (a peer after a fail-over)
  const inboxActions = useInboxActions(hv.endpoints, token, hv.request);
  const nodeActions = useNodeActions(hv.endpoints, token);
  const onPeer = hv.endpoints.wsBase !== endpoints.wsBase ? hostOf(hv.endpoints.wsBase) : null;
  useEffect(() => {
    if (hv.canFailOver) preloadScreens(); // a peer cannot serve this page's chunks: fetch them while the origin is up
  }, [hv.canFailOver]);
  const phone = useMedia("(max-width: 767px)");
  const [theme, setTheme] = useTheme();
  // The screen is the URL (routing/route.ts): Back and Forward move between agents and the spawn dialog.
  const { route, navigate, back } = useRoute();
  // The spawn dialog opens over the agent that was open, which stays mounted (and connected) behind it.
  const behind = useRef<string | null>(null);
  if (route.screen === "agent") behind.current = route.id;
  else if (route.screen !== "spawn") behind.current = null;
  const selected = route.screen === "agent" ? route.id : route.screen === "spawn" ? behind.current : null;
  const spawnOpen = route.screen === "spawn";
  const select = useCallback((id: string) => navigate({ screen: "agent", id }), [navigate]);
  const toHome = useCallback(() => back(HOME), [back]);
  // Ids the roster has listed while this page was open: one of them that disappears keeps its stage
  // ("waiting for it to come back"); an id never seen is "no such agent".
  const seen = useRef(new Set<string>());
  for (const id of hv.roster.order) seen.current.add(id);
  const [notifyOk, setNotifyOk] = useState(canNotify());
  const push = usePush(hv.request, hv.phase === "connected", route.screen === "agent" ? route.id : null);

  const saveAndUse = (t: string) => {
    saveToken(endpoints.wsBase, t);
    setToken(t);
    setAskToken(false);
  };

  // Runs of agents that are not open in the stage also notify, from the roster's activity.
  const lastActivity = useRef<Record<string, string | undefined>>({});
  useEffect(() => {
    for (const n of Object.values(hv.roster.nodes)) {
      const prev = lastActivity.current[n.id];
      if (prev === "working" && n.activity === "idle" && n.id !== selected) notifyRun(`${displayText(folderName(n.cwd))}: done`, displayText(n.session_name), `pi-de-${n.id}`);
      lastActivity.current[n.id] = n.activity ?? undefined;
    }
  }, [hv.roster, selected]);

  // A call waiting for a decision in an agent that is not open also notifies (the open one's stage does).
  const lastWaiting = useRef<Record<string, number>>({});
  useEffect(() => {
    for (const n of Object.values(hv.roster.nodes)) {
      const waiting = n.status === "offline" ? 0 : (n.pending_approvals ?? 0);
      if (waiting > (lastWaiting.current[n.id] ?? 0) && n.id !== selected)
        notifyRun(`${displayText(folderName(n.cwd))}: approval needed`, displayText(n.session_name), `pi-de-approval-${n.id}`);
      lastWaiting.current[n.id] = waiting;
    }
  }, [hv.roster, selected]);

  const onSpawned = useCallback((id: string) => navigate({ screen: "agent", id }, { replace: true }), [navigate]);
  // Closing the dialog returns to the screen it was opened from; after a spawn the URL is the new agent's already.
  const closeSpawn = useCallback(() => parseRoute(location.hash).screen === "spawn" && back(HOME), [back]);
  const request = hv.request;
  const resume = useCallback(
    async (cwd: string, sessionFile: string) => {
      const r = await request<SpawnAgentResult>("spawn_agent", { path: cwd, session_file: sessionFile }, 90_000);
      navigate({ screen: "agent", id: r.node_id }); // pi may resume the session under a new node id
    },
    [request, navigate],
  );
  // Inbox: the open agent is read while its conversation shows the latest message on a focused page.
  const reading = route.screen === "agent" ? route.id : null;
  const [followingId, setFollowingId] = useState<string | null>(null);
  const onFollowing = useCallback((on: boolean) => setFollowingId((cur) => (on ? reading : cur === reading ? null : cur)), [reading]);
  useMarkRead(reading, !!reading && followingId === reading, hv.inbox, inboxActions.markRead);
  const attention = inboxCount(hv.inbox);
  useFaviconCount(attention);
  const openInbox = useCallback(() => navigate({ screen: "inbox" }), [navigate]);
  const openBudget = useCallback(() => navigate({ screen: "budget" }), [navigate]);
  const openSessions = useCallback(() => navigate({ screen: "sessions" }), [navigate]);
  const openSession = useCallback((s: { id: string; machine: string; entry?: string }) => navigate({ screen: "session", ...s }), [navigate]);
  const backToSessions = useCallback(() => back({ screen: "sessions" }), [back]);
  const overrideBudget = useCallback((nodeId: string) => request("override_budget", { node_id: nodeId }), [request]);
  const removeWorktree = useCallback(
    (machine: string, path: string, force: boolean) => request("remove_worktree", { machine, path, force }, 90_000),
    [request],
  );
  const inboxProps = { inbox: hv.inbox, nodes: hv.roster.nodes, several: severalMachines(Object.values(hv.roster.nodes)), actions: inboxActions, onOpen: select };
  const openNode = selected ? (hv.roster.nodes[selected] ?? hv.roster.exited[selected]?.node) : undefined;
  // an exited agent keeps the title it had beside the live ones ("app · 2" stays that, not a second "app")
  const exitedNode = selected ? hv.roster.exited[selected]?.node : undefined;
  const titles = useMemo(() => titlesWithExited(Object.values(hv.roster.nodes), exitedNode), [hv.roster.nodes, exitedNode]);
  const openTitle = selected && openNode ? (titles[selected] ?? baseTitle(openNode)) : null;
  useEffect(() => {
    document.title = titleWithCount(openTitle ? `${displayText(openTitle)} · Pi-DE` : "Pi-DE", attention);
  }, [openTitle, attention]);

  if (hv.phase === "unauthorized" || askToken) return <TokenScreen url={hv.url} rejected={hv.phase === "unauthorized"} onSave={saveAndUse} />;
  if (hv.phase === "failed") return <ErrorScreen url={hv.url} retryInMs={hv.retryInMs} onRetry={hv.retryNow} onToken={() => setAskToken(true)} />;

  const node = selected ? hv.roster.nodes[selected] : undefined;
  const exited = selected ? hv.roster.exited[selected] : undefined;
  const rosterLoaded = hv.roster.protocolVersion !== null;
  const unknown = !!selected && !node && !exited && !seen.current.has(selected) && rosterLoaded;
  const registryWarning = versionWarning("The hypivisor", hv.roster.protocolVersion);
  return (
    <div className={`app${selected || route.screen === "inbox" || route.screen === "budget" || route.screen === "sessions" || route.screen === "session" ? " has-selection" : ""}`}>
      {hv.phase === "reconnecting" && (
        <div className="banner disconnected" role="status" data-testid="disconnected-banner">
          Disconnected from hypivisor, reconnecting…
        </div>
      )}
      {registryWarning && <div className="banner warn">{registryWarning}</div>}
      <div className="layout">
        <aside className="sidebar">
          <div className="brand">
            <span className="logo">π</span> Pi-DE
            {onPeer && (
              <span className="on-peer" data-testid="on-peer" title={`This page's hypivisor is unreachable: connected through ${onPeer}`}>
                on <bdi>{displayText(onPeer)}</bdi>
              </span>
            )}
            <button type="button" className="link-btn inbox-link" data-testid="inbox-link" onClick={openInbox} aria-label={`Inbox, ${attention} item${attention === 1 ? "" : "s"}`}>
              Inbox <span className={`badge${attention ? " has-items" : ""}`}>{attention}</span>
            </button>
            <button type="button" className="link-btn budget-link" data-testid="budget-link" onClick={openBudget}>
              Budget
            </button>
            <button type="button" className="link-btn sessions-link" data-testid="sessions-link" onClick={openSessions}>
              Sessions
            </button>
          </div>
          <button type="button" className="btn btn-primary spawn-btn" onClick={() => navigate({ screen: "spawn" })} disabled={hv.phase !== "connected"}>
            + Spawn agent
          </button>
          {phone && route.screen === "home" && hv.phase !== "connecting" && <Inbox {...inboxProps} limit={3} onShowAll={openInbox} />}
          {hv.phase === "connecting" ? <div className="muted roster-empty">Connecting to the hypivisor…</div> : <Roster roster={hv.roster} selected={selected} onSelect={select} machines={hv.machines} actions={nodeActions} />}
          <div className="sidebar-foot">
            <DriverKeys roster={hv.roster} machines={hv.machines} selected={selected} onSelect={select} onInbox={openInbox} />
            <PushSettings push={push} nodes={hv.roster.nodes} />
            <label className="field-inline">
              <span>Theme</span>
              <select aria-label="Theme" value={theme} onChange={(e) => setTheme(e.target.value)}>
                {THEME_NAMES.map((n) => (
                  <option key={n} value={n}>
                    {n}
                  </option>
                ))}
              </select>
            </label>
            {!notifyOk && typeof Notification !== "undefined" && (
              <button type="button" className="link-btn" onClick={() => void askPermission().then((p) => setNotifyOk(p === "granted"))}>
                Enable notifications
              </button>
            )}
          </div>
        </aside>
        <main className="main">
          {unknown && selected ? (
            <NoSuchAgent id={selected} onBack={toHome} />
          ) : selected ? (
            <ChatStage
              key={selected}
              endpoints={hv.endpoints}
              token={token}
              nodeId={selected}
              node={node}
              label={openTitle ?? undefined}
              registryUp={hv.phase === "connected"}
              onBack={toHome}
              waitingElsewhere={waitingElsewhere(hv.roster.nodes, selected)}
              exited={exited}
              several={severalMachines(Object.values(hv.roster.nodes))}
              onResume={resume}
              onFollowing={onFollowing}
              onRemoveWorktree={removeWorktree}
              notice={node?.budget_level === "held" ? <BudgetHold node={node} onOverride={overrideBudget} onShowBudgets={openBudget} /> : undefined}
            />
          ) : route.screen === "sessions" ? (
            <SessionsView request={hv.request} connected={hv.phase === "connected"} onSessionEvent={hv.onSessionEvent} onOpen={openSession} onBack={phone ? toHome : undefined} />
          ) : route.screen === "session" ? (
            <SessionView key={`${route.machine ?? ""}/${route.id}/${route.entry ?? ""}`} request={hv.request} connected={hv.phase === "connected"} id={route.id} machine={route.machine} entry={route.entry} onBack={backToSessions} onAgent={select} />
          ) : route.screen === "budget" ? (
            <BudgetView request={hv.request} nodes={hv.roster.nodes} connected={hv.phase === "connected"} onOpen={select} onBack={phone ? toHome : undefined} />
          ) : route.screen === "inbox" ? (
            <Inbox {...inboxProps} onBack={phone ? toHome : undefined} />
          ) : (
            <div className="stage-empty muted welcome">Select an agent on the left, or spawn one.</div>
          )}
        </main>
      </div>
      {/* a link straight to #/spawn opens the dialog once the registry answers (it lists folders at once) */}
      {spawnOpen && hv.phase === "connected" && <SpawnModal request={hv.request} onClose={closeSpawn} onSpawned={onSpawned} machines={hv.machines} />}
    </div>
  );
}

/** Tool calls waiting for a decision in agents other than the open one (the phone's back button shows it). */
function waitingElsewhere(nodes: Record<string, NodeInfo>, open: string): number {
  let n = 0;
  for (const node of Object.values(nodes)) if (node.id !== open && node.status !== "offline") n += node.pending_approvals ?? 0;
  return n;
}
