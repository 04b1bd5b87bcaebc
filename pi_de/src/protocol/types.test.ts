// @vitest-environment node
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
// @ts-expect-error plain .mjs script without types
import { generate } from "../../scripts/gen-types.mjs";

describe("generated protocol types", () => {
  it("types.ts is up to date with schema.json (run `npm run gen:schema && npm run gen:types`)", async () => {
    const schema = JSON.parse(readFileSync(fileURLToPath(new URL("./schema.json", import.meta.url)), "utf8"));
    const committed = readFileSync(fileURLToPath(new URL("./types.ts", import.meta.url)), "utf8");
    expect(committed).toBe(await generate(schema));
  }, 30_000);

  it("exports only the models, under their own names (no Type1/Id2 aliases of titled fields)", async () => {
    const schema = JSON.parse(readFileSync(fileURLToPath(new URL("./schema.json", import.meta.url)), "utf8"));
    const ts: string = await generate(schema);
    const exported = [...ts.matchAll(/^export (?:type|interface) (\w+)/gm)].map((m) => m[1]);
    expect(exported.filter((n) => n !== "HyperPiProtocolIndex").sort()).toEqual(Object.keys(schema.$defs).sort());
    // a frame's discriminant is always on the wire, so it is required (unions narrow on it)
    expect(ts).toMatch(/export interface AckMsg \{[^}]*\n  type: "ack";/);
    expect(ts).toMatch(/export interface NodeJoinedEvent \{[^}]*\n  event: "node_joined";/);
  }, 30_000);

  it("schema.json is the schema of the protocol version this build speaks", async () => {
    const schema = JSON.parse(readFileSync(fileURLToPath(new URL("./schema.json", import.meta.url)), "utf8"));
    const { PROTOCOL_VERSION } = await import("./version");
    expect(schema.protocol_version).toBe(PROTOCOL_VERSION);
    expect(Object.keys(schema.$defs)).toContain("InitStateMsg");
  });
});
