import { describe, expect, it } from "vitest";
import { BACKOFF_MAX_MS, backoffDelay } from "./backoff";
import { agentUrl, registryUrl, resolveEndpoints } from "./endpoints";
import { RpcClient, RpcError } from "./rpc";
import { base64url, loadToken, saveToken, subprotocols, tokenKey } from "./token";

describe("reconnect backoff", () => {
  it("starts at 1 s and doubles up to 10 s", () => {
    expect([0, 1, 2, 3, 4, 5, 50].map(backoffDelay)).toEqual([1000, 2000, 4000, 8000, 10000, 10000, 10000]);
    expect(backoffDelay(1e9)).toBe(BACKOFF_MAX_MS);
  });
});

describe("endpoints", () => {
  it("are same-origin by default, ws or wss by page scheme", () => {
    const e = resolveEndpoints({ protocol: "http:", host: "box:31415", search: "" });
    expect(registryUrl(e)).toBe("ws://box:31415/ws");
    expect(agentUrl(e, "a b")).toBe("ws://box:31415/ws/agent/a%20b");
    expect(resolveEndpoints({ protocol: "https:", host: "x.ts.net", search: "" }).wsBase).toBe("wss://x.ts.net");
  });
  it("honour ?hypivisor= and ignore junk there", () => {
    expect(resolveEndpoints({ protocol: "http:", host: "a:1", search: "?hypivisor=ws://h:9/" }).wsBase).toBe("ws://h:9");
    expect(resolveEndpoints({ protocol: "http:", host: "a:1", search: "?hypivisor=javascript:alert(1)" }).wsBase).toBe("ws://a:1");
  });
});

describe("token handling", () => {
  it("encodes the token as unpadded base64url of its UTF-8 bytes", () => {
    expect(base64url("s3cr3t?>>")).toBe("czNjcjN0Pz4-");
    expect(base64url("ü")).toBe("w7w");
    expect(subprotocols("ü")).toEqual(["hypi.v1", "hypi-token.w7w"]);
    expect(subprotocols(null)).toEqual(["hypi.v1"]);
  });
  it("is kept in localStorage per hypivisor and removed when cleared", () => {
    saveToken("ws://mine:31415", "abc");
    expect(localStorage.getItem(tokenKey("ws://mine:31415"))).toBe("abc");
    expect(loadToken("ws://mine:31415", true)).toBe("abc");
    saveToken("ws://mine:31415", null);
    expect(loadToken("ws://mine:31415", true)).toBeNull();
  });

  it("is never offered to another hypivisor named in ?hypivisor=", () => {
    saveToken("ws://mine:31415", "abc");
    const e = resolveEndpoints({ protocol: "http:", host: "mine:31415", search: "?hypivisor=wss://evil.example" });
    expect(e.sameOrigin).toBe(false);
    expect(loadToken(e.wsBase, e.sameOrigin)).toBeNull();
    expect(resolveEndpoints({ protocol: "http:", host: "mine:31415", search: "" }).sameOrigin).toBe(true);
  });
});

describe("rpc client", () => {
  it("matches out-of-order responses by id and rejects on close", async () => {
    const sent: any[] = [];
    const rpc = new RpcClient((f) => sent.push(JSON.parse(f)));
    const a = rpc.request("list_directories", { path: "/x" });
    const b = rpc.request("list_nodes");
    expect(rpc.handle({ id: sent[1].id, result: { nodes: [] } })).toBe(true);
    expect(rpc.handle({ id: sent[0].id, error: { code: 1003, message: "outside home" } })).toBe(true);
    await expect(b).resolves.toEqual({ nodes: [] });
    await expect(a).rejects.toMatchObject({ code: 1003 });
    expect(rpc.handle({ id: "unknown", result: 1 })).toBe(false);
    const c = rpc.request("spawn_agent");
    rpc.rejectAll("closed");
    await expect(c).rejects.toBeInstanceOf(RpcError);
  });
});
