import { memo, useEffect, useState } from "react";
import { MAX_HIGHLIGHT, canonicalLang, highlight, loadLanguage } from "./highlight";

export const CodeBlock = memo(function CodeBlock({ code, lang }: { code: string; lang?: string }) {
  const [copied, setCopied] = useState(false);
  // Bumped when the language's grammar arrives; until then the block is plain text of the same layout.
  const [, setLoaded] = useState(0);
  const html = highlight(code, lang);
  const wanted = html == null && canonicalLang(lang) !== undefined && code.length <= MAX_HIGHLIGHT;
  useEffect(() => {
    if (!wanted) return;
    let live = true;
    void loadLanguage(lang).then((ok) => {
      if (live && ok) setLoaded((n) => n + 1);
    });
    return () => {
      live = false;
    };
  }, [wanted, lang]);
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
