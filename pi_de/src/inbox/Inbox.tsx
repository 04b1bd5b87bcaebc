// The inbox: what in every agent on every machine needs a person, acted on in place (allow / deny,
// reply, abort, dismiss) or opened. Every name and summary is shown through SafeText (plain text,
// hidden characters visible): nothing from an agent is ever rendered as HTML or markdown.
import { memo, useState } from "react";
import type { AttentionItem, NodeInfo } from "../protocol/types";
import { agentsToRead, ago, itemAgentName, KIND_LABEL, orderedItems, type InboxKind, type InboxState } from "../model/inbox";
import { SafeText } from "../ui/SafeText";
import { displayText } from "../model/displayText";
import { shortPath } from "../model/nodeMeta";
import { useNow } from "../ui/useNow";
import type { InboxActions } from "./useInboxActions";
import "./inbox.css";

/** Rows rendered at first; more on request (the inbox holds up to 20,000 open items). */
export const PAGE = 300;

const ICON: Record<InboxKind, string> = {
  approval: "⚑",
  question: "?",
  finished: "✓",
  error: "✕",
  stalled: "◷",
  budget: "$",
  exited: "■",
};

interface Props {
  inbox: InboxState;
  nodes: Record<string, NodeInfo>;
  several: boolean;
  actions: InboxActions;
  onOpen(nodeId: string): void;
  /** A "back to the agents" button (the phone's full-screen inbox). */
  onBack?(): void;
  /** Show only this many items, with a link to the whole inbox (the phone's first screen). */
  limit?: number;
  onShowAll?(): void;
}

export function Inbox({ inbox, nodes, several, actions, onOpen, onBack, limit, onShowAll }: Props) {
  const [shown, setShown] = useState(PAGE);
  const [markError, setMarkError] = useState<string | null>(null);
  const [marking, setMarking] = useState(false);
  const now = useNow();
  const items = orderedItems(inbox);
  const toRead = agentsToRead(inbox);
  const max = limit ?? shown;
  const compact = limit !== undefined;
  const markAll = () => {
    setMarking(true);
    setMarkError(null);
    actions
      .markRead(toRead)
      .catch((e: Error) => setMarkError(e.message))
      .finally(() => setMarking(false));
  };
  return (
    <section className={`inbox${compact ? " inbox-compact" : ""}`} data-testid={compact ? "inbox-home" : "inbox"} aria-label="Inbox">
      <header className="inbox-head">
        {onBack && (
          <button type="button" className="btn inbox-back" onClick={onBack} aria-label="Back to agents">
            ‹ Agents
          </button>
        )}
        <h2>
          Inbox{" "}
          <span className="badge" data-testid="inbox-count">
            {items.length}
          </span>
        </h2>
        <button type="button" className="btn inbox-mark-all" data-testid="inbox-mark-all-read" disabled={toRead.length === 0 || marking} onClick={markAll}>
          Mark all read
        </button>
      </header>
      {markError && (
        <div className="inbox-error" role="alert">
          {markError}
        </div>
      )}
      {items.length === 0 ? (
        <p className="muted inbox-empty" data-testid="inbox-empty">
          {compact
            ? "Nothing needs you right now."
            : "Nothing needs you right now. Tool calls waiting for your decision, pi's questions, and runs that finished or failed, from every agent on every machine, appear here."}
        </p>
      ) : (
        <ul className="inbox-list">
          {items.slice(0, max).map((item) => (
            <ItemRow key={item.id} item={item} node={nodes[item.node_id]} several={several} actions={actions} onOpen={onOpen} now={now} />
          ))}
        </ul>
      )}
      {items.length > max &&
        (compact ? (
          <button type="button" className="link-btn inbox-more" data-testid="inbox-show-all" onClick={onShowAll}>
            Show all {items.length}
          </button>
        ) : (
          <button type="button" className="btn inbox-more" onClick={() => setShown((n) => n + PAGE)}>
            Show {Math.min(PAGE, items.length - max)} more of {items.length - max}
          </button>
        ))}
    </section>
  );
}

type Mode = "idle" | "deny" | "reply";

const ItemRow = memo(function ItemRow({
  item,
  node,
  several,
  actions,
  onOpen,
  now,
}: {
  item: AttentionItem;
  node: NodeInfo | undefined;
  several: boolean;
  actions: InboxActions;
  onOpen(id: string): void;
  now: number;
}) {
  const [mode, setMode] = useState<Mode>("idle");
  const [text, setText] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const live = !!node && node.status !== "offline";
  const run = (what: Promise<void>, doneText: string | null) => {
    setBusy(true);
    setError(null);
    what.then(
      () => {
        setBusy(false);
        setMode("idle");
        setText("");
        setDone(doneText);
      },
      (e: Error) => {
        setBusy(false);
        setError(e.message || String(e));
      },
    );
  };
  const canDecide = item.kind === "approval" && !!item.approval_id && live;
  const canReply = live && item.kind !== "approval" && item.kind !== "question";
  const canAbort = live && (node?.activity === "working" || item.kind === "stalled" || item.kind === "budget");
  return (
    <li className={`inbox-item kind-${item.kind}`} data-testid="inbox-item" data-item-id={item.id} data-kind={item.kind} data-agent-id={item.node_id}>
      <div className="inbox-line">
        <span className="inbox-icon" aria-hidden="true">
          {ICON[item.kind] ?? "•"}
        </span>
        <span className="inbox-kind">{KIND_LABEL[item.kind] ?? item.kind}</span>
        <SafeText className="inbox-agent" text={itemAgentName(item)} />
        {several && item.machine && <SafeText className="inbox-machine muted" text={item.machine} />}
        {item.cwd && (
          <span className="inbox-folder muted mono" title={displayText(item.cwd)}>
            <SafeText text={shortPath(item.cwd)} />
          </span>
        )}
        <span className="inbox-time muted" title={new Date(item.created_at * 1000).toLocaleString()}>
          {ago(item.created_at, now)}
        </span>
      </div>
      <div className="inbox-summary" data-testid="inbox-summary">
        <SafeText text={item.summary} />
      </div>
      {mode === "deny" && (
        <form
          className="inbox-form"
          onSubmit={(e) => {
            e.preventDefault();
            run(actions.decide(item, "deny", text), "Denied");
          }}
        >
          <input autoFocus aria-label="Reason (optional)" placeholder="Reason (optional): the model is told" data-testid="inbox-deny-reason" value={text} onChange={(e) => setText(e.target.value)} maxLength={2000} />
          <button type="submit" className="btn btn-stop" data-testid="inbox-deny-confirm" disabled={busy}>
            Deny
          </button>
          <button type="button" className="btn" onClick={() => setMode("idle")} disabled={busy}>
            Cancel
          </button>
        </form>
      )}
      {mode === "reply" && (
        <form
          className="inbox-form"
          onSubmit={(e) => {
            e.preventDefault();
            if (text.trim()) run(actions.reply(item, text), "Sent");
          }}
        >
          <input autoFocus aria-label="Reply" placeholder="A prompt for this agent" data-testid="inbox-reply-text" value={text} onChange={(e) => setText(e.target.value)} />
          <button type="submit" className="btn btn-primary" data-testid="inbox-reply-send" disabled={busy || !text.trim()}>
            Send
          </button>
          <button type="button" className="btn" onClick={() => setMode("idle")} disabled={busy}>
            Cancel
          </button>
        </form>
      )}
      <div className="inbox-actions">
        {canDecide && mode === "idle" && (
          <>
            <button type="button" className="btn btn-primary" data-testid="inbox-allow" disabled={busy || !!done} onClick={() => run(actions.decide(item, "allow"), "Allowed")}>
              Allow
            </button>
            <button type="button" className="btn" data-testid="inbox-deny" disabled={busy || !!done} onClick={() => setMode("deny")}>
              Deny…
            </button>
          </>
        )}
        {canReply && mode === "idle" && (
          <button type="button" className="btn" data-testid="inbox-reply" disabled={busy} onClick={() => setMode("reply")}>
            Reply…
          </button>
        )}
        {canAbort && (
          <button type="button" className="btn" data-testid="inbox-abort" disabled={busy} onClick={() => run(actions.abort(item), "Abort sent")}>
            Abort
          </button>
        )}
        {node && (
          <button type="button" className="btn" data-testid="inbox-open" onClick={() => onOpen(item.node_id)}>
            Open
          </button>
        )}
        <button type="button" className="btn" data-testid="inbox-dismiss" disabled={busy} title="Remove from the inbox everywhere" onClick={() => run(actions.dismiss(item), null)}>
          Dismiss
        </button>
        {busy && <span className="muted inbox-status">working…</span>}
        {done && !busy && (
          <span className="muted inbox-status" data-testid="inbox-done" role="status">
            {done}
          </span>
        )}
      </div>
      {error && (
        <div className="inbox-error" role="alert" data-testid="inbox-error">
          {error}
        </div>
      )}
    </li>
  );
});
