import { describe, expect, it } from "vitest";
import { applyCompletion, commandCompletions, detectTrigger, fileCompletions, moveSelection } from "./autocomplete";

describe("autocomplete", () => {
  it("detects /commands only as the first word", () => {
    expect(detectTrigger("/mo", 3)).toEqual({ kind: "command", query: "mo", start: 0, end: 3 });
    expect(detectTrigger("/model x", 8)).toBeNull();
    expect(detectTrigger("a /x", 4)).toBeNull();
  });

  it("detects @files at the start or after whitespace, up to the caret", () => {
    expect(detectTrigger("see @src/ma", 11)).toEqual({ kind: "file", query: "src/ma", start: 4, end: 11 });
    expect(detectTrigger("@", 1)).toEqual({ kind: "file", query: "", start: 0, end: 1 });
    expect(detectTrigger("mail@host", 9)).toBeNull();
  });

  it("ranks prefix matches first and caps the list", () => {
    const cmds = [{ name: "reload" }, { name: "model" }, { name: "remodel" }, { name: "mode" }];
    expect(commandCompletions(cmds, "mod").map((c) => c.value)).toEqual(["model", "mode", "remodel"]);
    expect(commandCompletions(Array.from({ length: 40 }, (_, i) => ({ name: `c${i}` })), "").length).toBe(15);
  });

  it("filters files by the typed prefix", () => {
    const files = [{ path: "src", is_dir: true }, { path: "src.txt", is_dir: false }, { path: "README.md", is_dir: false }];
    expect(fileCompletions(files, "src").map((f) => f.label)).toEqual(["src/", "src.txt"]);
  });

  it("inserts commands and files; directories end with / to drill down", () => {
    expect(applyCompletion("/mo", { kind: "command", query: "mo", start: 0, end: 3 }, { value: "model", label: "" })).toEqual({ text: "/model ", caret: 7 });
    const t = { kind: "file" as const, query: "sr", start: 4, end: 7 };
    expect(applyCompletion("see @sr now", t, { value: "src", label: "", isDir: true })).toEqual({ text: "see @src/ now", caret: 9 });
    expect(applyCompletion("see @sr", t, { value: "src.txt", label: "" }).text).toBe("see @src.txt ");
  });

  it("keyboard navigation wraps around", () => {
    expect(moveSelection(0, -1, 3)).toBe(2);
    expect(moveSelection(2, 1, 3)).toBe(0);
    expect(moveSelection(0, 1, 0)).toBe(0);
  });
});
