import { memo, useState } from "react";
import type { ToolResultLike } from "../protocol/pi";
import { CodeBlock } from "./CodeBlock";
import { langForPath } from "./highlight";
import { editDiff, PREVIEW_LINES, preview, resultText, toolSummary, type Args } from "./toolSummary";

interface Props {
  name: string;
  args: Args;
  /** Final result (toolResult message or tool_execution_end) or partial output so far. */
  result?: ToolResultLike;
  done: boolean;
  /** The call is still being written by the model (arguments incomplete). */
  partialJson?: string;
  /** The call waits for a person's decision before it runs. */
  waiting?: boolean;
}

export const ToolCard = memo(function ToolCard({ name, args, result, done, partialJson, waiting }: Props) {
  const [expanded, setExpanded] = useState(false);
  const isError = !!result?.isError;
  const state = !done ? (waiting ? "waiting" : "pending") : isError ? "error" : "success";
  const out = resultText(result);
  const limit = expanded ? Infinity : (PREVIEW_LINES[name] ?? 12);
  return (
    <div className={`tool-card tool-${state}`} data-tool={name} data-state={state}>
      <div className="tool-head">
        {state === "waiting" ? (
          <svg className="tool-icon" width="14" height="14" viewBox="0 0 14 14" role="img" aria-label="waiting for your decision">
            <rect x="3" y="2" width="3" height="10" fill="currentColor" />
            <rect x="8" y="2" width="3" height="10" fill="currentColor" />
          </svg>
        ) : state === "pending" ? (
          <span className="spinner" aria-label="running" />
        ) : (
          <span className="tool-icon">{isError ? "✗" : "✓"}</span>
        )}
        <span className="tool-name">{name || "tool"}</span>
        <span className="tool-summary">{partialJson !== undefined && !name ? partialJson : toolSummary(name, args)}</span>
      </div>
      {state === "waiting" && <div className="tool-wait tool-waiting-note">waiting for your decision (below)</div>}
      <ToolBody name={name} args={args} result={result} out={out} done={done || !!waiting} limit={limit} />
      {moreLines(name, args, out, limit) > 0 && (
        <button type="button" className="link-btn tool-more" onClick={() => setExpanded(true)}>
          … {moreLines(name, args, out, limit)} more lines
        </button>
      )}
      {expanded && (
        <button type="button" className="link-btn tool-more" onClick={() => setExpanded(false)}>
          show less
        </button>
      )}
    </div>
  );
});

function bodyText(name: string, args: Args, out: string): string {
  return name === "write" ? String(args.content ?? "") : out;
}

function moreLines(name: string, args: Args, out: string, limit: number): number {
  if (name === "edit" || !isFinite(limit)) return 0;
  return preview(bodyText(name, args, out), limit).hidden;
}

function ToolBody({ name, args, result, out, done, limit }: { name: string; args: Args; result?: ToolResultLike; out: string; done: boolean; limit: number }) {
  if (name === "edit") {
    const lines = editDiff(args, result);
    if (result?.isError) return <pre className="tool-output">{out}</pre>;
    return <DiffView lines={lines.slice(0, isFinite(limit) ? limit : undefined)} />;
  }
  const text = bodyText(name, args, out);
  if (!text) return done ? null : <div className="tool-wait">waiting for output…</div>;
  const { shown } = preview(text, limit);
  if (name === "bash") return <pre className="tool-output">{shown}</pre>;
  if (name === "read" || name === "write") return <CodeBlock code={shown} lang={langForPath(String(args.path ?? ""))} />;
  if (["ls", "find", "grep"].includes(name)) return <pre className="tool-output">{shown}</pre>;
  return (
    <>
      <pre className="tool-args">{JSON.stringify(args, null, 2)}</pre>
      <pre className="tool-output">{shown}</pre>
    </>
  );
}

function DiffView({ lines }: { lines: { kind: string; text: string }[] }) {
  return (
    <pre className="diff">
      {lines.map((l, i) => (
        <div key={i} className={`diff-${l.kind}`}>
          {l.text}
        </div>
      ))}
    </pre>
  );
}
