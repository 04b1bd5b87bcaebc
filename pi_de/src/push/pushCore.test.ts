import { describe, expect, it } from "vitest";
import { deviceId, DEVICE_KEY, keyBytes, presenceOf, sameKey, samePresence, unsupportedReason } from "./pushCore";

function memory(): Storage {
  const m = new Map<string, string>();
  return { getItem: (k: string) => m.get(k) ?? null, setItem: (k: string, v: string) => void m.set(k, v) } as unknown as Storage;
}

describe("pushCore", () => {
  it("keeps one device id per browser", () => {
    const s = memory();
    const id = deviceId(s, () => "dev-0123456789");
    expect(id).toBe("dev-0123456789");
    expect(deviceId(s, () => "dev-other-id-x")).toBe(id);
    s.setItem(DEVICE_KEY, "bad id!");
    expect(deviceId(s, () => "dev-fresh-one-1")).toBe("dev-fresh-one-1");
  });

  it("decodes a base64url key and compares it with a subscription's", () => {
    const b = keyBytes("BAEC_-8");
    expect(Array.from(b)).toEqual([4, 1, 2, 255, 239]);
    expect(sameKey(b.buffer, "BAEC_-8")).toBe(true);
    expect(sameKey(keyBytes("BAEC").buffer, "BAEC_-8")).toBe(false);
    expect(sameKey(null, "BAEC")).toBe(false);
  });

  it("reports presence as agent, focus and visibility: visible alone is not looking", () => {
    const p = presenceOf("n1", { visibilityState: "visible", hasFocus: () => false });
    expect(p).toEqual({ node_id: "n1", focused: false, visible: true });
    expect(samePresence(p, { ...p })).toBe(true);
    expect(samePresence(p, { ...p, focused: true })).toBe(false);
    expect(samePresence(null, p)).toBe(false);
  });

  it("says why push cannot work here", () => {
    expect(unsupportedReason({ isSecureContext: false })).toMatch(/https/);
    expect(unsupportedReason({ isSecureContext: true, navigator: {} as Navigator })).toMatch(/Web Push/);
    expect(unsupportedReason({ isSecureContext: true, navigator: { serviceWorker: {} } as unknown as Navigator, PushManager: {}, Notification: {} })).toBeNull();
  });
});
