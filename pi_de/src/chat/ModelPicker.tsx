// The chat header's model and thinking-level pickers, from the agent's own available models (models_list).
import { memo } from "react";
import type { ModelsView } from "../model/agentReducer";
import "./driver.css";

interface Props {
  models: ModelsView | null;
  disabled: boolean;
  onModel(provider: string, id: string): void;
  onThinking(level: string): void;
}

export const ModelPicker = memo(function ModelPicker({ models, disabled, onModel, onThinking }: Props) {
  if (!models || models.models.length === 0) return null;
  const cur = models.current ? `${models.current.provider}/${models.current.id}` : "";
  const known = models.models.some((m) => `${m.provider}/${m.id}` === cur);
  const levels = models.thinkingLevels.length ? models.thinkingLevels : ["off"];
  const level = models.thinkingLevel ?? "off";
  return (
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
});
