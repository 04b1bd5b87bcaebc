import { describe, expect, it } from "vitest";
import { PROTOCOL_VERSION, versionWarning } from "./version";

describe("protocol version check", () => {
  it("is silent for the same major (a newer or older minor works) or none", () => {
    expect(versionWarning("The hypivisor", PROTOCOL_VERSION)).toBeNull();
    expect(versionWarning("The hypivisor", undefined)).toBeNull();
    expect(versionWarning("The hypivisor", "1")).toBeNull();
    expect(versionWarning("The hypivisor", "1.7")).toBeNull();
  });
  it("names both versions and what to upgrade for another major", () => {
    expect(versionWarning("The hypivisor", "2.0")).toBe(
      "The hypivisor speaks protocol 2.0; this Pi-DE speaks 1.1. Upgrade this Pi-DE (reload after upgrading Hyper-Pi) so both speak the same major version.",
    );
    expect(versionWarning("This agent", "0.9")).toBe(
      "This agent speaks protocol 0.9; this Pi-DE speaks 1.1. Upgrade the agent so both speak the same major version.",
    );
  });
});
