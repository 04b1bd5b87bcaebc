// Where the hypivisor is. Pi-DE is served by the hypivisor (or by Vite, which proxies /ws), so the
// default is always same-origin; `?hypivisor=ws://host:port` covers odd setups (tunnels, split hosts).

export interface Endpoints {
  /** Base WebSocket URL without a trailing slash, e.g. `ws://localhost:31415`. */
  wsBase: string;
  /** HTTP(S) equivalent of wsBase, used for the 401 probe. */
  httpBase: string;
  /** The hypivisor is the server that served this page (no `?hypivisor=` elsewhere). */
  sameOrigin: boolean;
}

export function resolveEndpoints(loc: Pick<Location, "protocol" | "host" | "search">): Endpoints {
  const override = new URLSearchParams(loc.search).get("hypivisor");
  let wsBase: string;
  if (override && /^(wss?|https?):\/\//i.test(override)) {
    wsBase = override.replace(/^http/i, "ws").replace(/\/+$/, "");
  } else {
    wsBase = `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}`;
  }
  const own = `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}`;
  return { wsBase, httpBase: wsBase.replace(/^ws/i, "http"), sameOrigin: wsBase === own };
}

export const registryUrl = (e: Endpoints) => `${e.wsBase}/ws`;
/** The socket the page opens: it asks for a large roster's nodes in `nodes_joined` chunks (a hypivisor that
 * predates them ignores the query and sends `node_joined` frames, which the page handles too). */
export const registrySocketUrl = (e: Endpoints) => `${registryUrl(e)}?roster=chunks`;
export const agentUrl = (e: Endpoints, nodeId: string) => `${e.wsBase}/ws/agent/${encodeURIComponent(nodeId)}`;
