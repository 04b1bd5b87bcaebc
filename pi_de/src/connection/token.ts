// The hypivisor token. Browsers cannot set headers on a WebSocket, so it travels as a subprotocol
// (`hypi-token.<base64url>`), next to `hypi.v1` which the server selects. It is read from
// localStorage (asked for after a 401) or, in dev only, from VITE_HYPI_TOKEN; it is never compiled
// into a production bundle (see build.test.ts, which greps dist).
//
// Tokens are stored per hypivisor URL: a crafted link `?hypivisor=wss://elsewhere` must not make
// the page hand the token of *your* hypivisor to another server. A new URL starts with no token.

import { resolveEndpoints } from "./endpoints";

export const TOKEN_KEY = "pi-de-token";
export const tokenKey = (wsBase: string) => `${TOKEN_KEY}:${wsBase}`;
export const PROTOCOL = "hypi.v1";

export function base64url(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function subprotocols(token: string | null): string[] {
  return token ? [PROTOCOL, `hypi-token.${base64url(token)}`] : [PROTOCOL];
}

/** Dev-time token; `import.meta.env.DEV` is false in builds, so Vite drops the env read entirely. */
function devToken(): string | null {
  if (!import.meta.env.DEV) return null;
  return import.meta.env.VITE_HYPI_TOKEN || null;
}

/** `sameOrigin`: the dev token only ever goes to the server that served the page. */
export function loadToken(wsBase: string, sameOrigin: boolean, storage: Pick<Storage, "getItem"> = localStorage): string | null {
  const dev = sameOrigin ? devToken() : null;
  try {
    return storage.getItem(tokenKey(wsBase)) || dev;
  } catch {
    return dev;
  }
}

export function saveToken(wsBase: string, token: string | null, storage: Pick<Storage, "setItem" | "removeItem"> = localStorage) {
  try {
    if (token) storage.setItem(tokenKey(wsBase), token);
    else storage.removeItem(tokenKey(wsBase));
  } catch {
    /* private mode: the token lives for this page only */
  }
}

/**
 * A failed WebSocket handshake tells the page nothing (close code 1006), so after a failure we ask
 * the same URL over plain HTTP with the token as a Bearer header: 401 means "token needed/wrong".
 */
export async function probeUnauthorized(httpUrl: string, token: string | null): Promise<boolean> {
  try {
    const res = await fetch(httpUrl, {
      headers: token ? { Authorization: `Bearer ${token}` } : {},
      cache: "no-store",
    });
    return res.status === 401;
  } catch {
    return false;
  }
}

/**
 * The link the hypivisor prints at its first start carries the token once, in the fragment
 * (`#token=<percent-encoded>`: never sent to a server, so no proxy or access log sees it). The
 * page stores it for its own hypivisor and takes it out of the address bar (history and
 * bookmarks then hold the plain URL), before the router reads the fragment.
 */
export function urlToken(hash: string): string | null {
  const m = /^#token=([^&#]*)$/.exec(hash);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]) || null;
  } catch {
    return null;
  }
}

type TokenLocation = Pick<Location, "protocol" | "host" | "search" | "hash" | "pathname">;

/** True when a token came with the address and was stored; a `#token=` is removed from the address bar either way.
 * Only a page served by the hypivisor itself takes one (`?hypivisor=` elsewhere: removed, not stored). */
export function adoptUrlToken(
  loc: TokenLocation,
  hist: Pick<History, "replaceState" | "state">,
  storage: Pick<Storage, "setItem" | "removeItem"> = localStorage,
): boolean {
  if (!loc.hash.startsWith("#token=")) return false;
  const token = urlToken(loc.hash); // read before replaceState: window.location is live
  const endpoints = resolveEndpoints(loc);
  hist.replaceState(hist.state, "", loc.pathname + loc.search);
  if (!token || !endpoints.sameOrigin) return false;
  saveToken(endpoints.wsBase, token, storage);
  return true;
}
