// A spawned agent's `tmux attach` command with a copy button, and the machine to run it on. The session
// comes from the roster (NodeInfo.tmux_session), so it is still there after a reload.
import { useEffect, useRef, useState } from "react";
import { SafeText } from "../ui/SafeText";
import { attachCommand } from "./attach";

export function TmuxAttach({ session, machine }: { session: string; machine: string }) {
  const cmd = attachCommand(session);
  const [copied, setCopied] = useState<"yes" | "no" | null>(null);
  const field = useRef<HTMLElement>(null);
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  useEffect(() => () => clearTimeout(timer.current), []);
  const copy = async () => {
    let ok = false;
    try {
      await navigator.clipboard.writeText(cmd);
      ok = true;
    } catch {
      // no clipboard API (plain http on another host): select the text so Ctrl+C copies it
      const sel = window.getSelection();
      if (field.current && sel) {
        sel.selectAllChildren(field.current);
        ok = typeof document.execCommand === "function" && document.execCommand("copy");
      }
    }
    setCopied(ok ? "yes" : "no");
    clearTimeout(timer.current);
    timer.current = setTimeout(() => setCopied(null), 2000);
  };
  return (
    <section className="tmux-attach" data-testid="tmux-attach">
      <h3>Terminal</h3>
      <div className="tmux-row">
        <code ref={field} className="mono tmux-cmd" data-testid="tmux-cmd" aria-label="tmux attach command">
          <SafeText text={cmd} />
        </code>
        <button type="button" className="btn tmux-copy" onClick={() => void copy()} aria-label="Copy the tmux attach command">
          {copied === "yes" ? "Copied" : "Copy"}
        </button>
      </div>
      <div className="muted small" data-testid="tmux-where">
        {copied === "no" ? "Selected: press Ctrl+C to copy. " : ""}Run it in a terminal on <SafeText text={machine} /> to use this pi in its own TUI.
      </div>
    </section>
  );
}
