// A TCP proxy the test controls, between the browsers and the sync server. Clean, it passes
// bytes through. Under chaos, a new connection is sometimes refused at once, and every chunk of
// bytes draws a fault, since browsers keep connections alive for many requests: held back by a
// random delay; the connection cut part way through it (mid-request, or mid-response); or, for
// a request, its bytes replayed to the server on a second connection whose answer nobody reads
// (a duplicated request). Seeded, so a run's draws can be repeated. Hung, it is a black hole: a
// connection that carries a byte meanwhile, or opens, is dead for good, open but silent both
// ways, as on a network that drops packets without closing anything. With an uplink limit, it
// passes the browser's bytes on at that rate, as a poor uplink would.
import net from "node:net";

/** Listens on 127.0.0.1:`port`, forwarding to 127.0.0.1:`target`. */
export async function startChaosProxy({ port, target, seed = 1 }) {
  let x = seed >>> 0 || 1;
  const rnd = (k) => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x % k;
  };
  let chaos = false;
  let hung = false;
  let uplink = 0; // bytes per second from the browser, when set
  const counts = { connections: 0, refuse: 0, delay: 0, cutRequest: 0, cutResponse: 0, duplicate: 0, swallowed: 0 };
  const sockets = new Set();
  const track = (s) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
    s.on("error", () => {});
    return s;
  };
  // One chunk's fault, in percent: a delay, a cut, or (requests only) a replay.
  const draw = (request) => {
    if (!chaos) return "pass";
    const n = rnd(100);
    if (n < 25) return "delay";
    if (n < 31) return request ? "cutRequest" : "cutResponse";
    if (request && n < 40) return "duplicate";
    return "pass";
  };

  const server = net.createServer((client) => {
    track(client);
    counts.connections += 1;
    if (chaos && rnd(100) < 12) {
      counts.refuse += 1;
      return client.destroy();
    }
    const upstream = track(net.connect(target, "127.0.0.1"));
    const cut = () => (client.destroy(), upstream.destroy());
    let dead = hung;
    let request = []; // the client's bytes since the server last began answering
    let answering = false;
    const replay = (bytes) => {
      counts.duplicate += 1;
      const again = track(net.connect(target, "127.0.0.1", () => again.end(bytes)));
      again.on("data", () => {});
      setTimeout(() => again.destroy(), 5000);
    };
    // Delayed chunks keep their order: each waits for the one before it.
    const pipe = (from, to, isRequest) => {
      let queue = Promise.resolve();
      from.on("data", (chunk) => {
        dead ||= hung;
        if (dead) {
          counts.swallowed += 1;
          return;
        }
        const fault = draw(isRequest);
        if (isRequest) {
          if (answering) request = [];
          answering = false;
          request.push(chunk);
        } else if (!answering) {
          answering = true;
          // The server began to answer: the request is whole. Sometimes it arrives twice.
          if (chaos && request.length > 0 && rnd(100) < 10) replay(Buffer.concat(request));
        }
        queue = queue.then(async () => {
          if (isRequest && uplink > 0) await new Promise((r) => setTimeout(r, (chunk.length / uplink) * 1000));
          if (fault === "delay") {
            counts.delay += 1;
            await new Promise((r) => setTimeout(r, rnd(400)));
          }
          if (to.destroyed) return;
          if (fault === "cutRequest" || fault === "cutResponse") {
            counts[fault] += 1;
            to.write(chunk.subarray(0, rnd(chunk.length)));
            return cut();
          }
          to.write(chunk);
          if (fault === "duplicate") replay(Buffer.concat(request));
        });
      });
      from.once("end", () => queue.then(() => dead || to.end()));
    };
    pipe(client, upstream, true);
    pipe(upstream, client, false);
    client.once("close", () => upstream.destroy());
    upstream.once("close", () => dead || client.destroy());
  });
  await new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(port, "127.0.0.1", ok);
  });

  return {
    url: `http://127.0.0.1:${port}`,
    /** Turns the faults on or off; turning them off also cuts what is open (a clean start). */
    setChaos(on) {
      chaos = on;
      if (!on) for (const s of sockets) s.destroy();
    },
    /**
     * Turns the black hole on or off. The connections it swallowed stay dead when it is off:
     * the browser must give up on them.
     */
    setHung(on) {
      hung = on;
    },
    /** Limits what the browser sends to `bytesPerSecond` (0: no limit), as a slow uplink does. */
    setUplink(bytesPerSecond) {
      uplink = bytesPerSecond;
    },
    /** How many connections there were, and how many times each fault struck. */
    counts: () => ({ ...counts }),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((ok) => server.close(ok));
    },
  };
}
