// @vitest-environment node
import { describe, expect, it } from "vitest";

describe("unknown frames from a newer peer", () => {
  it("knows every registry push event of the schema, and says each unknown one once", async () => {
    const { KNOWN_REGISTRY_EVENTS, noteUnknown } = await import("./frames");
    const { readFileSync } = await import("node:fs");
    const { fileURLToPath } = await import("node:url");
    const schema = JSON.parse(readFileSync(fileURLToPath(new URL("./schema.json", import.meta.url)), "utf8"));
    const events = Object.values(schema.$defs as Record<string, { properties?: { event?: { const?: string; default?: string } } }>)
      .map((d) => d.properties?.event?.const ?? d.properties?.event?.default)
      .filter((e): e is string => typeof e === "string");
    expect([...KNOWN_REGISTRY_EVENTS].sort()).toEqual([...new Set(events)].sort());
    const said: string[] = [];
    expect(noteUnknown("registry", "comet_sighted", (m) => said.push(m))).toBe(true);
    expect(noteUnknown("registry", "comet_sighted", (m) => said.push(m))).toBe(false);
    expect(said).toEqual(['Pi-DE: ignoring an unknown registry event "comet_sighted" (a newer peer?)']);
  });
});
