import { memo } from "react";
import type { ChatMessage, ContentBlock, ToolCallBlock, ToolResultLike } from "../protocol/pi";
import { blocksOf, textOf } from "../protocol/pi";
import type { LiveTool } from "../model/agentReducer";
import { Markdown } from "./Markdown";
import { ToolCard } from "./ToolCard";
import { lineCount, splitFiles } from "./userContent";

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
  const images = blocksOf(m).filter((b) => b.type === "image") as { data?: string; mimeType?: string }[];
  const { text, files } = splitFiles(textOf(m.content));
  return (
    <div className="msg msg-user" data-role="user">
      {text && <div className="user-text">{text}</div>}
      <AttachmentStrip images={images.map((b) => ({ name: "image", mime: b.mimeType ?? "", data: b.data ?? "" }))} files={files.map((f) => ({ name: f.name, title: lineCount(f.body) }))} />
    </div>
  );
}

/** Images as thumbnails (a placeholder when the history left their bytes out) and text files as chips. */
export function AttachmentStrip({ images, files }: { images: { name: string; mime: string; data: string }[]; files: { name: string; title?: string }[] }) {
  if (!images.length && !files.length) return null;
  return (
    <div className="msg-attachments">
      {images.map((im, i) =>
        im.data && /^image\/(png|jpeg|gif|webp)$/.test(im.mime) ? (
          <img key={`i${i}`} className="thumb" data-testid="image-thumb" src={`data:${im.mime};base64,${im.data}`} alt={im.name} />
        ) : (
          <span key={`i${i}`} className="thumb thumb-missing" data-testid="image-thumb">
            image
          </span>
        ),
      )}
      {files.map((f, i) => (
        <span key={`f${i}`} className="file-chip" data-testid="file-chip" title={f.title}>
          <svg width="12" height="12" viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth="2" aria-hidden="true">
            <path d="M14 3H6a1 1 0 00-1 1v16a1 1 0 001 1h12a1 1 0 001-1V8z" />
            <path d="M14 3v5h5" />
          </svg>
          {f.name}
        </span>
      ))}
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
