import { describe, expect, it } from "vitest";
import { readFlag, writeFlag } from "./storedFlag";

describe("stored flags", () => {
  it("round-trips through localStorage and defaults to off", () => {
    localStorage.clear();
    expect(readFlag("k")).toBe(false);
    writeFlag("k", true);
    expect(localStorage.getItem("k")).toBe("1");
    expect(readFlag("k")).toBe(true);
    writeFlag("k", false);
    expect(localStorage.getItem("k")).toBeNull();
  });

  it("survives a storage that throws", () => {
    const broken = {
      getItem: () => {
        throw new Error("denied");
      },
      setItem: () => {
        throw new Error("quota");
      },
      removeItem: () => {},
    };
    expect(readFlag("k", broken)).toBe(false);
    expect(() => writeFlag("k", true, broken)).not.toThrow();
  });
});
