// Events and sync-protocol helpers shared by the bench page (bench.js) and the runner (run.mjs),
// which fills the sync server from node. Plain ES module: no browser or node APIs.

export const ACCOUNTS = 10_000;

/**
 * Ledger events, made `n` at a time: every account opened first, then ~50% deposits, ~40%
 * withdrawals and ~10% transfers of 1..100,000 cents, from a seeded xorshift32 generator.
 * crates/core/examples/ledger_fold.rs makes the same events.
 */
export function ledgerEvents(seed = 1) {
  let x = seed >>> 0 || 1;
  const rnd = (k) => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x % k;
  };
  let made = 0;
  return (n) => {
    const out = new Array(n);
    for (let i = 0; i < n; i++, made++) {
      if (made < ACCOUNTS) {
        const a = `acct-${made}`;
        out[i] = { stream: a, type: "Opened", data: { account: a, owner: `owner ${made}` } };
        continue;
      }
      const kind = rnd(10);
      const a = `acct-${rnd(ACCOUNTS)}`;
      const amount = 1 + rnd(100_000);
      if (kind === 0) {
        out[i] = { stream: a, type: "Transferred", data: { from: a, to: `acct-${rnd(ACCOUNTS)}`, amount } };
      } else {
        out[i] = { stream: a, type: kind <= 5 ? "Deposited" : "Withdrawn", data: { account: a, amount } };
      }
    }
    return out;
  };
}

const hex = (n, width) => n.toString(16).padStart(width, "0");

/**
 * Event ids in the UUIDv7 text layout the server parses (crates/core/src/id.rs): 48 bits of
 * milliseconds, version 7, 24 random bits per maker, then a counter, so one maker's ids increase.
 */
export function idMaker(ms = Date.now()) {
  const t = hex(ms, 12);
  const a = hex(Math.floor(Math.random() * 0x1000), 3);
  const b = hex(Math.floor(Math.random() * 0x1000), 3);
  let n = 0;
  return () => `${t.slice(0, 8)}-${t.slice(8)}-7${a}-8${b}-${hex(n++, 12)}`;
}

/** The sync protocol's event: what a client sends for a new event (see crates/server/README.md). */
export function wireEvents(events, nextId = idMaker(), time = Date.now()) {
  return events.map((e) => ({ id: nextId(), stream: e.stream, type: e.type, data: e.data, meta: null, time }));
}

/**
 * Push batches of `batchSize` wire events from one client, numbered from `first`; no expected
 * versions. The server takes at most 10,000 events per batch.
 */
export function pushBatches(events, { client, batchSize = 1000, first = 1, epoch = 1 }) {
  const out = [];
  for (let i = 0; i < events.length; i += batchSize) {
    out.push({ client, epoch, batch: first + out.length, events: events.slice(i, i + batchSize), expected: {} });
  }
  return out;
}

/**
 * POSTs `events` to `${url}/v1/logs/${log}/push` with plain fetch: requests of `perRequest`
 * events (batches of `batchSize`), one after another. Every batch must be accepted. Calls
 * `acked(from, to)` after each answer; resolves to the server's head after the last one. Batches
 * are numbered from `firstBatch`: a client's batch number is its idempotency key.
 */
export async function pushAll(url, log, events, { client, batchSize = 1000, perRequest = 10_000, firstBatch = 1, acked } = {}) {
  let head = 0;
  let batch = firstBatch;
  for (let i = 0; i < events.length; i += perRequest) {
    const slice = events.slice(i, i + perRequest);
    const batches = pushBatches(slice, { client, batchSize, first: batch });
    batch += batches.length;
    const res = await fetch(`${url}/v1/logs/${log}/push`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ protocol: 1, batches }),
    });
    if (!res.ok) throw new Error(`push to ${log}: HTTP ${res.status} ${await res.text()}`);
    const answer = await res.json();
    const refused = answer.results.find((r) => r.status !== "accepted");
    if (refused) throw new Error(`push to ${log}: a batch was ${refused.status}: ${JSON.stringify(refused)}`);
    head = answer.head;
    await acked?.(i, i + slice.length);
  }
  return head;
}

/** The server's head of `log`, by a pull of at most one event after it. */
export async function serverHead(url, log) {
  const res = await fetch(`${url}/v1/logs/${log}/events?after=0&limit=1`);
  if (!res.ok) throw new Error(`pull from ${log}: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()).head;
}
