// The agent link's state machine, free of React: one WebSocket to `/ws/agent/<nodeId>` through the
// hypivisor or, while the hypivisor is unreachable, straight to the bridge's port (rules in
// fallback.ts). There is never more than one socket; once stopped, nothing it owned reports again.
// useAgentLink wires it to the reducer; tests drive it with scripted sockets and fake timers.
import { asAgentFrame, type AgentServerFrame } from "../protocol/frames";
import { DIRECT_OPEN_TIMEOUT_MS, nextStep, type DirectTarget, type Route } from "./fallback";

/** WebSocket.OPEN (the constant, so this module does not need a DOM). */
const OPEN = 1;

/** An event handler property checked like a method (bivariantly), so a browser WebSocket fits. */
type Handler<E> = { bivariant(ev: E): void }["bivariant"];

/** The part of a browser WebSocket the link uses. */
export interface LinkSocket {
  readonly readyState: number;
  send(data: string): void;
  close(): void;
  onopen: Handler<unknown> | null;
  onmessage: Handler<{ data: unknown }> | null;
  onclose: Handler<unknown> | null;
}

export interface AgentLinkDeps {
  /** Opens a socket (may throw, e.g. for a ws:// URL from an https page). */
  open(url: string): LinkSocket;
  /** The hypivisor's proxy URL for this node. */
  proxyUrl: string;
  /** Direct URLs to try in order, computed when a direct attempt starts. */
  directUrls(): string[];
  /** Read when the machine decides: is the node listed as active, is the registry up, where is it. */
  isActive(): boolean;
  registryUp(): boolean;
  target(): DirectTarget | null;
  /** A frame arrived on the current socket. */
  onFrame(f: AgentServerFrame): void;
  /** A socket is being dialled, or the link is down. */
  onStatus(status: "connecting" | "lost"): void;
  /** The route that is up (after its init_state), or null when it went down. */
  onRoute(route: Route | null): void;
  /** The current socket opened: resend what was not acknowledged. */
  onOpen(send: (data: string) => void): void;
}

export class AgentLinkMachine {
  private ws: LinkSocket | null = null;
  private wsRoute: Route = "proxy";
  private wsHealthy = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private openTimer: ReturnType<typeof setTimeout> | undefined;
  private attempt = 0;
  /** Node inactive and no working link: dial when it is active again. */
  private waiting = false;
  private stopped = false;

  constructor(private readonly d: AgentLinkDeps) {}

  start(): void {
    if (this.d.isActive()) this.proxy();
    else {
      this.waiting = true;
      this.d.onStatus("lost");
    }
  }

  /** Closes the socket and cancels every timer; nothing reports afterwards. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.drop();
  }

  /** Sends on the current socket if it is open; false otherwise. */
  send(data: string): boolean {
    const ws = this.ws;
    if (ws && ws.readyState === OPEN) {
      ws.send(data);
      return true;
    }
    return false;
  }

  /** The registry's word on the node changed. */
  setActive(active: boolean): void {
    if (this.stopped) return;
    if (active) {
      if (!this.waiting) return;
      this.waiting = false;
      this.attempt = 0;
      clearTimeout(this.timer);
      this.proxy();
      return;
    }
    // A working direct link stays: a restarted hypivisor lists the node only once the bridge
    // registered again, and the link itself says when the agent is really gone.
    if (this.ws && this.wsRoute === "direct" && this.wsHealthy) return;
    clearTimeout(this.timer);
    this.drop();
    this.d.onRoute(null);
    this.waiting = true;
    this.d.onStatus("lost");
  }

  private drop(): void {
    clearTimeout(this.openTimer);
    const ws = this.ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.close();
    }
    this.ws = null;
  }

  /** One socket; `done(healthy)` runs once when it closes or fails to open in time. */
  private dial(url: string, r: Route, done: (healthy: boolean) => void, openTimeoutMs = 0): void {
    if (this.stopped) return;
    this.d.onStatus("connecting");
    let s: LinkSocket;
    try {
      s = this.d.open(url);
    } catch {
      done(false);
      return;
    }
    this.ws = s;
    this.wsRoute = r;
    this.wsHealthy = false;
    const current = () => !this.stopped && this.ws === s;
    if (openTimeoutMs > 0) {
      this.openTimer = setTimeout(() => {
        if (this.ws !== s || s.readyState === OPEN) return;
        this.drop();
        done(false);
      }, openTimeoutMs);
    }
    s.onopen = () => {
      if (!current()) return;
      clearTimeout(this.openTimer);
      // Unacknowledged prompts go out again with the same id; the bridge acks a repeat without
      // giving it to pi twice.
      this.d.onOpen((data) => s.send(data));
    };
    s.onmessage = (ev) => {
      if (!current() || typeof ev.data !== "string") return;
      let f: AgentServerFrame | null;
      try {
        f = asAgentFrame(JSON.parse(ev.data));
      } catch {
        return; // not JSON: ignore, the bridge never sends that
      }
      if (!f) return;
      if (f.type === "init_state" && !this.wsHealthy) {
        this.wsHealthy = true;
        this.attempt = 0;
        this.d.onRoute(r);
      }
      this.d.onFrame(f);
    };
    s.onclose = () => {
      if (!current()) return;
      const healthy = this.wsHealthy;
      this.ws = null;
      clearTimeout(this.openTimer);
      this.d.onRoute(null);
      this.d.onStatus("lost");
      done(healthy);
    };
  }

  private proxy = (): void => this.dial(this.d.proxyUrl, "proxy", (healthy) => this.ended("proxy", healthy));

  private direct(i = 0): void {
    const urls = this.d.directUrls();
    if (i >= urls.length) return this.ended("direct", false);
    this.dial(urls[i], "direct", (healthy) => (healthy ? this.ended("direct", true) : this.direct(i + 1)), DIRECT_OPEN_TIMEOUT_MS);
  }

  private ended(r: Route, healthy: boolean): void {
    if (this.stopped) return;
    if (!this.d.isActive()) {
      this.waiting = true; // the registry says the node is gone: wait for it instead of dialling
      this.d.onStatus("lost");
      return;
    }
    if (healthy) this.attempt = 0;
    const step = nextStep({ route: r, opened: healthy, registryUp: this.d.registryUp(), target: this.d.target(), attempt: this.attempt });
    if (step.route === "proxy") this.attempt++; // a direct try does not cost a backoff step: 1, 2, 4 s… as before
    clearTimeout(this.timer);
    const go = step.route === "direct" ? () => this.direct() : this.proxy;
    if (step.delayMs <= 0) go();
    else this.timer = setTimeout(go, step.delayMs);
  }
}
