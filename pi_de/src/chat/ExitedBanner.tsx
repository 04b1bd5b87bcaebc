// An agent whose pi quit: say so and when, keep the conversation readable above, and offer to resume
// the same session in a new pi in the same folder (spawn_agent with session_file).
import { useState } from "react";
import { displayText } from "../model/displayText";

export function exitedAt(at: number): string {
  const d = new Date(at);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

interface Props {
  at: number;
  sessionFile: string | null;
  onResume: (() => Promise<void>) | null;
}

export function ExitedBanner({ at, sessionFile, onResume }: Props) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const resume = async () => {
    if (!onResume) return;
    setBusy(true);
    setError(null);
    try {
      await onResume();
    } catch (e) {
      setError((e as Error).message);
      setBusy(false);
    }
  };
  const can = !!onResume && !!sessionFile;
  return (
    <div className="banner exited" role="status" data-testid="exited-banner">
      <span>pi exited at {exitedAt(at)}.</span>
      <button
        type="button"
        className="btn btn-primary"
        onClick={resume}
        disabled={!can || busy}
        title={sessionFile ? `pi --session ${displayText(sessionFile)}, in a new tmux session in the same folder` : "This pi did not say which session file it used"}
      >
        {busy ? "Starting pi…" : "Resume in a new pi"}
      </button>
      {error && (
        <span className="exited-error" role="alert" data-testid="resume-error">
          {displayText(error)}
        </span>
      )}
    </div>
  );
}
