// The prompts waiting for pi, above the composer as in pi's terminal: follow-ups this page holds until the run
// ends (edit, cancel), and steers or follow-ups already in pi's own queue (pi has no API to take one back).
import { memo, useState } from "react";
import { isQueued, type PendingPrompt } from "../model/agentReducer";
import { AttachmentStrip } from "./MessageView";
import "./driver.css";

interface Props {
  pending: PendingPrompt[];
  onEdit(id: string, text: string): void;
  onCancel(id: string): void;
}

export const QueuePanel = memo(function QueuePanel({ pending, onEdit, onCancel }: Props) {
  const queued = pending.filter(isQueued);
  if (!queued.length) return null;
  return (
    <div className="queue" data-testid="queue" aria-label="Queued prompts">
      {queued.map((p) => (
        <QueueItem key={p.id} p={p} onEdit={onEdit} onCancel={onCancel} />
      ))}
    </div>
  );
});

function QueueItem({ p, onEdit, onCancel }: { p: PendingPrompt; onEdit(id: string, text: string): void; onCancel(id: string): void }) {
  const [draft, setDraft] = useState<string | null>(null);
  const held = p.state === "held";
  const kind = p.deliverAs === "steer" ? "steer" : "follow-up";
  const note = held
    ? "sent when pi finishes this run"
    : p.state === "sending"
      ? "sending to pi…"
      : `in pi's queue: pi has no way to withdraw it (${kind === "steer" ? "delivered after the current tool calls" : "delivered when pi finishes"})`;
  const save = () => {
    const t = (draft ?? "").trim();
    if (t) onEdit(p.id, t);
    setDraft(null);
  };
  return (
    <div className="queue-item" data-role="pending" data-state={p.state} data-kind={kind}>
      <span className="queue-kind">{kind}</span>
      <div className="queue-text">
        {draft !== null ? (
          <textarea
            aria-label="Edit queued prompt"
            value={draft}
            autoFocus
            onChange={(e) => setDraft(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === "Enter" && !e.shiftKey) (e.preventDefault(), save());
              if (e.key === "Escape") (e.preventDefault(), e.stopPropagation(), setDraft(null));
            }}
          />
        ) : (
          <span className="user-text">{p.text}</span>
        )}
        <AttachmentStrip
          images={p.attachments.filter((a) => a.mime_type.startsWith("image/")).map((a) => ({ name: a.name, mime: a.mime_type, data: a.data }))}
          files={p.attachments.filter((a) => !a.mime_type.startsWith("image/")).map((a) => ({ name: a.name }))}
        />
        <div className="queue-note">{note}</div>
      </div>
      {held && (
        <div className="queue-actions">
          {draft !== null ? (
            <button type="button" className="link-btn" onClick={save}>
              Save
            </button>
          ) : (
            <button type="button" className="link-btn" onClick={() => setDraft(p.text)} aria-label={`Edit queued prompt ${p.text.slice(0, 40)}`}>
              Edit
            </button>
          )}
          <button type="button" className="link-btn" onClick={() => onCancel(p.id)} aria-label={`Cancel queued prompt ${p.text.slice(0, 40)}`}>
            Cancel
          </button>
        </div>
      )}
    </div>
  );
}
