// The centre pane for one agent. Mounted with key={nodeId}, so switching agents starts from a fresh
// reducer and the old link is closed by the hook's cleanup.
import { useCallback, useEffect, useMemo, useRef, useState, type DragEvent, type ReactNode } from "react";
import { useAgentLink } from "../connection/useAgentLink";
import type { Endpoints } from "../connection/endpoints";
import { Inspector } from "../inspector/Inspector";
import { notifyRun } from "../notify/notify";
import type { NodeInfo } from "../protocol/types";
import { folderName } from "../model/rosterReducer";
import { displayText } from "../model/displayText";
import { SafeText } from "../ui/SafeText";
import { approvalSummary } from "../model/approvals";
import { ApprovalPanel } from "./ApprovalPanel";
import { Composer } from "./Composer";
import { ModelPicker } from "./ModelPicker";
import { QueuePanel } from "./QueuePanel";
import { MessageList } from "./MessageList";
import { SessionName } from "./SessionName";
import { ExitedBanner } from "./ExitedBanner";
import { StageMeta } from "./StageMeta";
import type { ExitedNode } from "../model/rosterReducer";
import { useMedia } from "../ui/useMedia";
import { useStoredFlag } from "../ui/storedFlag";
import { ABORT_EVENT } from "../keys/keymap";

interface Props {
  endpoints: Endpoints;
  token: string | null;
  nodeId: string;
  node: NodeInfo | undefined;
  /** The roster's title for this agent (unique among agents, see model/agentTitles). */
  label?: string;
  /** The registry socket is connected; when it is not, the agent is reached directly. */
  registryUp: boolean;
  onBack(): void;
  /** Tool calls waiting for a decision in other agents: the phone's back button says so. */
  waitingElsewhere?: number;
  /** Set once this agent's pi has exited (deregistered): the conversation stays, read-only. */
  exited?: ExitedNode;
  /** Agents run on more than one machine: the header names this one's. */
  several?: boolean;
  /** Start a new pi on this agent's session file in its folder (then the page opens it). */
  onResume?(cwd: string, sessionFile: string): Promise<void>;
  /** Shown above the composer (a budget that holds this agent). */
  notice?: ReactNode;
  /** The conversation is shown and scrolled to the latest message (or no longer). */
  onFollowing?(following: boolean): void;
  /** Remove the git worktree this agent ran in (remove_worktree), once it is stopped. */
  onRemoveWorktree?(machine: string, path: string, force: boolean): Promise<unknown>;
}

export function ChatStage({ endpoints, token, nodeId, node, label, registryUp, onBack, waitingElsewhere = 0, exited, several = false, onResume, onFollowing, notice, onRemoveWorktree }: Props) {
  const active = !!node && node.status !== "offline";
  const target = useMemo(() => (node ? { port: node.port, machine: node.machine } : null), [node?.port, node?.machine]);
  const link = useAgentLink(endpoints, token, nodeId, active, { registryUp, target });
  const { view } = link;
  const direct = link.route === "direct" && view.status === "open";
  const [drawer, setDrawer] = useState(false);
  // Phones: the inspector is a drawer. Wider screens: a side panel that can be hidden, remembered.
  const phone = useMedia("(max-width: 767px)");
  const [inspectorHidden, setInspectorHidden] = useStoredFlag("pi-de.inspector-hidden");
  const [dropped, setDropped] = useState<File[]>([]);
  const [dragging, setDragging] = useState(false);

  const known = node ?? exited?.node; // an exited agent keeps its name and folder
  // a name a person reads, never the raw id (the URL has it): the folder, or the roster's title ("api · 2") while
  // pi has no session name to tell two agents in one folder apart
  const named = !!(view.sessionName ?? known?.session_name)?.trim();
  const title = known ? (!named && label ? label : folderName(known.cwd)) : "agent";
  const { tools, commands, model, contextUsage, tokens, cost, approvals } = view;
  const connected = view.status === "open";
  // before the link is up the view has no policy of its own yet: show the one the roster reports, not the default
  const rosterPolicy = connected ? undefined : known?.approval_policy;
  const inspectorData = useMemo(
    () => ({ tools, commands, model, contextUsage, tokens, cost, approvals: rosterPolicy ? { ...approvals, policy: rosterPolicy } : approvals, connected }),
    [tools, commands, model, contextUsage, tokens, cost, approvals, connected, rosterPolicy],
  );
  const closeDrawer = useCallback(() => setDrawer(false), []);
  const worktree = useMemo(
    () => (known?.worktree ? { path: known.worktree, repo: known.worktree_of ?? null, branch: known.git_branch ?? null, removable: !active } : null),
    [known?.worktree, known?.worktree_of, known?.git_branch, active],
  );
  const machineOf = known?.machine;
  const removeWorktree = useMemo(
    () => (onRemoveWorktree && machineOf ? (path: string, force: boolean) => onRemoveWorktree(machineOf, path, force) : undefined),
    [onRemoveWorktree, machineOf],
  );
  const seenRuns = useRef(view.finishedRuns);
  useEffect(() => {
    if (view.finishedRuns === seenRuns.current) return;
    seenRuns.current = view.finishedRuns;
    const f = view.lastFinish;
    if (f) notifyRun(f.kind === "error" ? `${displayText(title)}: run failed` : `${displayText(title)}: done`, f.text, `pi-de-${nodeId}`);
  }, [view.finishedRuns, view.lastFinish, title, nodeId]);
  // A new question while the tab is hidden: the person is told, like a finished run.
  const asking = approvals.pending[0];
  useEffect(() => {
    if (asking) notifyRun(`${displayText(title)}: approval needed`, `${asking.tool_name} ${displayText(approvalSummary(asking)).slice(0, 140)}`, `pi-de-approval-${nodeId}`);
  }, [asking?.id]); // eslint-disable-line react-hooks/exhaustive-deps

  // Esc outside the composer (keys/keymap.ts) aborts this agent's run, like Esc inside it.
  const running = view.running;
  const abort = link.abort;
  useEffect(() => {
    if (!running) return;
    const onAbort = () => abort();
    window.addEventListener(ABORT_EVENT, onAbort);
    return () => window.removeEventListener(ABORT_EVENT, onAbort);
  }, [running, abort]);

  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setDragging(false);
    if (e.dataTransfer.files.length) setDropped(Array.from(e.dataTransfer.files));
  };

  const state = direct
    ? null // a working direct link outranks what a restarted registry does not know yet
    : exited
    ? null // said by the banner below: it will not come back
    : !node
    ? { cls: "offline", text: "Agent not registered right now, waiting for it to come back" }
    : !active
      ? { cls: "offline", text: "Agent offline, waiting for it to come back" }
      : view.status === "lost" || (view.status === "connecting" && view.initialized)
        ? { cls: "lost", text: "Connection lost, reconnecting…" }
        : null;

  return (
    <div className="stage-wrap">
      <section
        className={`stage${dragging ? " dragging" : ""}`}
        data-testid="chat-stage"
        onDragOver={(e) => (e.preventDefault(), setDragging(true))}
        onDragLeave={() => setDragging(false)}
        onDrop={onDrop}
      >
        <header className="stage-head">
          <button
            type="button"
            className="icon-btn back-btn"
            onClick={onBack}
            aria-label={waitingElsewhere > 0 ? `Back to agents (${waitingElsewhere} waiting for you)` : "Back to agents"}
          >
            ←{waitingElsewhere > 0 && <span className="back-waiting" data-testid="waiting-elsewhere">{waitingElsewhere}</span>}
          </button>
          <div className="stage-title">
            <div className="stage-title-row">
              <span className={`dot ${exited || (node?.status === "offline" && !direct) ? "off" : view.running ? "working" : "idle"}`} />
              <strong>
                <SafeText text={title} />
              </strong>
              <SessionName name={view.sessionName ?? known?.session_name ?? null} disabled={view.status !== "open"} onRename={link.setSessionName} />
              {exited && (
                <span className="exited-tag" data-testid="exited-tag">
                  pi exited
                </span>
              )}
            </div>
            <div className="stage-sub muted">
              <StageMeta node={known} several={several} running={view.running} exited={!!exited} /> {view.status === "connecting" && !view.initialized && !exited ? "· connecting…" : ""}
              {!exited && <ModelPicker models={view.models} disabled={view.status !== "open"} onModel={link.setModel} onThinking={link.setThinkingLevel} compact={phone} />}
              {direct && (
                <span className="direct-note" data-testid="direct-link" title="The hypivisor's proxy is not used: this conversation talks to the agent's own port">
                  {registryUp ? "Direct connection" : "Direct connection (hypivisor down)"}
                </span>
              )}
            </div>
          </div>
          <button
            type="button"
            className="icon-btn inspector-btn"
            onClick={() => (phone ? setDrawer((d) => !d) : setInspectorHidden(!inspectorHidden))}
            aria-label={!phone && !inspectorHidden ? "Hide inspector" : "Show inspector"}
            aria-pressed={phone ? drawer : !inspectorHidden}
            title="Inspector"
          >
            <svg width="18" height="18" viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth="2" aria-hidden="true">
              <circle cx="12" cy="12" r="9" />
              <path d="M12 11v6M12 7.5v.5" />
            </svg>
          </button>
        </header>
        {view.versionWarning && <div className="banner warn">{view.versionWarning}</div>}
        {state && (
          <div className={`inline-state ${state.cls}`} role="status" data-testid="inline-state">
            {state.text}
          </div>
        )}
        {exited && (
          <ExitedBanner
            at={exited.at}
            sessionFile={view.sessionFile}
            onResume={onResume && view.sessionFile ? () => onResume(exited.node.cwd, view.sessionFile!) : null}
          />
        )}
        {(view.command || view.notice) && (
          <div className="notice-bar" role="status" data-testid="command-notice">
            {view.command ? `Running /${view.command.name}…` : view.notice}
          </div>
        )}
        {view.errors.map((e) => (
          <div key={e.id} className="banner error" role="alert">
            {e.message}
            <button type="button" className="link-btn" onClick={() => link.dismissError(e.id)}>
              dismiss
            </button>
          </div>
        ))}
        {!view.initialized && active ? <div className="stage-empty muted">Connecting to the agent…</div> : <MessageList
            view={view}
            onLoadOlder={link.fetchOlder}
            onFollowing={onFollowing}
            emptyHint={exited ? "pi exited before anything was said." : "No messages yet. Write a prompt below: / lists pi's commands, @ picks a file."}
          />}
        <ApprovalPanel
          approvals={approvals}
          agent={view.sessionName ?? node?.session_name ?? title}
          cwd={node?.cwd ?? ""}
          connected={connected}
          onDecide={link.decideApproval}
        />
        <QueuePanel pending={view.pending} onEdit={link.editHeld} onCancel={link.dropHeld} />
        {notice}
        <Composer
          running={view.running}
          connected={view.status === "open"}
          commands={view.commands}
          files={view.files}
          onSend={link.sendPrompt}
          onAbort={link.abort}
          onListCommands={link.listCommands}
          onListFiles={link.listFiles}
          dropped={dropped}
          models={view.models}
          onRunCommand={link.runCommand}
          onSetModel={link.setModel}
          onSetThinking={link.setThinkingLevel}
          onRename={link.setSessionName}
          disabledReason={exited ? "pi exited: this conversation is read-only. Resume it in a new pi to continue." : null}
        />
      </section>
      {/* a closed phone drawer is off screen: inert keeps Tab and screen readers out of it */}
      <div className={`inspector-slot${drawer ? " open" : ""}${inspectorHidden ? " collapsed" : ""}`} inert={phone && !drawer}>
        <Inspector view={inspectorData} onClose={closeDrawer} onSetPolicy={link.setApprovalPolicy} tmuxSession={exited ? null : node?.tmux_session} machine={node?.machine} worktree={worktree} onRemoveWorktree={removeWorktree} />
      </div>
    </div>
  );
}
