// Prompt input: send any time (a follow-up while pi works), stop, `/` and `@` completion,
// attachments by picker, paste and drop. On touch devices Enter is a newline and the button sends.
import { memo, useEffect, useMemo, useRef, useState, type ClipboardEvent, type KeyboardEvent } from "react";
import type { CommandInfo, FileEntry } from "../protocol/types";
import { applyCompletion, commandCompletions, detectTrigger, fileCompletions, moveSelection, type Trigger } from "./autocomplete";
import { MAX_ATTACHMENTS, readAttachment, type Attachment } from "./attachments";

interface Props {
  running: boolean;
  connected: boolean;
  commands: CommandInfo[];
  files: { prefix: string; files: FileEntry[] } | null;
  onSend(text: string, attachments: Attachment[]): void;
  onAbort(): void;
  onListCommands(): void;
  onListFiles(prefix: string): void;
  /** Files dropped on the chat stage are handed in from outside. */
  dropped: File[];
  /** Set when no prompt can ever reach this agent (its pi exited): the composer is off and says why. */
  disabledReason?: string | null;
}

const isTouch = () => typeof matchMedia === "function" && matchMedia("(pointer: coarse)").matches;

// Memoised: its props do not change while pi streams, so typing stays responsive during a stream.
export const Composer = memo(function Composer(p: Props) {
  const [text, setText] = useState("");
  const [caret, setCaret] = useState(0);
  const [attachments, setAttachments] = useState<Attachment[]>([]);
  const [problem, setProblem] = useState<string | null>(null);
  const [sel, setSel] = useState(0);
  const [closedFor, setClosedFor] = useState<string | null>(null);
  const ta = useRef<HTMLTextAreaElement>(null);
  const fileInput = useRef<HTMLInputElement>(null);

  const trigger: Trigger | null = useMemo(() => detectTrigger(text, caret), [text, caret]);
  const triggerKey = trigger ? `${trigger.kind}:${trigger.start}:${trigger.query}` : null;
  const items = useMemo(() => {
    if (!trigger || closedFor === triggerKey) return [];
    if (trigger.kind === "command") return commandCompletions(p.commands, trigger.query);
    return fileCompletions(p.files?.files ?? [], trigger.query);
  }, [trigger, triggerKey, closedFor, p.commands, p.files]);

  // Ask the agent for candidates as the trigger changes (commands once per `/`, files per prefix).
  const { onListCommands, onListFiles } = p;
  const isCommand = trigger?.kind === "command";
  useEffect(() => {
    if (isCommand) onListCommands(); // once per `/`: extensions may have added commands since init
  }, [isCommand, onListCommands]);
  useEffect(() => {
    if (trigger?.kind !== "file") return;
    const dir = trigger.query.includes("/") ? trigger.query.slice(0, trigger.query.lastIndexOf("/") + 1) : "";
    const t = setTimeout(() => onListFiles(trigger.query || dir), 120);
    return () => clearTimeout(t);
  }, [trigger?.kind, trigger?.query, onListFiles]);
  useEffect(() => setSel(0), [triggerKey]);

  const addFiles = async (files: File[]) => {
    setProblem(null);
    for (const f of files.slice(0, MAX_ATTACHMENTS)) {
      try {
        const a = await readAttachment(f);
        setAttachments((cur) => (cur.length >= MAX_ATTACHMENTS ? cur : [...cur, a]));
      } catch (e) {
        setProblem((e as Error).message);
      }
    }
  };
  useEffect(() => {
    if (p.dropped.length) void addFiles(p.dropped);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [p.dropped]);

  const send = () => {
    const t = text.trim();
    if (p.disabledReason) return;
    if (!t && attachments.length === 0) return; // pi rejects empty prompts; never send one
    p.onSend(t, attachments);
    setText("");
    setCaret(0);
    setAttachments([]);
    setProblem(null);
  };

  const complete = (i: number) => {
    if (!trigger || !items[i]) return;
    const r = applyCompletion(text, trigger, items[i]);
    setText(r.text);
    setCaret(r.caret);
    requestAnimationFrame(() => {
      ta.current?.setSelectionRange(r.caret, r.caret);
      ta.current?.focus();
    });
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (items.length) {
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        e.preventDefault();
        setSel((s) => moveSelection(s, e.key === "ArrowDown" ? 1 : -1, items.length));
        return;
      }
      if (e.key === "Enter" || e.key === "Tab") {
        e.preventDefault();
        complete(sel);
        return;
      }
      if (e.key === "Escape") {
        e.preventDefault();
        setClosedFor(triggerKey);
        return;
      }
    }
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing && !isTouch()) {
      e.preventDefault();
      send();
    }
  };

  const onPaste = (e: ClipboardEvent<HTMLTextAreaElement>) => {
    const files = Array.from(e.clipboardData.files);
    if (files.length) {
      e.preventDefault();
      void addFiles(files);
    }
  };

  return (
    <div className="composer">
      {items.length > 0 && (
        <ul className="autocomplete" role="listbox" data-testid="autocomplete">
          {items.map((it, i) => (
            <li key={it.value} role="option" aria-selected={i === sel} className={i === sel ? "selected" : ""} onMouseDown={(e) => (e.preventDefault(), complete(i))}>
              <span className="ac-label">{it.label}</span>
              {it.detail && <span className="ac-detail">{it.detail}</span>}
            </li>
          ))}
        </ul>
      )}
      {(attachments.length > 0 || problem) && (
        <div className="attachments">
          {attachments.map((a, i) => (
            <span key={i} className="chip" data-testid="attachment">
              {a.mime_type.startsWith("image/") ? "image" : "text"} · {a.name}
              <button type="button" aria-label={`remove ${a.name}`} onClick={() => setAttachments((c) => c.filter((_, j) => j !== i))}>
                ×
              </button>
            </span>
          ))}
          {problem && <span className="attach-problem">{problem}</span>}
        </div>
      )}
      <div className="composer-row">
        <button type="button" className="icon-btn" title="Attach images or text files" aria-label="Attach files" disabled={!!p.disabledReason} onClick={() => fileInput.current?.click()}>
          <svg width="18" height="18" viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth="2" aria-hidden="true">
            <path d="M21 11.5l-8.6 8.6a5.5 5.5 0 01-7.8-7.8l8.6-8.6a3.7 3.7 0 015.2 5.2l-8.6 8.6a1.8 1.8 0 01-2.6-2.6l7.9-7.9" />
          </svg>
        </button>
        <input ref={fileInput} type="file" multiple hidden accept="image/*,text/*,.md,.json,.ts,.tsx,.js,.py,.yaml,.yml,.toml,.sh" onChange={(e) => (void addFiles(Array.from(e.target.files ?? [])), (e.target.value = ""))} />
        <textarea
          ref={ta}
          value={text}
          rows={1}
          placeholder={p.disabledReason ? "pi has exited" : p.running ? "Send a follow-up… (pi is working)" : "Message pi…  (/ commands, @ files)"}
          disabled={!!p.disabledReason}
          aria-label="Prompt"
          onChange={(e) => (setText(e.target.value), setCaret(e.target.selectionStart ?? e.target.value.length))}
          onSelect={(e) => setCaret(e.currentTarget.selectionStart ?? 0)}
          onKeyDown={onKeyDown}
          onPaste={onPaste}
        />
        {p.running && (
          <button type="button" className="btn btn-stop" onClick={p.onAbort} aria-label="Stop" title="Stop the agent">
            ■ Stop
          </button>
        )}
        <button type="button" className="btn btn-primary" onClick={send} disabled={!!p.disabledReason || (!text.trim() && attachments.length === 0)} aria-label="Send">
          Send
        </button>
      </div>
      {p.disabledReason ? (
        <div className="composer-note" data-testid="composer-disabled">
          {p.disabledReason}
        </div>
      ) : (
        !p.connected && <div className="composer-note">Not connected: prompts are kept and sent when the link is back.</div>
      )}
    </div>
  );
});
