// What the stage shows for a URL that names no live screen: an agent id this hypivisor does not know,
// and the inbox, whose URL is reserved before the screen exists.
import { SafeText } from "../ui/SafeText";

export function NoSuchAgent({ id, onBack }: { id: string; onBack(): void }) {
  return (
    <div className="stage-empty no-such-agent" data-testid="no-such-agent" role="status">
      <div>
        <h2>No such agent</h2>
        <p className="muted">
          No agent with the id <SafeText className="mono" text={id} /> is registered with this hypivisor. Its pi may have exited, or the link is from another
          hypivisor.
        </p>
        <button type="button" className="btn" onClick={onBack}>
          Show all agents
        </button>
      </div>
    </div>
  );
}

export function InboxScreen({ onBack }: { onBack(): void }) {
  return (
    <div className="stage-empty" data-testid="inbox" role="status">
      <div>
        <h2>Inbox</h2>
        <p className="muted">The inbox is not built yet.</p>
        <button type="button" className="btn" onClick={onBack}>
          Show all agents
        </button>
      </div>
    </div>
  );
}
