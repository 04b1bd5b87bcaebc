// Prompt input: send any time (while pi works: a follow-up, or with Alt+Enter a steer), Stop or Esc aborts,
// `/` completion of pi's commands (its built-ins run through the agent link; what this pi cannot run is said,
// never sent), `@` files, attachments by picker, paste and drop. On touch devices Enter is a newline.
import { memo, useEffect, useMemo, useRef, useState, type ClipboardEvent, type KeyboardEvent } from "react";
import type { CommandInfo, FileEntry, ModelInfo, RunCommandMsg } from "../protocol/types";
import type { ModelsView } from "../model/agentReducer";
import type { SendOptions } from "../connection/useAgentLink";
import { applyCompletion, commandCompletions, detectTrigger, fileCompletions, moveSelection, type Completion, type Trigger } from "./autocomplete";
import { MAX_ATTACHMENTS, readAttachment, type Attachment } from "./attachments";
import { argCompletions, argTrigger, imageWarning, slashAction } from "./slash";
import "./driver.css";

interface Props {
  running: boolean;
  connected: boolean;
  commands: CommandInfo[];
  files: { prefix: string; files: FileEntry[] } | null;
  onSend(text: string, attachments: Attachment[], opts?: SendOptions): void;
  onAbort(): void;
  /** pi's models (for /model, /thinking and the image warning); null until known. */
  models?: ModelsView | null;
  onRunCommand?(name: RunCommandMsg["name"], args?: string): void;
  onSetModel?(provider: string, id: string): void;
  onSetThinking?(level: string): void;
  onRename?(name: string): void;
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
  const arg = useMemo(() => argTrigger(text, caret), [text, caret]);
  const models: ModelInfo[] = p.models?.models ?? [];
  const levels = p.models?.thinkingLevels ?? [];
  const current = p.models?.current ? `${p.models.current.provider}/${p.models.current.id}` : null;
  const triggerKey = arg ? `arg:${arg.command}:${arg.query}` : trigger ? `${trigger.kind}:${trigger.start}:${trigger.query}` : null;
  const items: Completion[] = useMemo(() => {
    if (closedFor === triggerKey) return [];
    if (arg) return argCompletions(arg.command, arg.query, models, levels, arg.command === "model" ? current : (p.models?.thinkingLevel ?? null));
    if (!trigger) return [];
    if (trigger.kind === "command") return commandCompletions(p.commands, trigger.query);
    return fileCompletions(p.files?.files ?? [], trigger.query);
  }, [trigger, arg, triggerKey, closedFor, p.commands, p.files, models, levels, current, p.models?.thinkingLevel]);
  const currentInfo = models.find((m) => `${m.provider}/${m.id}` === current) ?? null;
  const noImages = attachments.some((a) => a.mime_type.startsWith("image/")) ? imageWarning(currentInfo) : null;

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

  const clear = () => {
    setText("");
    setCaret(0);
    setAttachments([]);
    setProblem(null);
  };
  const send = (deliverAs?: "steer") => {
    const t = text.trim();
    if (p.disabledReason) return;
    if (!t && attachments.length === 0) return; // pi rejects empty prompts; never send one
    const a = t.startsWith("/") ? slashAction(t, p.commands, models, levels) : ({ kind: "prompt", noEcho: false } as const);
    if (a.kind !== "prompt" && a.kind !== "refuse" && attachments.length) return setProblem(`/${a.kind} takes no attachments: remove them or send a prompt`);
    switch (a.kind) {
      case "refuse":
        return setProblem(a.message); // the text stays, so it can be fixed
      case "compact":
      case "new":
      case "reload":
        p.onRunCommand?.(a.kind, a.args);
        return clear();
      case "name":
        p.onRename?.(a.args);
        return clear();
      case "model":
        p.onSetModel?.(a.provider, a.id);
        return clear();
      case "thinking":
        p.onSetThinking?.(a.level);
        return clear();
    }
    // A listed command queued as a steer would reach the model as text: commands wait for the run to end.
    const isCommand = t.startsWith("/") && p.commands.some((c) => t === `/${c.name}` || t.startsWith(`/${c.name} `));
    const opts: SendOptions = {};
    if (deliverAs === "steer" && !isCommand) opts.deliverAs = "steer";
    if (a.noEcho) opts.noEcho = true;
    p.onSend(t, attachments, opts);
    clear();
  };

  const complete = (i: number) => {
    const item = items[i];
    if (!item) return;
    if (item.disabled) return setProblem(`${item.label}: ${item.detail ?? "not available here"}`);
    if (arg) {
      const next = text.slice(0, arg.start) + item.value + text.slice(arg.end);
      setText(next);
      setCaret(arg.start + item.value.length);
      return;
    }
    if (!trigger) return;
    const r = applyCompletion(text, trigger, item);
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
      if ((e.key === "Enter" && !arg) || e.key === "Tab") {
        e.preventDefault();
        complete(sel);
        return;
      }
      if (e.key === "Enter" && arg) {
        // An argument: Enter takes the highlighted one and runs the command at once.
        e.preventDefault();
        const item = items[sel];
        if (item) {
          if (arg.command === "model") {
            const m = models.find((x) => `${x.provider}/${x.id}` === item.value);
            if (m) p.onSetModel?.(m.provider, m.id);
          } else p.onSetThinking?.(item.value);
          clear();
        }
        return;
      }
      if (e.key === "Escape") {
        e.preventDefault();
        setClosedFor(triggerKey);
        return;
      }
    }
    if (e.key === "Escape" && p.running) {
      e.preventDefault(); // as in pi: Esc aborts the run
      p.onAbort();
      return;
    }
    if (e.key === "Enter" && e.altKey && p.running) {
      e.preventDefault();
      send("steer");
      return;
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
            <li
              key={it.value}
              role="option"
              aria-selected={i === sel}
              aria-disabled={it.disabled || undefined}
              className={`${i === sel ? "selected" : ""}${it.disabled ? " unavailable" : ""}`}
              onMouseDown={(e) => (e.preventDefault(), complete(i))}
            >
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
              {a.mime_type.startsWith("image/") ? <img className="thumb" src={`data:${a.mime_type};base64,${a.data}`} alt="" /> : "text ·"} {a.name}
              <button type="button" aria-label={`remove ${a.name}`} onClick={() => setAttachments((c) => c.filter((_, j) => j !== i))}>
                ×
              </button>
            </span>
          ))}
          {noImages && (
            <span className="attach-warning" role="alert" data-testid="image-warning">
              {noImages}
            </span>
          )}
          {problem && (
            <span className="attach-problem" role="alert" data-testid="composer-problem">
              {problem}
            </span>
          )}
        </div>
      )}
      <div className={`composer-row${p.running ? " busy" : ""}`}>
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
          placeholder={p.disabledReason ? "pi has exited" : p.running ? "Queue a follow-up… (pi is working)" : "Message pi…  (/ commands, @ files)"}
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
        {p.running && (
          <button type="button" className="btn" onClick={() => send("steer")} disabled={!text.trim() && attachments.length === 0} aria-label="Steer" title="Steer: pi reads it after its current tool calls (Alt+Enter)">
            Steer
          </button>
        )}
        <button
          type="button"
          className="btn btn-primary"
          onClick={() => send()}
          disabled={!!p.disabledReason || (!text.trim() && attachments.length === 0)}
          aria-label={p.running ? "Send follow-up" : "Send"}
          title={p.running ? "Follow-up: sent when pi finishes this run; until then you can edit or cancel it (Enter)" : undefined}
        >
          Send
        </button>
      </div>
      {p.disabledReason ? (
        <div className="composer-note" data-testid="composer-disabled">
          {p.disabledReason}
        </div>
      ) : !p.connected ? (
        <div className="composer-note">Not connected: prompts are kept and sent when the link is back.</div>
      ) : (
        p.running && (
          <div className="composer-hint" data-testid="composer-hint">
            pi is working: Enter queues a follow-up · Alt+Enter steers · Esc stops
          </div>
        )
      )}
    </div>
  );
});
