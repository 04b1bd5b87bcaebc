// Syntax highlighting, loaded on demand: highlight.js core and each language are separate chunks fetched
// the first time a code block in that language is shown, so the dashboard's first load carries none of
// them. Until a language is loaded, highlight() answers null and the block shows plain text.
import type { HLJSApi, LanguageFn } from "highlight.js";

type Loader = () => Promise<{ default: LanguageFn }>;

// The languages agents' code blocks and tool cards show most; anything else stays plain text.
const LOADERS: Record<string, Loader> = {
  bash: () => import("highlight.js/lib/languages/bash"),
  css: () => import("highlight.js/lib/languages/css"),
  diff: () => import("highlight.js/lib/languages/diff"),
  go: () => import("highlight.js/lib/languages/go"),
  javascript: () => import("highlight.js/lib/languages/javascript"),
  json: () => import("highlight.js/lib/languages/json"),
  markdown: () => import("highlight.js/lib/languages/markdown"),
  python: () => import("highlight.js/lib/languages/python"),
  rust: () => import("highlight.js/lib/languages/rust"),
  sql: () => import("highlight.js/lib/languages/sql"),
  typescript: () => import("highlight.js/lib/languages/typescript"),
  xml: () => import("highlight.js/lib/languages/xml"),
  yaml: () => import("highlight.js/lib/languages/yaml"),
};

/** Every language a code block can be highlighted in (their canonical names). */
export const LANGUAGES: readonly string[] = Object.keys(LOADERS);

const ALIASES: Record<string, string> = {
  sh: "bash",
  shell: "bash",
  zsh: "bash",
  console: "bash",
  ts: "typescript",
  tsx: "typescript",
  js: "javascript",
  jsx: "javascript",
  mjs: "javascript",
  cjs: "javascript",
  py: "python",
  yml: "yaml",
  md: "markdown",
  html: "xml",
  svg: "xml",
  patch: "diff",
  rs: "rust",
  golang: "go",
};

/** Code longer than this is never highlighted (the tokenizer is synchronous and would stall the page). */
export const MAX_HIGHLIGHT = 200_000;

/** The highlight.js name of a code fence's language or an alias of it; undefined when not supported. */
export function canonicalLang(lang: string | undefined): string | undefined {
  if (!lang) return undefined;
  const l = lang.toLowerCase();
  const name = ALIASES[l] ?? l;
  return Object.hasOwn(LOADERS, name) ? name : undefined;
}

let core: HLJSApi | null = null;
let coreLoading: Promise<HLJSApi> | null = null;
const langLoading = new Map<string, Promise<boolean>>();

function loadCore(): Promise<HLJSApi> {
  coreLoading ??= import("highlight.js/lib/core").then(
    (m) => (core = m.default),
    (err: unknown) => {
      coreLoading = null; // a failed fetch (network) is tried again by the next code block
      throw err;
    },
  );
  return coreLoading;
}

/** Loads highlight.js and the language once; true when the language can be highlighted now. */
export function loadLanguage(lang: string | undefined): Promise<boolean> {
  const name = canonicalLang(lang);
  if (!name) return Promise.resolve(false);
  let p = langLoading.get(name);
  if (!p) {
    p = Promise.all([loadCore(), LOADERS[name]()]).then(
      ([hljs, mod]) => {
        if (!hljs.getLanguage(name)) hljs.registerLanguage(name, mod.default);
        return true;
      },
      () => {
        langLoading.delete(name);
        return false;
      },
    );
    langLoading.set(name, p);
  }
  return p;
}

/** HTML for a code block, or null when the language is unknown or not loaded yet (rendered as plain text). */
export function highlight(code: string, lang: string | undefined): string | null {
  const name = canonicalLang(lang);
  if (!name || !core || !core.getLanguage(name) || code.length > MAX_HIGHLIGHT) return null;
  try {
    return core.highlight(code, { language: name, ignoreIllegals: true }).value;
  } catch {
    return null;
  }
}

export function langForPath(path: string): string | undefined {
  const ext = path.split(".").pop()?.toLowerCase();
  const map: Record<string, string> = { ts: "typescript", tsx: "typescript", js: "javascript", jsx: "javascript", mjs: "javascript", py: "python", json: "json", sh: "bash", yml: "yaml", yaml: "yaml", diff: "diff", patch: "diff", go: "go", rs: "rust", css: "css", html: "xml", md: "markdown", sql: "sql" };
  return ext ? map[ext] : undefined;
}
