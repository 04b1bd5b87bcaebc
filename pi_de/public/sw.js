// Pi-DE's service worker (plain JS, served as /sw.js; specs/push.md §4).
// - Offline shell: the app's page and its hashed assets are cached, so the installed app opens without
//   the hypivisor (it then shows "reconnecting"); /ws and every other request go to the network untouched.
// - Web Push: each push is one notification per agent (its `tag`), replacing that agent's older one.
// - A click focuses an open Pi-DE window and opens that agent there, or opens a new window at it.
const SHELL = "pi-de-shell-v1";
const SHELL_FILES = ["./", "manifest.webmanifest", "icon-192.png", "icon-512.png", "favicon.svg"];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(SHELL)
      .then((cache) => cache.addAll(SHELL_FILES))
      .catch(() => undefined) // a partial shell is better than no service worker
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const key of await caches.keys()) if (key !== SHELL) await caches.delete(key);
      await self.clients.claim();
    })(),
  );
});

self.addEventListener("fetch", (event) => {
  const req = event.request;
  if (req.method !== "GET") return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  const scope = new URL(self.registration.scope);
  const path = url.pathname.slice(scope.pathname.length - 1);
  if (req.mode === "navigate") {
    // the page: the network first (a rebuild shows at once), the cached shell when offline
    event.respondWith(
      fetch(req)
        .then((res) => {
          if (res.ok) {
            const copy = res.clone();
            caches.open(SHELL).then((c) => c.put("./", copy));
          }
          return res;
        })
        .catch(() => caches.match("./").then((hit) => hit || Response.error())),
    );
  } else if (path.startsWith("/assets/")) {
    // content-hashed by Vite: a cached copy is always right
    event.respondWith(
      caches.match(req).then(
        (hit) =>
          hit ||
          fetch(req).then((res) => {
            if (res.ok) {
              const copy = res.clone();
              caches.open(SHELL).then((c) => c.put(req, copy));
            }
            return res;
          }),
      ),
    );
  }
});

self.addEventListener("push", (event) => {
  let d = {};
  try {
    d = event.data ? event.data.json() : {};
  } catch {
    d = { title: "Pi-DE", body: event.data ? event.data.text() : "" };
  }
  const title = d.title || "Pi-DE";
  const data = { url: d.url || "#/", node_id: d.node_id, item_id: d.item_id, approval_id: d.approval_id, kind: d.kind };
  event.waitUntil(
    (async () => {
      await self.registration.showNotification(title, {
        body: d.body || "",
        tag: d.tag || "pi-de",
        renotify: true, // a new item of the same agent alerts again while replacing the older notice
        icon: "icon-192.png",
        badge: "icon-192.png",
        data,
      });
      for (const c of await self.clients.matchAll({ type: "window" })) c.postMessage({ type: "push", data });
    })(),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const data = event.notification.data || {};
  const target = new URL(data.url || "#/", self.registration.scope).href;
  const work = (async () => {
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    const open = windows.find((c) => c.url.startsWith(self.registration.scope));
    if (open) {
      open.postMessage({ type: "open", url: target }); // the page moves to that agent's hash route
      await open.focus().catch(() => undefined);
      return;
    }
    await self.clients.openWindow(target);
  })();
  try {
    event.waitUntil(work);
  } catch {
    /* an event not dispatched by the browser cannot be extended; the work runs anyway */
  }
});
