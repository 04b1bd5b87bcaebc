import { describe, expect, it } from "vitest";
import { lineCount, splitFiles } from "./userContent";

describe("user message: attached text files", () => {
  it("splits the bridge's trailing <file> blocks off the text", () => {
    const t = 'look at these\n\n<file name="a.py">\nprint(1)\n</file>\n\n<file name="notes.md">\n# N\n\nx\n</file>';
    expect(splitFiles(t)).toEqual({ text: "look at these", files: [{ name: "a.py", body: "print(1)" }, { name: "notes.md", body: "# N\n\nx" }] });
  });
  it("a file alone (blank prompt text)", () => {
    expect(splitFiles('\n\n<file name="x.txt">\nhi\n</file>')).toEqual({ text: "", files: [{ name: "x.txt", body: "hi" }] });
  });
  it("leaves text alone when the tail is not only blocks", () => {
    const t = 'the tag <file name="a">\nx\n</file> is in my text';
    expect(splitFiles(t)).toEqual({ text: t, files: [] });
    const u = 'x\n\n<file name="a">\nbody\n</file>\ntrailing words';
    expect(splitFiles(u).files).toEqual([]);
  });
  it("a file whose content mentions the markup is still one chip", () => {
    const t = 'q\n\n<file name="doc.md">\nuse \n\n<file name="x"> like this\n</file>';
    expect(splitFiles(t)).toEqual({ text: "q", files: [{ name: "doc.md", body: 'use \n\n<file name="x"> like this' }] });
  });
  it("counts lines", () => {
    expect(lineCount("a\nb")).toBe("2 lines");
    expect(lineCount("a")).toBe("1 line");
  });
});
