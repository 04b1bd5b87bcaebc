import { memo, useState } from "react";
import { highlight } from "./highlight";

export const CodeBlock = memo(function CodeBlock({ code, lang }: { code: string; lang?: string }) {
  const [copied, setCopied] = useState(false);
  const html = highlight(code, lang);
  const copy = () => {
    void navigator.clipboard?.writeText(code).then(() => {
      setCopied(true);
      setTimeout(() => setCopied(false), 1200);
    });
  };
  return (
    <div className="code-block">
      <div className="code-head">
        <span>{lang ?? "text"}</span>
        <button type="button" className="link-btn" onClick={copy}>
          {copied ? "copied" : "copy"}
        </button>
      </div>
      {/* highlight.js escapes the code it returns; only its span markup is HTML */}
      {html != null ? <pre dangerouslySetInnerHTML={{ __html: html }} /> : <pre>{code}</pre>}
    </div>
  );
});
