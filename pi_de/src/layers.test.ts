// @vitest-environment node
// The lower modules (model, connection, protocol) never import a screen (chat, roster, inspector,
// spawn): view models and links live below the screens, so a screen can be swapped without
// touching them.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const SRC = dirname(fileURLToPath(import.meta.url));
const LOWER = ["model", "connection", "protocol", "ui"];
const SCREENS = ["chat", "roster", "inspector", "spawn", "inbox"];

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : /\.(ts|tsx)$/.test(name) ? [p] : [];
  });
}

/** Relative import specifiers of a TypeScript source (static imports, re-exports and dynamic imports). */
export function importsOf(source: string): string[] {
  const out: string[] = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(?\s*)["']([^"']+)["']/g;
  for (let m = re.exec(source); m; m = re.exec(source)) out.push(m[1]);
  return out;
}

/** Top folder under src/ that a relative import from `file` lands in (null for packages). */
function layerOf(file: string, spec: string): string | null {
  if (!spec.startsWith(".")) return null;
  return relative(SRC, resolve(dirname(file), spec)).split(/[\\/]/)[0];
}

describe("module layers", () => {
  it("finds imports of every form", () => {
    expect(importsOf(`import a from "./a";\nimport type { B } from '../b';\nexport * from "./c";\nconst d = import("./d");\nimport "./e.css";`)).toEqual([
      "./a",
      "../b",
      "./c",
      "./d",
      "./e.css",
    ]);
  });

  it("no lower module imports a screen", () => {
    const arrows: string[] = [];
    for (const layer of LOWER) {
      for (const f of files(join(SRC, layer))) {
        for (const spec of importsOf(readFileSync(f, "utf8"))) {
          const target = layerOf(f, spec);
          if (target && SCREENS.includes(target)) arrows.push(`${relative(SRC, f)} -> ${spec}`);
        }
      }
    }
    expect(arrows).toEqual([]);
  });
});
