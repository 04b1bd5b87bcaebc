// Every screen has a URL, in the hash so that any static server (the hypivisor's, a reverse proxy under
// a sub-path, `vite preview`) serves the same index.html without knowing the routes:
//   #/               the roster, nothing open
//   #/agent/<id>     one agent's conversation (the id percent-encoded)
//   #/spawn          the spawn dialog
//   #/inbox          reserved for the inbox
//   #/budget         spend, totals and budgets
//   #/sessions       past pi sessions: list, folder filter, search
//   #/session/<id>   one past session, read-only (`?machine=&entry=`: another machine, open at a search hit)
// Anything else is the roster. Pure: parsing and formatting only.

export type Route = { screen: "home" } | { screen: "agent"; id: string } | { screen: "spawn" } | { screen: "inbox" } | { screen: "budget" }
  | { screen: "sessions" }
  | { screen: "session"; id: string; machine?: string; entry?: string };

export const HOME: Route = { screen: "home" };

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, "").replace(/^\/+/, "").replace(/\/+$/, "");
  if (path === "spawn") return { screen: "spawn" };
  if (path === "inbox") return { screen: "inbox" };
  if (path === "budget") return { screen: "budget" };
  if (path === "sessions") return { screen: "sessions" };
  const s = /^session\/([^?/]+)\/*(?:\?(.*))?$/.exec(path);
  if (s) {
    try {
      const q = new URLSearchParams(s[2] ?? "");
      const r: Extract<Route, { screen: "session" }> = { screen: "session", id: decodeURIComponent(s[1]) };
      if (q.get("machine")) r.machine = q.get("machine")!;
      if (q.get("entry")) r.entry = q.get("entry")!;
      return r;
    } catch {
      /* a malformed escape: not a session URL */
    }
  }
  const m = /^agent\/(.+)$/.exec(path);
  if (m) {
    try {
      const id = decodeURIComponent(m[1]);
      if (id) return { screen: "agent", id };
    } catch {
      /* a malformed escape: not an agent URL */
    }
  }
  return HOME;
}

export function routeHash(r: Route): string {
  switch (r.screen) {
    case "agent":
      return `#/agent/${encodeURIComponent(r.id)}`;
    case "spawn":
      return "#/spawn";
    case "inbox":
      return "#/inbox";
    case "budget":
      return "#/budget";
    case "sessions":
      return "#/sessions";
    case "session": {
      const q = new URLSearchParams();
      if (r.machine) q.set("machine", r.machine);
      if (r.entry) q.set("entry", r.entry);
      const qs = q.toString();
      return `#/session/${encodeURIComponent(r.id)}${qs ? `?${qs}` : ""}`;
    }
    default:
      return "#/";
  }
}

export function sameRoute(a: Route, b: Route): boolean {
  return routeHash(a) === routeHash(b);
}
