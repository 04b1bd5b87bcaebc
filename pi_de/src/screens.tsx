// Full-page states before the dashboard can show anything, and the screens loaded on first use.
import { type ComponentType, type ReactNode, useEffect, useState } from "react";

/** What a screen whose chunk could not be fetched shows (the hypivisor went away, or it was upgraded and
 * serves other chunk names than this page knows): the rest of the dashboard keeps working. */
export function LoadFailed() {
  return (
    <div className="stage-empty" role="alert" data-testid="load-failed">
      <p>This part of Pi-DE could not be loaded (the hypivisor is unreachable or was upgraded).</p>
      <button type="button" className="btn" onClick={() => location.reload()}>
        Reload the page
      </button>
    </div>
  );
}

/** A component fetched as its own chunk the first time it renders; `fallback` shows meanwhile (a few
 * milliseconds on the hypivisor's own machine), LoadFailed if the fetch fails; the next time the screen is
 * opened the fetch is tried again (after an offline start, say).
 * Not React.lazy: a Suspense boundary holds resolved content back for up to 300 ms after its fallback
 * showed (React's reveal throttle), which made opening a conversation that much slower. */
export function onDemand<P extends object>(load: () => Promise<ComponentType<P>>, fallback: ReactNode = null): ComponentType<P> & { preload(): Promise<boolean> } {
  let loaded: ComponentType<P> | null = null;
  let pending: Promise<boolean> | null = null;
  const start = () =>
    (pending ??= load().then(
      (c) => {
        loaded = c;
        return true;
      },
      () => {
        pending = null; // the next mount tries again
        return false;
      },
    ));
  function OnDemand(props: P) {
    const [failed, setFailed] = useState(false);
    const [, setLoaded] = useState(false);
    const waiting = !loaded && !failed;
    if (waiting) void start(); // idempotent: the fetch begins with the first render, not after its commit
    useEffect(() => {
      if (!waiting) return;
      let live = true;
      void start().then((ok) => live && (ok ? setLoaded(true) : setFailed(true)));
      return () => {
        live = false;
      };
    }, [waiting]);
    const Loaded = loaded;
    if (Loaded) return <Loaded {...props} />;
    return failed ? <LoadFailed /> : <>{fallback}</>;
  }
  return Object.assign(OnDemand, { preload: start });
}

// Everything past the roster and the inbox is loaded on first use, so the first load of the dashboard
// stays close to React's own size (bench section 6). The conversation's chunk is fetched as soon as a URL
// names an agent; the fallbacks are blank areas of the same class, so nothing jumps when they arrive.
export const ChatStage = onDemand(() => import("./chat/ChatStage").then((m) => m.ChatStage), <div className="stage-empty" />);
export const SessionsView = onDemand(() => import("./sessions/SessionsView").then((m) => m.SessionsView), <div className="stage-empty" />);
export const SessionView = onDemand(() => import("./sessions/SessionView").then((m) => m.SessionView), <div className="stage-empty" />);
export const BudgetView = onDemand(() => import("./budget/BudgetView").then((m) => m.BudgetView), <div className="stage-empty" />);
export const SpawnModal = onDemand(() => import("./spawn/SpawnModal").then((m) => m.SpawnModal));

/** Fetch every on-demand screen now. A page that can fail over to another hypivisor (specs/cluster.md §8)
 * does this once it knows a peer: its own origin, the only place its chunks come from, may be gone later. */
export function preloadScreens(): void {
  for (const screen of [ChatStage, SessionsView, SessionView, BudgetView, SpawnModal]) void screen.preload();
  // the conversation's own on-demand parts (markdown, highlighting): a chunk of their own, so the first load
  // stays as small as it was
  void import("./chat/preload").then(
    (m) => m.preloadChat(),
    () => false,
  );
}

export function ErrorScreen({ url, retryInMs, onRetry, onToken }: { url: string; retryInMs: number | null; onRetry(): void; onToken(): void }) {
  return (
    <main className="screen" data-testid="error-screen">
      <h1>Can't reach the hypivisor</h1>
      <p>
        Pi-DE tried <code>{url}</code> and got no answer.
        {retryInMs != null && ` Trying again in ${Math.round(retryInMs / 1000)} s.`}
      </p>
      <button type="button" className="btn btn-primary" onClick={onRetry}>
        Retry now
      </button>
      <h2>Troubleshooting</h2>
      <ul>
        <li>
          Is the hypivisor running? Start it with <code>make run</code> (or <code>python -m hypivisor</code>).
        </li>
        <li>In development, Vite proxies /ws to HYPIVISOR_URL (default http://localhost:31415): is that the right port?</li>
        <li>
          Hypivisor elsewhere? Open this page with <code>?hypivisor=ws://host:port</code>.
        </li>
        <li>
          Behind a proxy or tunnel, it must forward WebSocket upgrades, and its origin must be listed in <code>HYPI_ALLOWED_ORIGINS</code>.
        </li>
        <li>
          Uses a token? <button type="button" className="link-btn" onClick={onToken}>Enter the token</button>.
        </li>
      </ul>
    </main>
  );
}

export function TokenScreen({ url, onSave, rejected }: { url: string; onSave(token: string): void; rejected: boolean }) {
  const [value, setValue] = useState("");
  return (
    <main className="screen" data-testid="token-screen">
      <h1>Hypivisor token</h1>
      <p>
        {rejected ? "The hypivisor at " : "Enter the token (HYPI_TOKEN) of the hypivisor at "}
        <code>{url}</code>
        {rejected ? " refused the connection (401): enter its token (HYPI_TOKEN)." : "."} It is kept in this browser, for this hypivisor only.
      </p>
      <p className="muted">
        On the hypivisor&apos;s machine, <code>hypivisor url</code> prints a link that carries it (the token is in{" "}
        <code>~/.config/hyper-pi/token</code>).
      </p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (value.trim()) onSave(value.trim());
        }}
      >
        <input type="password" autoFocus aria-label="Token" value={value} onChange={(e) => setValue(e.target.value)} autoComplete="current-password" />
        <button type="submit" className="btn btn-primary">
          Connect
        </button>
      </form>
    </main>
  );
}
