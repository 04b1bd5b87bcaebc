// The markdown renderer and highlight.js are chunks of their own: a message shows as plain text until the
// renderer arrives, then as markdown; a code block is plain until its language's grammar arrives.
import { render, screen, waitFor } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { CodeBlock } from "./CodeBlock";
import { Markdown } from "./Markdown";
import { canonicalLang, highlight, loadLanguage } from "./highlight";

describe("Markdown on demand", () => {
  it("shows the text at once, then renders it as markdown, and highlights its code", async () => {
    const { container } = render(<Markdown text={"**bold** and `x`\n\n```ts\nconst a: number = 1;\n```"} />);
    expect(container.textContent).toContain("**bold**"); // plain, before the renderer's chunk arrives
    await waitFor(() => expect(container.querySelector("strong")?.textContent).toBe("bold"));
    expect(container.querySelector(".md-inline-code")?.textContent).toBe("x");
    await waitFor(() => expect(container.querySelector(".code-block .hljs-keyword")?.textContent).toBe("const"));
    // once loaded, a new message renders as markdown on its first render
    const again = render(<Markdown text="*em*" />);
    expect(again.container.querySelector("em")?.textContent).toBe("em");
  });
});

describe("highlight on demand", () => {
  it("resolves aliases and refuses languages it does not carry", () => {
    expect(canonicalLang("sh")).toBe("bash");
    expect(canonicalLang("TSX")).toBe("typescript");
    expect(canonicalLang("html")).toBe("xml");
    expect(canonicalLang("cobol")).toBeUndefined();
    expect(canonicalLang("constructor")).toBeUndefined();
    expect(canonicalLang(undefined)).toBeUndefined();
  });

  it("answers null until the language is loaded, then escaped highlighted HTML", async () => {
    const code = 'if true; then echo "<b>"; fi';
    expect(highlight(code, "zsh")).toBeNull();
    expect(await loadLanguage("zsh")).toBe(true);
    const html = highlight(code, "zsh") ?? "";
    expect(html).toContain("hljs-keyword");
    expect(html).toContain("&lt;b&gt;");
    expect(await loadLanguage("cobol")).toBe(false);
    expect(highlight("x", "cobol")).toBeNull();
  });

  it("a code block in an unknown language stays plain text", () => {
    render(<CodeBlock code="IDENTIFICATION DIVISION." lang="cobol" />);
    expect(screen.getByText("IDENTIFICATION DIVISION.").tagName).toBe("PRE");
  });
});
