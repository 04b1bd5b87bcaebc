import { describe, expect, it } from "vitest";
import { jumpLabel, markSeen, newIds, unseenCount } from "./follow";

describe("following the newest message", () => {
  it("counts the message rows past what the reader saw at the bottom", () => {
    const mark = markSeen(10, false);
    expect(unseenCount([7, 8, 9], mark, false)).toBe(0);
    expect(unseenCount([8, 9, 10, 12], mark, false)).toBe(2); // 11 is a tool result drawn in its card
  });

  it("older pages prepended above change nothing", () => {
    const mark = markSeen(10, false);
    expect(unseenCount([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], mark, false)).toBe(1);
  });

  it("a reply streaming since the reader left is new; one already streaming then is not", () => {
    expect(unseenCount([9], markSeen(10, false), true)).toBe(1);
    expect(unseenCount([9], markSeen(10, true), true)).toBe(0);
    // that reply finished (row 10) and the next one streams: two new
    expect(unseenCount([9, 10], markSeen(10, true), true)).toBe(2);
  });

  it("spots a prompt just sent by its new id", () => {
    expect(newIds(["a"], ["a", "b"])).toEqual(["b"]);
    expect(newIds(["a", "b"], ["b"])).toEqual([]);
  });

  it("labels the button with the count", () => {
    expect(jumpLabel(3)).toBe("Jump to latest (3 new)");
  });
});
