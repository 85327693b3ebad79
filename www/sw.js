// Offline support: network first, falling back to what was cached on the last visit, so a new
// build is picked up when online and the page still opens offline.
const CACHE = "logfold-demo-v1";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  // The sync API (/v1/) goes straight to the network: a cached pull would be stale, and the
  // live tail is a stream.
  if (event.request.method !== "GET" || url.origin !== self.location.origin || url.pathname.startsWith("/v1/")) return;
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      try {
        const response = await fetch(event.request);
        if (response.ok) await cache.put(event.request, response.clone());
        return response;
      } catch (offline) {
        const cached = await cache.match(event.request, { ignoreSearch: true });
        if (cached) return cached;
        throw offline;
      }
    })(),
  );
});
