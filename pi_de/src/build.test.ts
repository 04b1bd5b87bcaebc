// @vitest-environment node
// The production bundle must never carry a token, even when VITE_HYPI_TOKEN is set in the shell
// that builds it (it is a dev-only convenience). Builds into a temp dir and greps every file.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { build } from "vite";

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

describe("production build", () => {
  it("contains no token even when VITE_HYPI_TOKEN is set", async () => {
    const out = mkdtempSync(join(tmpdir(), "pide-build-"));
    const sentinel = "tok-SENTINEL-7f3a9c";
    const prev = process.env.VITE_HYPI_TOKEN;
    process.env.VITE_HYPI_TOKEN = sentinel;
    try {
      await build({ root: process.cwd(), logLevel: "silent", build: { outDir: out, emptyOutDir: true } });
      const all = files(out);
      expect(all.some((f) => f.endsWith(".js"))).toBe(true);
      for (const f of all) expect(readFileSync(f, "utf8").includes(sentinel), f).toBe(false);
    } finally {
      if (prev === undefined) delete process.env.VITE_HYPI_TOKEN;
      else process.env.VITE_HYPI_TOKEN = prev;
      rmSync(out, { recursive: true, force: true });
    }
  }, 120_000);

  it("the built dist (when present) has no token and stays within 250 KB gzipped JS", async () => {
    const dist = join(process.cwd(), "dist");
    let names: string[];
    try {
      names = files(dist);
    } catch {
      return; // not built in this run; `make test` builds before `npm test`
    }
    const { gzipSync } = await import("node:zlib");
    let gz = 0;
    for (const f of names) {
      const text = readFileSync(f);
      expect(text.toString("utf8")).not.toMatch(/hypi-token\.[A-Za-z0-9_-]{8,}/);
      if (f.endsWith(".js")) gz += gzipSync(text).length;
    }
    expect(gz).toBeLessThan(250 * 1024);
  });
});
