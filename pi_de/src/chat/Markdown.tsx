// Agent text as markdown. The renderer is a chunk of its own, fetched the first time a message is shown
// (the dashboard's first load does not carry it); until it arrives the text is shown as it is, wrapped
// the same way, and each message re-renders once when it does.
import { type ComponentType, memo, useEffect, useState } from "react";

type Renderer = ComponentType<{ text: string }>;

let renderer: Renderer | null = null;
let loading: Promise<Renderer> | null = null;

export function loadMarkdown(): Promise<Renderer> {
  loading ??= import("./MarkdownRenderer").then(
    (m) => (renderer = m.MarkdownRenderer),
    (err: unknown) => {
      loading = null; // a failed fetch is tried again by the next message that mounts
      throw err;
    },
  );
  return loading;
}

export const Markdown = memo(function Markdown({ text }: { text: string }) {
  const [, setReady] = useState(renderer !== null);
  useEffect(() => {
    if (renderer) return;
    let live = true;
    loadMarkdown().then(
      () => live && setReady(true),
      () => undefined, // stays plain text; the next message to mount tries again
    );
    return () => {
      live = false;
    };
  }, []);
  const Loaded = renderer;
  if (Loaded) return <Loaded text={text} />;
  return (
    <div className="md md-plain" style={{ whiteSpace: "pre-wrap" }}>
      {text}
    </div>
  );
});
