import { describe, expect, it } from "vitest";
import { displayCode, displayText, escapeChar, hasHiddenChars } from "./displayText";

describe("displayText", () => {
  it("keeps ordinary names, including non-Latin letters and a leading dash", () => {
    for (const s of ["my-project", "-rf", "проект", "日本語", "שלום", "café ☕", "a b\tc".replace("\t", " ")]) {
      expect(displayText(s)).toBe(s);
      expect(hasHiddenChars(s)).toBe(false);
    }
  });

  it("shows bidi overrides, embeddings, isolates and marks as escapes", () => {
    expect(displayText("/home/u/evil\u202Egnp.exe")).toBe("/home/u/evil\\u202Egnp.exe");
    const bidi = ["\u061C", "\u200E", "\u200F", "\u202A", "\u202B", "\u202C", "\u202D", "\u202E", "\u2066", "\u2067", "\u2068", "\u2069"];
    for (const c of bidi) {
      const out = displayText(`a${c}b`);
      expect(out).toBe(`a${escapeChar(c)}b`);
      expect(out).not.toContain(c);
      expect(hasHiddenChars(`a${c}b`)).toBe(true);
    }
  });

  it("shows line breaks as ↵ and never keeps one", () => {
    expect(displayText("one\ntwo\r\nthree\rfour\u2028five\u2029six")).toBe("one↵two↵three↵four↵five↵six");
    expect(hasHiddenChars("a\nb")).toBe(true);
  });

  it("shows C0/C1 controls, DEL and BOM as escapes", () => {
    expect(displayText("a\u0000b\u0007c\u001B[31md\u007Fe\u0085f\u009Bg\uFEFF\th")).toBe(
      "a\\u0000b\\u0007c\\u001B[31md\\u007Fe\\u0085f\\u009Bg\\uFEFF\\u0009h",
    );
  });

  it("is stable when called twice and on repeated calls (no regex state leaks)", () => {
    const s = "x\u202Ey\nz";
    expect(displayText(displayText(s))).toBe(displayText(s));
    expect(hasHiddenChars(s)).toBe(true);
    expect(hasHiddenChars(s)).toBe(true);
    expect(hasHiddenChars("plain")).toBe(false);
  });

  it("treats null and empty as empty", () => {
    expect(displayText(null)).toBe("");
    expect(displayText(undefined)).toBe("");
    expect(displayText("")).toBe("");
  });
});

describe("displayCode", () => {
  it("keeps line breaks and tabs of a command, shows controls and bidi characters as escapes", () => {
    expect(displayCode("ls\n\techo hi\r\n")).toBe("ls\n\techo hi\n");
    expect(displayCode("echo ok # \u202Erm -rf ~\u202C")).toBe("echo ok # \\u202Erm -rf ~\\u202C");
    expect(displayCode("a\u001B[2Jb\rc\u2028d")).toBe("a\\u001B[2Jb\\u000Dc\\u2028d");
    expect(displayCode(null)).toBe("");
  });
});
