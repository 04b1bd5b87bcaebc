import { memo } from "react";
import type { ChatMessage, ContentBlock, ToolCallBlock, ToolResultLike } from "../protocol/pi";
import { blocksOf, textOf } from "../protocol/pi";
import type { LiveTool } from "../model/agentReducer";
import { Markdown } from "./Markdown";
import { ToolCard } from "./ToolCard";

export interface ToolLookup {
  results: Map<string, ChatMessage>;
  live: Record<string, LiveTool>;
  /** When no run is active, a call without a result will never get one (aborted, or pi restarted). */
  running: boolean;
  /** Tool calls waiting for a person's decision (their question is above the composer). */
  waiting: ReadonlySet<string>;
}

/** One conversation row. Memoised on the message object: finished messages never re-render. */
export const MessageView = memo(function MessageView({ m, tools, streaming }: { m: ChatMessage; tools: ToolLookup; streaming?: boolean }) {
  switch (m.role) {
    case "user":
      return <UserMessage m={m} />;
    case "assistant":
      return <AssistantMessage m={m} tools={tools} streaming={streaming} />;
    case "toolResult":
      // Normally drawn inside its call's card; this is a result whose call is on an unloaded page.
      return <ToolCard name={m.toolName ?? "tool"} args={{}} result={m as ToolResultLike} done />;
    default:
      return (
        <div className="msg msg-other" data-role={m.role}>
          <div className="msg-label">{m.role}</div>
          <div className="msg-other-text">{textOf(m.content) || summaryOf(m)}</div>
        </div>
      );
  }
});

function summaryOf(m: ChatMessage): string {
  const s = (m as { summary?: unknown }).summary;
  return typeof s === "string" ? s : "";
}

function UserMessage({ m }: { m: ChatMessage }) {
  const blocks = blocksOf(m);
  const images = blocks.filter((b) => b.type === "image").length;
  return (
    <div className="msg msg-user" data-role="user">
      <div className="user-text">{textOf(m.content)}</div>
      {images > 0 && <div className="msg-meta">{images} image{images > 1 ? "s" : ""} attached</div>}
    </div>
  );
}

function AssistantMessage({ m, tools, streaming }: { m: ChatMessage; tools: ToolLookup; streaming?: boolean }) {
  return (
    <div className={`msg msg-assistant${streaming ? " is-streaming" : ""}`} data-role="assistant">
      {blocksOf(m).map((b, i) => (
        <Block key={i} b={b} tools={tools} streaming={streaming} />
      ))}
      {streaming && blocksOf(m).length === 0 && <span className="typing" aria-label="thinking">●●●</span>}
      {m.stopReason === "error" && <div className="msg-error">Error: {m.errorMessage ?? "the model call failed"}</div>}
      {m.stopReason === "aborted" && <div className="msg-meta">Aborted</div>}
      {!streaming && m.usage?.cost?.total ? (
        <div className="msg-meta">
          ↑{m.usage.input ?? 0} ↓{m.usage.output ?? 0} ${m.usage.cost.total.toFixed(4)}
        </div>
      ) : null}
    </div>
  );
}

function Block({ b, tools, streaming }: { b: ContentBlock; tools: ToolLookup; streaming?: boolean }) {
  if (b.type === "text") return <Markdown text={(b as { text: string }).text} />;
  if (b.type === "thinking") {
    const t = (b as { thinking: string }).thinking;
    if (!t) return null;
    return (
      <details className="thinking">
        <summary>Thinking{streaming ? "…" : ""}</summary>
        <div className="thinking-text">{t}</div>
      </details>
    );
  }
  if (b.type === "toolCall") {
    const c = b as ToolCallBlock;
    const result = tools.results.get(c.id);
    const live = tools.live[c.id];
    const done = !!result || !!live?.done || (!tools.running && !streaming);
    return (
      <ToolCard
        name={c.name}
        args={c.arguments ?? {}}
        result={(result as ToolResultLike | undefined) ?? live?.result}
        done={done}
        partialJson={c.partialJson}
        waiting={!done && tools.waiting.has(c.id)}
      />
    );
  }
  if (b.type === "image") return <div className="msg-meta">[image]</div>;
  return null;
}
