// Web Push on this device (specs/push.md §4): registers the service worker (offline shell, notifications),
// subscribes through the hypivisor's VAPID key on request, keeps the hypivisor's copy of this device's
// subscription and switches current, and reports what this page shows (presence) on every change and
// every (re)connect, so a device looking at an agent is not notified about it.
import { useCallback, useEffect, useRef, useState } from "react";
import type { PushConfigResult, PushDevice } from "../protocol/types";
import { readFlag, writeFlag } from "../ui/storedFlag";
import { deviceId, keyBytes, ON_KEY, presenceOf, sameKey, samePresence, unsupportedReason, type Presence } from "./pushCore";

type Request = <T>(method: string, params?: Record<string, unknown>, timeoutMs?: number) => Promise<T>;

export interface PushControl {
  /** null: usable here; else why not (no https, no Web Push in this browser). */
  unsupported: string | null;
  /** The hypivisor offers Web Push (it answered push_config). */
  offered: boolean;
  device: PushDevice | null;
  allKinds: string[];
  busy: boolean;
  error: string | null;
  enable(): Promise<void>;
  disable(): Promise<void>;
  setPrefs(kinds: string[], muted: string[]): Promise<void>;
}

const SW_URL = "sw.js";

function swContainer(): ServiceWorkerContainer | null {
  return typeof navigator !== "undefined" && "serviceWorker" in navigator && window.isSecureContext ? navigator.serviceWorker : null;
}

export function usePush(request: Request, connected: boolean, openNodeId: string | null): PushControl {
  const [id] = useState(() => deviceId());
  const [config, setConfig] = useState<PushConfigResult | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const unsupported = unsupportedReason(window as unknown as Parameters<typeof unsupportedReason>[0]);

  // The service worker: the offline shell and the notifications. A click on a notification asks an open
  // page to show that agent (the hash route), or the worker opens a new window at it.
  useEffect(() => {
    const sw = swContainer();
    if (!sw) return;
    sw.register(SW_URL).catch(() => undefined);
    const onMessage = (e: MessageEvent) => {
      const m = e.data as { type?: string; url?: string } | null;
      if (m?.type === "open" && typeof m.url === "string") {
        const hash = new URL(m.url, location.href).hash;
        if (hash.startsWith("#/")) location.hash = hash;
      }
    };
    sw.addEventListener("message", onMessage);
    return () => sw.removeEventListener("message", onMessage);
  }, []);

  const subscribeBrowser = useCallback(
    async (publicKey: string): Promise<PushSubscriptionJSON> => {
      const sw = swContainer();
      if (!sw) throw new Error("no service worker in this browser");
      await sw.register(SW_URL);
      const reg = await sw.ready;
      let sub = await reg.pushManager.getSubscription();
      if (sub && !sameKey(sub.options?.applicationServerKey, publicKey)) {
        await sub.unsubscribe().catch(() => undefined);
        sub = null;
      }
      sub ??= await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(publicKey) });
      return sub.toJSON();
    },
    [],
  );

  // On every (re)connect: the hypivisor's view of this device. A device that subscribed before but that
  // the hypivisor no longer knows (a new state dir, new keys) subscribes again, silently: permission is granted.
  useEffect(() => {
    if (!connected) return;
    let stale = false;
    request<PushConfigResult>("push_config", { device_id: id })
      .then(async (c) => {
        if (stale) return;
        setConfig(c);
        let device = c.device ?? null;
        if (!device && readFlag(ON_KEY) && c.public_key && !unsupported && Notification.permission === "granted") {
          try {
            const subscription = await subscribeBrowser(c.public_key);
            device = (await request<{ device: PushDevice }>("push_subscribe", { device_id: id, subscription })).device;
            if (!stale) setConfig({ ...c, device });
          } catch {
            device = null;
          }
        }
        writeFlag(ON_KEY, !!device);
      })
      .catch(() => undefined); // an older hypivisor without push: nothing to offer
    return () => {
      stale = true;
    };
  }, [connected, request, id, subscribeBrowser, unsupported]);

  // Presence: on every change of the open agent, focus or visibility, and on every (re)connect.
  const sent = useRef<Presence | null>(null);
  useEffect(() => {
    if (!connected) {
      sent.current = null;
      return;
    }
    const report = () => {
      const p = presenceOf(openNodeId, document);
      if (samePresence(sent.current, p)) return;
      sent.current = p;
      request("set_presence", { device_id: id, ...p }).catch(() => {
        sent.current = null;
      });
    };
    report();
    window.addEventListener("focus", report);
    window.addEventListener("blur", report);
    document.addEventListener("visibilitychange", report);
    return () => {
      window.removeEventListener("focus", report);
      window.removeEventListener("blur", report);
      document.removeEventListener("visibilitychange", report);
    };
  }, [connected, openNodeId, request, id]);

  const run = useCallback(async (work: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    try {
      await work();
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  }, []);

  const enable = useCallback(
    () =>
      run(async () => {
        if (!config?.public_key) throw new Error("the hypivisor offers no Web Push");
        const permission = await Notification.requestPermission();
        if (permission !== "granted") throw new Error("notifications are blocked for this site (browser settings)");
        const subscription = await subscribeBrowser(config.public_key);
        const r = await request<{ device: PushDevice }>("push_subscribe", { device_id: id, subscription });
        writeFlag(ON_KEY, true);
        setConfig((c) => (c ? { ...c, device: r.device } : c));
      }),
    [run, config?.public_key, subscribeBrowser, request, id],
  );

  const disable = useCallback(
    () =>
      run(async () => {
        writeFlag(ON_KEY, false);
        await request("push_unsubscribe", { device_id: id });
        const reg = await swContainer()?.getRegistration();
        await (await reg?.pushManager.getSubscription())?.unsubscribe();
        setConfig((c) => (c ? { ...c, device: null } : c));
      }),
    [run, request, id],
  );

  const setPrefs = useCallback(
    (kinds: string[], muted: string[]) =>
      run(async () => {
        const r = await request<{ device: PushDevice }>("set_push_prefs", { device_id: id, kinds, muted });
        setConfig((c) => (c ? { ...c, device: r.device } : c));
      }),
    [run, request, id],
  );

  return { unsupported, offered: !!config?.public_key, device: config?.device ?? null, allKinds: config?.kinds ?? [], busy, error, enable, disable, setPrefs };
}
