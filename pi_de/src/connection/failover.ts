// Which hypivisor the registry link uses, and how long to wait before the next attempt: the same rules as
// the machine services' and bridges' list of hypivisors (specs/cluster.md §8, "Order"). Pure, no sockets.
//
// - The first URL (the hypivisor that served the page) first; the one that connected is kept as long as it
//   works (a returning first hypivisor does not pull the page back); a lost connection or a refused attempt
//   moves to the next URL, wrapping.
// - The first attempt after a success is immediate when there is another URL; every later one waits the
//   usual backoff (1 s doubling to 10 s), one sequence across the whole list, reset by a success. One URL
//   behaves exactly as before: every retry waits the backoff.
//
// Where the other URLs come from (peerBases): only the `peers` of the `init` event the page's own hypivisor
// sent, over a connection that carried the token (it sends them only then). They live in memory for the
// page's life: never read from the address, never stored.

import { backoffDelay } from "./backoff";
import type { Endpoints } from "./endpoints";

/** At most this many peers are taken from an `init` (the hypivisor sends at most 16). */
export const MAX_PEERS = 16;

export class Failover {
  private list: string[];
  private index = 0;
  private failures = 0; // since the last success
  private backoffAttempt = 0; // the backoff's own count skips the immediate fail-over

  constructor(urls: readonly string[]) {
    if (!urls.length) throw new Error("Failover needs at least one URL");
    this.list = unique(urls);
  }

  /** The one to connect to now. */
  get url(): string {
    return this.list[this.index];
  }

  get urls(): readonly string[] {
    return this.list;
  }

  /** A connection opened: keep this URL, restart the backoff. */
  succeeded(): void {
    this.failures = 0;
    this.backoffAttempt = 0;
  }

  /** A refused attempt or a lost connection: move to the next URL; the delay (ms) before trying it. */
  failed(): number {
    this.failures += 1;
    if (this.list.length > 1) {
      this.index = (this.index + 1) % this.list.length;
      if (this.failures === 1) return 0;
    }
    return backoffDelay(this.backoffAttempt++);
  }

  /** A new list (the own hypivisor first, then its peers): the current URL stays current while it is listed. */
  setUrls(urls: readonly string[]): void {
    if (!urls.length) return;
    const current = this.url;
    this.list = unique(urls);
    this.index = Math.max(0, this.list.indexOf(current));
  }
}

function unique(urls: readonly string[]): string[] {
  return [...new Set(urls)];
}

const ORIGIN = /^(https?):\/\/([^\s/?#@\\]+)$/i;

/**
 * The `peers` of an `init` (dashboard origins such as `https://b.example:5180`) as WebSocket bases
 * (`wss://b.example:5180`), in order; anything that is not a plain http(s) origin is skipped, so is the
 * own hypivisor; at most MAX_PEERS.
 */
export function peerBases(peers: unknown, own: string): string[] {
  if (!Array.isArray(peers)) return [];
  const out: string[] = [];
  for (const p of peers) {
    if (typeof p !== "string" || p.length > 300) continue;
    const m = ORIGIN.exec(p.trim().replace(/\/$/, ""));
    if (!m) continue;
    const base = `${m[1].toLowerCase() === "https" ? "wss" : "ws"}://${m[2].toLowerCase()}`;
    if (base !== own && !out.includes(base)) out.push(base);
    if (out.length >= MAX_PEERS) break;
  }
  return out;
}

/** The endpoints of a hypivisor of the list; `sameOrigin` only for the page's own one. */
export function endpointsOf(wsBase: string, own: Endpoints): Endpoints {
  if (wsBase === own.wsBase) return own;
  return { wsBase, httpBase: wsBase.replace(/^ws/i, "http"), sameOrigin: false };
}

/** `host:port` of a WebSocket base, as the header shows it ("on b.example:5180"). */
export function hostOf(wsBase: string): string {
  return wsBase.replace(/^wss?:\/\//i, "");
}
