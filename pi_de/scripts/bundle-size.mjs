// `node scripts/bundle-size.mjs [--dist DIR]`: Pi-DE's first load against React's runtime alone, both built
// in this run with the same Vite, printed as one JSON object (bench section 6 and src/bundle.test.ts read it).
//
// first load = the JS index.html loads before any interaction: its module scripts, its modulepreload links
// and, transitively, the chunks they import statically. Chunks reached only by import() (the conversation,
// markdown, highlight.js languages, sessions, budget, spawn) are counted in `total` only.
// Sizes are gzip -9 of each file (what a server's gzip sends, give or take the level); without --dist
// Pi-DE is built into a temp dir too.
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Files a module script or modulepreload link of index.html names, relative to `dir`. */
export function htmlEntries(html) {
  const out = [];
  for (const m of html.matchAll(/<script\b[^>]*\btype="module"[^>]*\bsrc="([^"]+)"/g)) out.push(m[1]);
  for (const m of html.matchAll(/<link\b[^>]*\brel="modulepreload"[^>]*\bhref="([^"]+)"/g)) out.push(m[1]);
  for (const m of html.matchAll(/<link\b[^>]*\bhref="([^"]+)"[^>]*\brel="modulepreload"/g)) out.push(m[1]);
  return out.filter((u) => !/^[a-z]+:\/\//i.test(u)).map((u) => u.replace(/^\//, "").replace(/[?#].*$/, ""));
}

/** Relative chunks a built chunk imports statically (`import ... from "./x.js"`, `import "./x.js"`), not import(). */
export function staticImports(code) {
  const out = [];
  for (const m of code.matchAll(/(?:^|[;}\s])(?:import|export)\s*(?:[\w$*{},\s]+?\s*from\s*)?["'](\.{1,2}\/[^"']+\.js)["']/g)) out.push(m[1]);
  return out;
}

function files(dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

const gz = (p) => gzipSync(readFileSync(p), { level: 9 }).length;

/** First-load and total JS of a built dist (bytes raw and gzip -9). */
export function measure(dist) {
  const seen = new Set();
  const queue = htmlEntries(readFileSync(join(dist, "index.html"), "utf8")).map((f) => join(dist, f));
  // bounded: a chunk is visited once and a dist has finitely many
  while (queue.length) {
    const f = queue.pop();
    if (seen.has(f) || !f.endsWith(".js")) continue;
    seen.add(f);
    for (const rel of staticImports(readFileSync(f, "utf8"))) queue.push(resolve(dirname(f), rel));
  }
  const initial = [...seen];
  const all = files(dist).filter((f) => f.endsWith(".js"));
  const sum = (fs, fn) => fs.reduce((n, f) => n + fn(f), 0);
  return {
    initial: { files: initial.map((f) => relative(dist, f)).sort(), raw: sum(initial, (f) => statSync(f).size), gzip: sum(initial, gz) },
    total: { files: all.length, raw: sum(all, (f) => statSync(f).size), gzip: sum(all, gz) },
  };
}

async function buildInto(options) {
  const { build } = await import("vite");
  const out = mkdtempSync(join(tmpdir(), "pide-size-"));
  // A test runner sets NODE_ENV=test, and Vite then bundles React's development build: force production.
  const prev = process.env.NODE_ENV;
  process.env.NODE_ENV = "production";
  try {
    await build({ logLevel: "silent", mode: "production", ...options, build: { outDir: out, emptyOutDir: true } });
  } finally {
    if (prev === undefined) delete process.env.NODE_ENV;
    else process.env.NODE_ENV = prev;
  }
  return out;
}

export async function bundleSize(dist) {
  const react = (await import("@vitejs/plugin-react")).default;
  const floorDir = await buildInto({ root: join(root, "scripts", "react-floor"), configFile: false, plugins: [react()] });
  const ownDir = dist ? null : await buildInto({ root });
  try {
    const pide = measure(dist ?? ownDir);
    const floor = measure(floorDir);
    return { pide, react: floor, ratio: pide.initial.gzip / floor.initial.gzip };
  } finally {
    rmSync(floorDir, { recursive: true, force: true });
    if (ownDir) rmSync(ownDir, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf("--dist");
  const dist = i > 0 ? resolve(process.argv[i + 1]) : undefined;
  process.chdir(root);
  console.log(JSON.stringify(await bundleSize(dist)));
}
