// The chat header's model and thinking-level pickers, from the agent's own available models (models_list).
// On a phone both sit behind one chip ("fake-model · high ▾") so the header stays one short line of meta;
// the chip opens the same two pickers in a panel under the header.
import { memo, useEffect, useRef, useState } from "react";
import type { ModelsView } from "../model/agentReducer";
import "./driver.css";

interface Props {
  models: ModelsView | null;
  disabled: boolean;
  onModel(provider: string, id: string): void;
  onThinking(level: string): void;
  /** A phone: show a chip that opens the pickers instead of the pickers themselves. */
  compact?: boolean;
}

/** What the chip says: the model's id without its provider, and the thinking level unless it is off. */
export function modelChipText(models: ModelsView): string {
  const id = models.current?.id ?? "no model";
  const level = models.thinkingLevel;
  return level && level !== "off" ? `${id} · ${level}` : id;
}

export const ModelPicker = memo(function ModelPicker({ models, disabled, onModel, onThinking, compact = false }: Props) {
  const [open, setOpen] = useState(false);
  const box = useRef<HTMLSpanElement>(null);
  useEffect(() => {
    if (!open) return;
    const away = (e: PointerEvent) => !box.current?.contains(e.target as Node) && setOpen(false);
    const esc = (e: KeyboardEvent) => e.key === "Escape" && setOpen(false);
    document.addEventListener("pointerdown", away);
    document.addEventListener("keydown", esc);
    return () => (document.removeEventListener("pointerdown", away), document.removeEventListener("keydown", esc));
  }, [open]);
  if (!models || models.models.length === 0) return null;
  const cur = models.current ? `${models.current.provider}/${models.current.id}` : "";
  const known = models.models.some((m) => `${m.provider}/${m.id}` === cur);
  const levels = models.thinkingLevels.length ? models.thinkingLevels : ["off"];
  const level = models.thinkingLevel ?? "off";
  const pickers = (
    <span className="pickers" data-testid="pickers">
      <select
        aria-label="Model"
        data-testid="model-picker"
        value={cur}
        disabled={disabled}
        onChange={(e) => {
          const m = models.models.find((x) => `${x.provider}/${x.id}` === e.target.value);
          if (m) onModel(m.provider, m.id);
        }}
      >
        {!known && <option value={cur}>{cur || "no model"}</option>}
        {models.models.map((m) => {
          const key = `${m.provider}/${m.id}`;
          return (
            <option key={key} value={key}>
              {key}
              {m.input?.includes("image") ? " · images" : ""}
            </option>
          );
        })}
      </select>
      <select
        aria-label="Thinking level"
        data-testid="thinking-picker"
        value={levels.includes(level) ? level : ""}
        disabled={disabled || levels.length < 2}
        title={levels.length < 2 ? "This model does not reason: thinking is off" : "Thinking level"}
        onChange={(e) => onThinking(e.target.value)}
      >
        {!levels.includes(level) && <option value="">{level}</option>}
        {levels.map((l) => (
          <option key={l} value={l}>
            thinking: {l}
          </option>
        ))}
      </select>
    </span>
  );
  if (!compact) return pickers;
  return (
    <span className="model-menu" ref={box}>
      <button
        type="button"
        className="model-chip"
        data-testid="model-chip"
        aria-expanded={open}
        aria-haspopup="true"
        title="Model and thinking level"
        onClick={() => setOpen((o) => !o)}
      >
        <span className="model-chip-text">{modelChipText(models)}</span> <span aria-hidden="true">▾</span>
      </button>
      {open && (
        <span className="model-pop" role="group" aria-label="Model and thinking level" data-testid="model-pop">
          {pickers}
        </span>
      )}
    </span>
  );
});
