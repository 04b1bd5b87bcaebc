import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { ChatStage } from "./chat/ChatStage";
import { resolveEndpoints } from "./connection/endpoints";
import { loadToken, saveToken } from "./connection/token";
import { useHypivisor } from "./connection/useHypivisor";
import { askPermission, canNotify, notifyRun } from "./notify/notify";
import { versionWarning } from "./protocol/version";
import { Roster } from "./roster/Roster";
import { folderName } from "./model/rosterReducer";
import { displayText } from "./model/displayText";
import { ErrorScreen, TokenScreen } from "./screens";
import { SpawnModal } from "./spawn/SpawnModal";
import { THEME_NAMES } from "./theme/piTheme";
import { useTheme } from "./theme/useTheme";

export function App() {
  const endpoints = useMemo(() => resolveEndpoints(window.location), []);
  const [token, setToken] = useState<string | null>(() => loadToken(endpoints.wsBase, endpoints.sameOrigin));
  const [askToken, setAskToken] = useState(false);
  const hv = useHypivisor(endpoints, token);
  const [theme, setTheme] = useTheme();
  const [selected, setSelected] = useState<string | null>(null);
  const [spawnOpen, setSpawnOpen] = useState(false);
  const [notifyOk, setNotifyOk] = useState(canNotify());

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

  const onSpawned = useCallback((id: string) => setSelected(id), []);

  if (hv.phase === "unauthorized" || askToken) return <TokenScreen url={hv.url} rejected={hv.phase === "unauthorized"} onSave={saveAndUse} />;
  if (hv.phase === "failed") return <ErrorScreen url={hv.url} retryInMs={hv.retryInMs} onRetry={hv.retryNow} onToken={() => setAskToken(true)} />;

  const node = selected ? hv.roster.nodes[selected] : undefined;
  const registryWarning = versionWarning("The hypivisor", hv.roster.protocolVersion);
  return (
    <div className={`app${selected ? " has-selection" : ""}`}>
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
          </div>
          <button type="button" className="btn btn-primary spawn-btn" onClick={() => setSpawnOpen(true)} disabled={hv.phase !== "connected"}>
            + Spawn agent
          </button>
          {hv.phase === "connecting" ? <div className="muted roster-empty">Connecting to the hypivisor…</div> : <Roster roster={hv.roster} selected={selected} onSelect={setSelected} />}
          <div className="sidebar-foot">
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
          {selected ? (
            <ChatStage key={selected} endpoints={endpoints} token={token} nodeId={selected} node={node} registryUp={hv.phase === "connected"} onBack={() => setSelected(null)} />
          ) : (
            <div className="stage-empty muted welcome">Select an agent on the left, or spawn one.</div>
          )}
        </main>
      </div>
      {spawnOpen && <SpawnModal request={hv.request} onClose={() => setSpawnOpen(false)} onSpawned={onSpawned} />}
    </div>
  );
}
