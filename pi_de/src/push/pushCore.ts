// Web Push on this device, the pure parts (specs/push.md §4): the device id, the VAPID key's bytes, what
// the page reports as its presence, and whether a browser subscription was made for the current key.
// Everything with I/O is in usePush.ts.

export const DEVICE_KEY = "hyperpi.push.device";
/** Set while this browser holds a push subscription the hypivisor accepted: in-page notices then stay quiet. */
export const ON_KEY = "hyperpi.push.on";

type Store = Pick<Storage, "getItem" | "setItem">;

/** A random id per browser profile and origin, kept in localStorage (a new one if storage is unavailable). */
export function deviceId(storage: Store | undefined = globalThis.localStorage, random: () => string = randomId): string {
  try {
    const known = storage?.getItem(DEVICE_KEY);
    if (known && /^[A-Za-z0-9_-]{8,64}$/.test(known)) return known;
    const id = random();
    storage?.setItem(DEVICE_KEY, id);
    return id;
  } catch {
    return random();
  }
}

function randomId(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return "dev-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** base64url (no padding) → bytes: the form `pushManager.subscribe({applicationServerKey})` takes. */
export function keyBytes(b64url: string): Uint8Array<ArrayBuffer> {
  const b64 = b64url.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (b64url.length % 4)) % 4);
  const raw = atob(b64);
  const out = new Uint8Array(new ArrayBuffer(raw.length));
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

/** Whether a subscription was made with this VAPID key (a hypivisor that made new keys needs a new one). */
export function sameKey(subscriptionKey: ArrayBuffer | null | undefined, b64url: string): boolean {
  if (!subscriptionKey) return false;
  const a = new Uint8Array(subscriptionKey);
  const b = keyBytes(b64url);
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

export interface Presence {
  node_id: string | null;
  focused: boolean;
  visible: boolean;
}

/** What this page shows now. Visible alone is not looking (another window may cover the tab): focus too. */
export function presenceOf(openNodeId: string | null, doc: Pick<Document, "visibilityState" | "hasFocus">): Presence {
  return { node_id: openNodeId, focused: doc.hasFocus(), visible: doc.visibilityState === "visible" };
}

export const samePresence = (a: Presence | null, b: Presence) => !!a && a.node_id === b.node_id && a.focused === b.focused && a.visible === b.visible;

/** Why push cannot work in this browser, or null. */
export function unsupportedReason(w: { isSecureContext?: boolean; navigator?: Navigator; PushManager?: unknown; Notification?: unknown }): string | null {
  if (!w.isSecureContext) return "needs https (or localhost): see “Push to your phone” in the README";
  if (!w.navigator || !("serviceWorker" in w.navigator) || !w.PushManager || !w.Notification) return "this browser has no Web Push (on iOS: add Pi-DE to the Home Screen first)";
  return null;
}

export const KIND_LABELS: Record<string, string> = {
  approval: "Approvals",
  question: "Questions",
  error: "Errors",
  finished: "Finished runs",
  stalled: "Stalled agents",
  budget: "Budget reached",
  exited: "Exited with unread output",
};
