import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { contrast } from "./contrast";
import { applyTheme, TEXT_MIN_CONTRAST, TEXT_ON, THEME_NAMES, THEMES, themeVars } from "./piTheme";

// Every stylesheet of the app, as text: the variables they draw text with.
function stylesheets(dir = join(__dirname, "..")): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? stylesheets(join(dir, e.name)) : e.name.endsWith(".css") ? [readFileSync(join(dir, e.name), "utf8")] : [],
  );
}

describe("themes", () => {
  it("offers at least the seven required themes", () => {
    for (const n of ["dark", "light", "gruvbox-dark", "tokyo-night", "nord", "solarized-dark", "solarized-light"])
      expect(THEME_NAMES).toContain(n);
  });

  it("knows the backgrounds of every variable a stylesheet draws text with", () => {
    const used = new Set<string>();
    for (const css of stylesheets())
      for (const m of css.matchAll(/(?:^|[;{\s])color:\s*var\((--[\w-]+)\)/g)) used.add(m[1]);
    expect(used.size).toBeGreaterThan(20);
    for (const v of used) expect(TEXT_ON, `${v} is drawn as text: list its backgrounds in TEXT_ON`).toHaveProperty([v]);
  });

  // Every text colour reaches WCAG AA (4.5:1) on every background it is drawn on, in every theme.
  for (const t of THEMES) {
    it(`${t.name}: every text token reaches ${TEXT_MIN_CONTRAST}:1 on its backgrounds`, () => {
      const v = themeVars(t);
      const low: string[] = [];
      for (const [fg, bgs] of Object.entries(TEXT_ON))
        for (const bg of bgs) {
          const ratio = contrast(v[fg], v[bg]);
          if (ratio < TEXT_MIN_CONTRAST) low.push(`${fg} ${v[fg]} on ${bg} ${v[bg]}: ${ratio.toFixed(2)}`);
        }
      expect(low).toEqual([]);
    });
  }

  // Body text must reach WCAG AA (4.5:1) on every surface it is drawn on; secondary text (muted
  // metadata, thinking) at least 4.5 on the page too, since it carries real content.
  for (const t of THEMES) {
    it(`${t.name}: readable contrast`, () => {
      const v = themeVars(t);
      const pairs: [string, string, number][] = [
        ["--text", "--bg", 4.5],
        ["--text", "--surface", 4.5],
        ["--user-text", "--user-bg", 4.5],
        ["--text", "--selected-bg", 4.5],
        ["--text", "--tool-pending", 4.5],
        ["--text", "--tool-success", 4.5],
        ["--text", "--tool-error", 4.5],
        ["--muted", "--bg", 4.5],
        ["--muted", "--surface", 4.0],
        ["--thinking", "--bg", 4.5],
        ["--accent-text", "--accent", 4.5],
        ["--accent", "--bg", 3.0],
        ["--dim", "--bg", 3.0],
        ["--tool-output", "--tool-success", 3.0],
      ];
      for (const [fg, bg, min] of pairs) {
        const ratio = contrast(v[fg], v[bg]);
        expect(ratio, `${t.name} ${fg} ${v[fg]} on ${bg} ${v[bg]}`).toBeGreaterThanOrEqual(min);
      }
    });
  }

  it("maps pi tokens through vars (dark: accent var → #8abeb7, '' text → default)", () => {
    const v = themeVars(THEMES[0]);
    expect(v["--accent"]).toBe("#8abeb7");
    expect(v["--bg"]).toBe("#18181e");
    expect(v["--text"]).toMatch(/^#/);
  });

  it("applies CSS variables to the root element", () => {
    applyTheme("nord");
    expect(document.documentElement.style.getPropertyValue("--bg")).toBe("#2e3440");
    expect(document.documentElement.dataset.theme).toBe("nord");
  });
});
