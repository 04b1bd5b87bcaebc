import { describe, expect, it, vi } from "vitest";
import { adoptUrlToken, loadToken, tokenKey, urlToken } from "./token";

function memory() {
  const m = new Map<string, string>();
  return {
    getItem: (k: string) => m.get(k) ?? null,
    setItem: (k: string, v: string) => void m.set(k, v),
    removeItem: (k: string) => void m.delete(k),
    m,
  };
}

const loc = (hash: string, search = "") => ({ protocol: "http:", host: "localhost:5180", pathname: "/", search, hash });

describe("the first-start link's token", () => {
  it("reads #token=<percent-encoded> only", () => {
    expect(urlToken("#token=abc-_123")).toBe("abc-_123");
    expect(urlToken("#token=a%2Fb%2Bc%3D")).toBe("a/b+c=");
    expect(urlToken("#token=")).toBeNull();
    expect(urlToken("#token=%E0%A4%A")).toBeNull();
    expect(urlToken("#/agent/x")).toBeNull();
    expect(urlToken("#token=a&x=1")).toBeNull();
  });

  it("stores it for the page's own hypivisor and takes it out of the address bar", () => {
    const storage = memory();
    const hist = { state: { piDeDepth: 0 }, replaceState: vi.fn() };
    expect(adoptUrlToken(loc("#token=s3cret%2F"), hist, storage)).toBe(true);
    expect(hist.replaceState).toHaveBeenCalledWith({ piDeDepth: 0 }, "", "/");
    expect(storage.m.get(tokenKey("ws://localhost:5180"))).toBe("s3cret/");
    expect(loadToken("ws://localhost:5180", true, storage)).toBe("s3cret/");
  });

  it("reads the address before changing it (window.location is live)", () => {
    const storage = memory();
    const live = loc("#token=live");
    const hist = { state: null, replaceState: vi.fn(() => void (live.hash = "")) };
    expect(adoptUrlToken(live, hist, storage)).toBe(true);
    expect(storage.m.get(tokenKey("ws://localhost:5180"))).toBe("live");
  });

  it("never stores a token for another hypivisor named in ?hypivisor=, but still clears the address", () => {
    const storage = memory();
    const hist = { state: null, replaceState: vi.fn() };
    expect(adoptUrlToken(loc("#token=x", "?hypivisor=ws://elsewhere:1"), hist, storage)).toBe(false);
    expect(hist.replaceState).toHaveBeenCalledWith(null, "", "/?hypivisor=ws://elsewhere:1");
    expect(storage.m.size).toBe(0);
  });

  it("leaves every other address alone", () => {
    const hist = { state: null, replaceState: vi.fn() };
    expect(adoptUrlToken(loc("#/inbox"), hist, memory())).toBe(false);
    expect(adoptUrlToken(loc(""), hist, memory())).toBe(false);
    expect(hist.replaceState).not.toHaveBeenCalled();
  });
});
