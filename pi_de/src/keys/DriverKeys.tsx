// The keyboard glue: one window listener that asks keymap.ts what a key means and does it, the `?` overlay
// that lists the keys, and the sidebar link that opens it. The open agent's run is aborted through
// ABORT_EVENT, which its ChatStage listens for (it owns the agent link).
import { useCallback, useEffect, useRef, useState } from "react";
import type { RosterState } from "../model/rosterReducer";
import type { MachineInfo } from "../protocol/types";
import { ABORT_EVENT, agentOrder, isTypingTarget, KEY_MAP, keyAction, stepAgent } from "./keymap";
import "./keys.css";

interface Props {
  roster: RosterState;
  machines: MachineInfo[];
  selected: string | null;
  onSelect(id: string): void;
  onInbox(): void;
}

const OPEN_DIALOG = "[role=dialog], [role=alertdialog], [role=menu]";

export function DriverKeys({ roster, machines, selected, onSelect, onInbox }: Props) {
  const [help, setHelp] = useState(false);
  // The listener is installed once; it reads the newest props through this ref.
  const latest = useRef({ roster, machines, selected, onSelect, onInbox });
  latest.current = { roster, machines, selected, onSelect, onInbox };

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.defaultPrevented) return; // the composer (Esc aborts, arrows in its completion list) or a dialog took it
      const action = keyAction(e, { typing: isTypingTarget(document.activeElement as HTMLElement | null), dialogOpen: !!document.querySelector(OPEN_DIALOG) });
      if (!action) return;
      const p = latest.current;
      switch (action) {
        case "next-agent":
        case "prev-agent": {
          const next = stepAgent(agentOrder(p.roster, p.machines), p.selected, action === "next-agent" ? 1 : -1);
          if (!next || next === p.selected) return;
          p.onSelect(next);
          break;
        }
        case "focus-composer": {
          const ta = document.querySelector<HTMLTextAreaElement>("[data-testid=chat-stage] textarea[aria-label=Prompt]");
          if (!ta || ta.disabled) return;
          ta.focus();
          break;
        }
        case "open-inbox":
          p.onInbox();
          break;
        case "abort":
          if (!p.selected) return;
          window.dispatchEvent(new Event(ABORT_EVENT));
          break;
        case "help":
          setHelp(true);
          break;
      }
      e.preventDefault();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);

  const close = useCallback(() => setHelp(false), []);
  return (
    <>
      <button type="button" className="link-btn keys-link" data-testid="keys-link" onClick={() => setHelp(true)} aria-keyshortcuts="?">
        Keyboard shortcuts
      </button>
      {help && <KeysOverlay onClose={close} />}
    </>
  );
}

/** The list of keys: a modal dialog that closes on Esc, on a click outside and with its button; Tab stays inside. */
export function KeysOverlay({ onClose }: { onClose(): void }) {
  const box = useRef<HTMLDivElement>(null);
  const closeBtn = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    const before = document.activeElement as HTMLElement | null;
    closeBtn.current?.focus();
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape" || e.key === "?") {
        e.preventDefault();
        e.stopPropagation();
        onClose();
      } else if (e.key === "Tab" && box.current) {
        const items = Array.from(box.current.querySelectorAll<HTMLElement>("button, [href], [tabindex]:not([tabindex='-1'])"));
        if (items.length === 0) return;
        const first = items[0];
        const last = items[items.length - 1];
        const inside = box.current.contains(document.activeElement);
        if (e.shiftKey && (document.activeElement === first || !inside)) {
          e.preventDefault();
          last.focus();
        } else if (!e.shiftKey && (document.activeElement === last || !inside)) {
          e.preventDefault();
          first.focus();
        }
      }
    };
    window.addEventListener("keydown", onKey, true);
    return () => {
      window.removeEventListener("keydown", onKey, true);
      before?.focus?.();
    };
  }, [onClose]);
  return (
    <div className="modal-backdrop" data-testid="keys-backdrop" onMouseDown={(e) => e.target === e.currentTarget && onClose()}>
      <div ref={box} className="modal keys-overlay" role="dialog" aria-modal="true" aria-labelledby="keys-title" data-testid="keys-overlay">
        <div className="keys-head">
          <h2 id="keys-title">Keyboard shortcuts</h2>
          <button ref={closeBtn} type="button" className="icon-btn" onClick={onClose} aria-label="Close keyboard shortcuts">
            ✕
          </button>
        </div>
        <table className="keys-table">
          <tbody>
            {KEY_MAP.map((b) => (
              <tr key={b.action}>
                <td>
                  {b.keys.map((k, i) => (
                    <span key={k}>
                      {i > 0 && <span className="muted"> or </span>}
                      <kbd>{k}</kbd>
                    </span>
                  ))}
                </td>
                <td>{b.label}</td>
              </tr>
            ))}
          </tbody>
        </table>
        <p className="muted small">Single keys do nothing while you type in a text field. In the composer: Enter sends, Shift+Enter adds a line, Alt+Enter steers a running agent.</p>
      </div>
    </div>
  );
}
