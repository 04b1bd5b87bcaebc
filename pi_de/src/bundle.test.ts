// @vitest-environment node
// Pi-DE's first load (the JS index.html loads before any interaction) stays within 1.5x React's runtime
// alone, both built in this run with the same Vite (scripts/bundle-size.mjs; bench section 6 prints the
// same figures). The conversation, markdown, highlight.js and the rarely used screens load on first use.
import { describe, expect, it } from "vitest";
import { bundleSize, htmlEntries, staticImports } from "../scripts/bundle-size.mjs";

describe("first-load size", () => {
  it("reads index.html's module scripts and modulepreload links, not other links", () => {
    const html = `<script type="module" crossorigin src="/assets/index-a.js"></script>
      <link rel="modulepreload" crossorigin href="/assets/vendor-b.js">
      <link rel="stylesheet" href="/assets/index-c.css"><link rel="manifest" href="/manifest.webmanifest">
      <script type="module" src="https://cdn.example/x.js"></script>`;
    expect(htmlEntries(html)).toEqual(["assets/index-a.js", "assets/vendor-b.js"]);
  });

  it("follows static imports of a chunk and not its import() calls", () => {
    const code = `import{a as b}from"./index-a.js";import"./side-c.js";export{d}from"./re-d.js";const l=()=>import("./lazy-e.js");`;
    expect(staticImports(code)).toEqual(["./index-a.js", "./side-c.js", "./re-d.js"]);
  });

  it("stays within 1.5x React's runtime alone (gzip -9)", async () => {
    const { pide, react, ratio } = await bundleSize();
    const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
    const detail = `first load ${kib(pide.initial.gzip)} (${pide.initial.files.join(", ")}), React alone ${kib(react.initial.gzip)}, all JS ${kib(pide.total.gzip)}`;
    expect(react.initial.gzip, detail).toBeGreaterThan(40 * 1024); // the floor really is React
    expect(ratio, detail).toBeLessThanOrEqual(1.5);
  }, 120_000);
});
