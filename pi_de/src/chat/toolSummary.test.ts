import { describe, expect, it } from "vitest";
import { editDiff, preview, shortPath, toolSummary } from "./toolSummary";

describe("tool cards", () => {
  it("summarise pi's built-in tools in one line", () => {
    expect(toolSummary("bash", { command: "ls -la" })).toBe("ls -la");
    expect(toolSummary("read", { path: "/home/u/p/a.ts", offset: 5, limit: 10 })).toBe("~/p/a.ts:5+10");
    expect(toolSummary("grep", { pattern: "TODO", path: "src", glob: "*.ts" })).toBe("TODO in src (*.ts)");
    expect(toolSummary("custom_tool", { a: 1 })).toBe('{"a":1}');
    expect(shortPath("/Users/x/y")).toBe("~/y");
  });

  it("previews the first lines and counts the rest", () => {
    expect(preview("a\nb\nc\n", 2)).toEqual({ shown: "a\nb", hidden: 1 });
    expect(preview("a", 2)).toEqual({ shown: "a", hidden: 0 });
  });

  it("uses pi's diff when the result has one, else the requested edits", () => {
    expect(editDiff({ path: "f" }, { details: { diff: "+1 new\n-1 old\n 2 same" } }).map((l) => l.kind)).toEqual(["add", "del", "ctx"]);
    expect(editDiff({ path: "f", edits: [{ oldText: "a", newText: "b" }] })).toEqual([
      { kind: "del", text: "-a" },
      { kind: "add", text: "+b" },
    ]);
  });
});
