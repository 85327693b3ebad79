// Offline from the first visit: at install the app shell, the package's JS and the .wasm are
// precached under this build's version (scripts/demo-site.mjs stamps both lines below), and
// served from that cache. A new build is a new service worker with a new cache; the old
// cache is deleted once it takes over.
const VERSION = "dev";
const PRECACHE = [];
const CACHE = `logfold-demo-${VERSION}`;

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      // Fresh copies of this build, past any HTTP cache on the way (the query makes the URL
      // the build's own); stored under the plain path.
      const fresh = await Promise.all(
        PRECACHE.map(async (path) => {
          const response = await fetch(`${path}?build=${VERSION}`, { cache: "no-store" });
          if (!response.ok) throw new Error(`${path}: ${response.status}`);
          return [path, response];
        }),
      );
      const cache = await caches.open(CACHE);
      for (const [path, response] of fresh) await cache.put(path, response);
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith("logfold-demo-") && name !== CACHE) await caches.delete(name);
      }
      await self.clients.claim();
    })(),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  // The sync API (/v1/) goes to the network: a cached pull would be stale, and the live tail
  // is a stream. So does anything not of this site.
  if (event.request.method !== "GET" || url.origin !== self.location.origin || url.pathname.startsWith("/v1/")) return;
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      // A visit (with a query or not: ?device=b) is the same page.
      const page = event.request.mode === "navigate" ? await cache.match("index.html") : undefined;
      const hit = page ?? (await cache.match(event.request, { ignoreSearch: true }));
      if (hit) return hit;
      return fetch(event.request);
    })(),
  );
});
