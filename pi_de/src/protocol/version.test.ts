import { describe, expect, it } from "vitest";
import { PROTOCOL_VERSION, versionWarning } from "./version";

describe("protocol version check", () => {
  it("is silent for our version or none, and names both versions otherwise", () => {
    expect(versionWarning("The hypivisor", PROTOCOL_VERSION)).toBeNull();
    expect(versionWarning("The hypivisor", undefined)).toBeNull();
    expect(versionWarning("The hypivisor", "2")).toBe(
      "The hypivisor speaks protocol version 2; this Pi-DE speaks 1. Some features may not work.",
    );
  });
});
