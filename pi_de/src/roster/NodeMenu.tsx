// A roster card's actions: rename the pi session, or stop the agent (after a confirmation). Both go to the
// agent over a short-lived link (useNodeActions), so they work without opening its conversation.
import { useEffect, useRef, useState } from "react";
import { SafeText } from "../ui/SafeText";
import "./nodeMenu.css";

interface Props {
  /** What the card calls the agent (its session name, else its folder). */
  title: string;
  sessionName: string | null;
  /** The agent runs in a tmux session a spawn made: stopping it ends that session too. */
  inTmux?: boolean;
  disabled?: boolean;
  onStop(): Promise<void>;
  onRename(name: string): Promise<void>;
}

type Mode = "closed" | "menu" | "rename" | "confirm";

export function NodeMenu({ title, sessionName, inTmux = false, disabled = false, onStop, onRename }: Props) {
  const [mode, setMode] = useState<Mode>("closed");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [draft, setDraft] = useState("");
  const wrap = useRef<HTMLDivElement>(null);
  const trigger = useRef<HTMLButtonElement>(null);

  const close = (focusBack = true) => {
    setMode("closed");
    setError(null);
    if (focusBack) trigger.current?.focus();
  };
  // The menu closes on Esc and on a click elsewhere; the dialogs close on Esc (not while the request runs).
  useEffect(() => {
    if (mode === "closed") return;
    const onKey = (e: KeyboardEvent) => {
      if (e.key !== "Escape" || busy) return;
      e.preventDefault();
      e.stopPropagation(); // Esc here closes this, it does not also abort a run
      close();
    };
    const onDown = (e: MouseEvent) => {
      if (mode === "menu" && wrap.current && !wrap.current.contains(e.target as Node)) close(false);
    };
    window.addEventListener("keydown", onKey, true);
    window.addEventListener("mousedown", onDown);
    return () => {
      window.removeEventListener("keydown", onKey, true);
      window.removeEventListener("mousedown", onDown);
    };
  }, [mode, busy]); // eslint-disable-line react-hooks/exhaustive-deps

  const run = async (what: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    try {
      await what();
      close();
    } catch (e) {
      setError((e as Error).message || String(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="node-menu" ref={wrap}>
      <button
        ref={trigger}
        type="button"
        className="icon-btn node-menu-btn"
        aria-label={`Actions for ${title}`}
        aria-haspopup="menu"
        aria-expanded={mode === "menu"}
        disabled={disabled}
        title="Rename or stop this agent"
        onClick={() => setMode((m) => (m === "menu" ? "closed" : "menu"))}
      >
        ⋯
      </button>
      {mode === "menu" && (
        <div className="node-menu-list" role="menu" aria-label={`Actions for ${title}`}>
          <button
            type="button"
            role="menuitem"
            autoFocus
            onClick={() => {
              setDraft(sessionName ?? "");
              setMode("rename");
            }}
          >
            Rename…
          </button>
          <button type="button" role="menuitem" className="danger" onClick={() => setMode("confirm")}>
            Stop agent…
          </button>
        </div>
      )}
      {mode === "rename" && (
        <div className="modal-backdrop" onMouseDown={(e) => e.target === e.currentTarget && !busy && close()}>
          <form
            className="modal node-dialog"
            role="dialog"
            aria-modal="true"
            aria-labelledby="node-rename-title"
            data-testid="rename-dialog"
            onSubmit={(e) => {
              e.preventDefault();
              const name = draft.trim();
              if (name) void run(() => onRename(name));
            }}
          >
            <h2 id="node-rename-title">
              Rename <SafeText text={title} />
            </h2>
            <label className="field">
              <span>Session name (pi&apos;s own, as /name sets it)</span>
              <input autoFocus aria-label="New session name" value={draft} maxLength={200} onChange={(e) => setDraft(e.target.value)} disabled={busy} />
            </label>
            {error && (
              <div className="node-dialog-error" role="alert">
                {error}
              </div>
            )}
            <div className="modal-actions">
              <button type="button" className="btn" onClick={() => close()} disabled={busy}>
                Cancel
              </button>
              <button type="submit" className="btn btn-primary" disabled={busy || !draft.trim()}>
                {busy ? "Renaming…" : "Rename"}
              </button>
            </div>
          </form>
        </div>
      )}
      {mode === "confirm" && (
        <div className="modal-backdrop" onMouseDown={(e) => e.target === e.currentTarget && !busy && close()}>
          <div className="modal node-dialog" role="alertdialog" aria-modal="true" aria-labelledby="node-stop-title" aria-describedby="node-stop-text" data-testid="stop-dialog">
            <h2 id="node-stop-title">
              Stop <SafeText text={title} />?
            </h2>
            <p id="node-stop-text">
              pi exits cleanly, as with <code>/quit</code> (a running turn is aborted first){inTmux ? ", and its tmux session ends" : ""}. The
              conversation stays in its session file: you can resume it in a new pi.
            </p>
            {error && (
              <div className="node-dialog-error" role="alert">
                {error}
              </div>
            )}
            <div className="modal-actions">
              <button type="button" className="btn" autoFocus onClick={() => close()} disabled={busy}>
                Cancel
              </button>
              <button type="button" className="btn btn-stop" onClick={() => void run(onStop)} disabled={busy}>
                {busy ? "Stopping…" : "Stop agent"}
              </button>
            </div>
          </div>
        </div>
      )}
    </div>
  );
}
