// Every screen has a URL, in the hash so that any static server (the hypivisor's, a reverse proxy under
// a sub-path, `vite preview`) serves the same index.html without knowing the routes:
//   #/               the roster, nothing open
//   #/agent/<id>     one agent's conversation (the id percent-encoded)
//   #/spawn          the spawn dialog
//   #/inbox          reserved for the inbox
//   #/budget         spend, totals and budgets
// Anything else is the roster. Pure: parsing and formatting only.

export type Route = { screen: "home" } | { screen: "agent"; id: string } | { screen: "spawn" } | { screen: "inbox" } | { screen: "budget" };

export const HOME: Route = { screen: "home" };

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, "").replace(/^\/+/, "").replace(/\/+$/, "");
  if (path === "spawn") return { screen: "spawn" };
  if (path === "inbox") return { screen: "inbox" };
  if (path === "budget") return { screen: "budget" };
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
    default:
      return "#/";
  }
}

export function sameRoute(a: Route, b: Route): boolean {
  return routeHash(a) === routeHash(b);
}
