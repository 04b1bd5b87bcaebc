// Tool calls waiting for a person's decision (specs/approvals.md), pinned between the conversation and
// the composer so it stays in view however far the conversation is scrolled. The oldest question is
// shown in full; the ones after it are listed below it. The first answer anywhere (this page, another
// dashboard, pi's terminal) wins: approval_resolved removes the question here and a short note says
// how it closed.
import { memo, useEffect, useRef, useState, type KeyboardEvent } from "react";
import type { ApprovalDecisionMsg, ApprovalPreview, ApprovalRequestMsg } from "../protocol/types";
import { approvalSummary, byText, canEditCommand, compactPath, diffRows, pathInFolder, waitedText, type ApprovalsView } from "../model/approvals";
import { displayCode, displayText } from "../model/displayText";
import { SafeText } from "../ui/SafeText";
import { shortPath } from "./toolSummary";

export type Decide = (id: string, decision: Omit<ApprovalDecisionMsg, "type" | "id">) => void;

interface Props {
  approvals: ApprovalsView;
  /** The agent's name (session or folder) and folder, shown on the question. */
  agent: string;
  cwd: string;
  connected: boolean;
  onDecide: Decide;
}

/** How long a closed question's outcome stays on screen. */
const RESOLVED_NOTE_MS = 6000;

export const ApprovalPanel = memo(function ApprovalPanel({ approvals, agent, cwd, connected, onDecide }: Props) {
  const { pending, answering, lastResolved } = approvals;
  const note = useResolvedNote(lastResolved);
  if (pending.length === 0) {
    if (!note) return null;
    return (
      <div className="approval-note" role="status" data-testid="approval-resolved">
        <span className="mono">{note.tool_name}</span> <span className="mono">{displayText(note.summary)}</span>:{" "}
        <strong>{note.decision === "allow" ? "allowed" : "denied"}</strong> {byText(note.by)}
        {note.reason ? <> ({displayText(note.reason)})</> : null}
      </div>
    );
  }
  const [head, ...rest] = pending;
  return (
    <section className="approvals" aria-label="Tool calls waiting for your decision" data-testid="approval-panel">
      <div className="approvals-head">
        <span className="approvals-flag">Waiting for you</span>
        <span className="approvals-count" data-testid="approval-queue">
          1 of {pending.length} waiting
        </span>
      </div>
      <ApprovalCard key={head.id} req={head} agent={agent} cwd={cwd} busy={answering.includes(head.id) || !connected} onDecide={onDecide} />
      {rest.length > 0 && (
        <ol className="approvals-next" aria-label="Next in the queue" data-testid="approval-next">
          {rest.map((r) => (
            <li key={r.id}>
              <span className="tool-name">{r.tool_name}</span> <span className="mono">{displayText(approvalSummary(r))}</span>
            </li>
          ))}
        </ol>
      )}
    </section>
  );
});

function useResolvedNote(last: ApprovalsView["lastResolved"]) {
  const [shown, setShown] = useState<number | null>(null);
  const seen = useRef(last?.seq ?? 0);
  useEffect(() => {
    if (!last || last.seq === seen.current) return;
    seen.current = last.seq;
    setShown(last.seq);
    const t = setTimeout(() => setShown(null), RESOLVED_NOTE_MS);
    return () => clearTimeout(t);
  }, [last]);
  return last && shown === last.seq ? last.record : null;
}

type Mode = "choose" | "deny" | "edit";

interface CardProps {
  req: ApprovalRequestMsg;
  agent: string;
  cwd: string;
  /** A decision was sent and its outcome has not arrived (or the link is down). */
  busy: boolean;
  onDecide: Decide;
}

export function ApprovalCard({ req, agent, cwd, busy, onDecide }: CardProps) {
  const [mode, setMode] = useState<Mode>("choose");
  const [reason, setReason] = useState("");
  const command = typeof req.input?.command === "string" ? req.input.command : "";
  const [edited, setEdited] = useState(command);
  const editable = canEditCommand(req);
  const decide = (d: Omit<ApprovalDecisionMsg, "type" | "id">) => {
    if (!busy) onDecide(req.id, d);
  };
  const denyNow = () => decide(reason.trim() ? { decision: "deny", reason: reason.trim() } : { decision: "deny" });
  const editNow = () => edited.trim() && decide({ decision: "allow", input: { command: edited } });
  const formKeys = (submit: () => void) => (e: KeyboardEvent) => {
    if (e.key === "Escape") setMode("choose");
    else if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) (e.preventDefault(), submit());
  };

  return (
    <article className="approval-card" data-testid="approval-card" data-approval-id={req.id} data-tool={req.tool_name} aria-busy={busy}>
      <header className="approval-title">
        <span className="tool-name">{req.tool_name}</span>
        {req.why && <span className="approval-why">asks: {displayText(req.why)}</span>}
        <Waited since={req.queued_at} />
      </header>
      <div className="approval-where muted" title={displayText(cwd)}>
        <SafeText text={agent} /> · <SafeText className="mono" text={compactPath(shortPath(cwd))} />
      </div>
      <ApprovalBody req={req} cwd={cwd} />
      {mode === "choose" && (
        <div className="approval-actions" role="group" aria-label="Decision">
          <button type="button" className="btn btn-primary" data-testid="approval-allow" disabled={busy} onClick={() => decide({ decision: "allow" })}>
            Allow
          </button>
          <button type="button" className="btn" data-testid="approval-remember" disabled={busy} onClick={() => decide({ decision: "allow", remember: true })} title="Allow, and add an allow rule so this agent does not ask again for this">
            Allow and don't ask again
          </button>
          {editable && (
            <button type="button" className="btn" data-testid="approval-edit" disabled={busy} onClick={() => (setEdited(command), setMode("edit"))}>
              Edit and allow…
            </button>
          )}
          <button type="button" className="btn btn-stop" data-testid="approval-deny" disabled={busy} onClick={() => setMode("deny")}>
            Deny…
          </button>
        </div>
      )}
      {mode === "deny" && (
        <div className="approval-form" onKeyDown={formKeys(denyNow)}>
          <label className="approval-label" htmlFor={`deny-${req.id}`}>
            Reason (optional): the model is told it
          </label>
          <textarea id={`deny-${req.id}`} data-testid="approval-reason" rows={2} maxLength={2000} value={reason} autoFocus onChange={(e) => setReason(e.target.value)} />
          <div className="approval-actions">
            <button type="button" className="btn btn-stop" data-testid="approval-deny-confirm" disabled={busy} onClick={denyNow}>
              Deny
            </button>
            <button type="button" className="btn" onClick={() => setMode("choose")}>
              Back
            </button>
          </div>
        </div>
      )}
      {mode === "edit" && (
        <div className="approval-form" onKeyDown={formKeys(editNow)}>
          <label className="approval-label" htmlFor={`edit-${req.id}`}>
            Command to run instead (the model sees what ran)
          </label>
          <textarea id={`edit-${req.id}`} className="mono" data-testid="approval-command" rows={Math.min(8, edited.split("\n").length + 1)} value={edited} autoFocus spellCheck={false} autoCapitalize="off" autoCorrect="off" onChange={(e) => setEdited(e.target.value)} />
          <div className="approval-actions">
            <button type="button" className="btn btn-primary" data-testid="approval-edit-confirm" disabled={busy || !edited.trim()} onClick={editNow}>
              Run edited command
            </button>
            <button type="button" className="btn" onClick={() => setMode("choose")}>
              Back
            </button>
          </div>
        </div>
      )}
    </article>
  );
}

/** "waiting 12 s", ticking once a second. `since` is the shim's clock (unix seconds); a page whose clock
 *  runs behind would show a negative time, which is shown as 0. */
function Waited({ since }: { since: number }) {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  return (
    <span className="approval-waited muted" data-testid="approval-waited">
      waiting {waitedText(now / 1000 - since)}
    </span>
  );
}

function ApprovalBody({ req, cwd }: { req: ApprovalRequestMsg; cwd: string }) {
  const p = req.preview;
  if (p?.kind === "diff") return <DiffPreview p={p} cwd={cwd} />;
  const command = p?.command ?? (typeof req.input?.command === "string" ? req.input.command : null);
  return (
    <>
      {command != null ? (
        <pre className="approval-code approval-command" data-testid="approval-command-text">
          {displayCode(command)}
        </pre>
      ) : (
        <pre className="approval-code approval-json">{displayCode(JSON.stringify(req.input ?? {}, null, 2))}</pre>
      )}
      {p?.error && (
        <div className="approval-error" role="note">
          {displayText(p.error)}
        </div>
      )}
    </>
  );
}

function DiffPreview({ p, cwd }: { p: ApprovalPreview; cwd: string }) {
  return (
    <div className="approval-diff" data-testid="approval-diff">
      <div className="approval-diff-head" title={p.path ? displayText(p.path) : undefined}>
        {p.path && <SafeText className="mono" text={shortPath(pathInFolder(p.path, cwd))} />}
        {p.new_file && <span className="approval-tag">new file</span>}
        {p.truncated && <span className="approval-tag">diff truncated</span>}
      </div>
      {p.error && (
        <div className="approval-error" role="note">
          {displayText(p.error)}
        </div>
      )}
      {p.diff ? (
        <pre className="approval-code diff">
          {diffRows(p.diff).map((r, i) => (
            <div key={i} className={`diff-${r.kind}`}>
              {displayCode(r.text) || " "}
            </div>
          ))}
        </pre>
      ) : (
        !p.error && <div className="muted">no changes</div>
      )}
    </div>
  );
}
