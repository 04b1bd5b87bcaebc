// The markdown renderer (react-markdown + GFM, ~50 KB gzip): a chunk of its own that Markdown.tsx loads
// the first time a message needs it.
import ReactMarkdown, { type Components } from "react-markdown";
import remarkGfm from "remark-gfm";
import { CodeBlock } from "./CodeBlock";

// react-markdown never renders raw HTML from the model, so agent output cannot inject markup.
const components: Components = {
  pre: ({ children }) => <>{children}</>,
  code({ className, children }) {
    const text = String(children ?? "");
    const lang = /language-([\w-]+)/.exec(className ?? "")?.[1];
    const block = lang !== undefined || text.includes("\n");
    if (!block) return <code className="md-inline-code">{children}</code>;
    return <CodeBlock code={text.replace(/\n$/, "")} lang={lang} />;
  },
  a: ({ href, children }) => (
    <a href={href} target="_blank" rel="noreferrer noopener">
      {children}
    </a>
  ),
};

const plugins = [remarkGfm];

export function MarkdownRenderer({ text }: { text: string }) {
  return (
    <div className="md">
      <ReactMarkdown remarkPlugins={plugins} components={components}>
        {text}
      </ReactMarkdown>
    </div>
  );
}
