// The benchmark page. bench/run.mjs drives it one trial at a time through window.bench, so that
// every trial has its own timeout in the runner and a hang shows up as the trial that hung.
// Each system gets the same events and the same durability (strict unless run.mjs --relaxed).
import Dexie from "/dexie/dexie.mjs";

// Set by run.mjs in the URL: the durability every system gets (default "strict") and how many
// streams the events spread over, round-robin (default 100).
const params = new URLSearchParams(location.search);
const DURABILITY = params.get("durability") === "relaxed" ? "relaxed" : "strict";
const STREAMS = Number(params.get("streams")) || 100;

// logfold is imported lazily: if the package is missing or broken, Dexie and raw IndexedDB still run
// and the runner reports why logfold did not.
let logfold = null;
export async function loadLogfold() {
  try {
    logfold = await import("/pkg/index.js");
    return { ok: true };
  } catch (e) {
    return { ok: false, error: describe(e) };
  }
}

export function describe(e) {
  if (!e) return String(e);
  const code = e.code ? ` [${e.code}]` : "";
  const details = e.details ? ` ${JSON.stringify(e.details)}` : "";
  return `${e.name ?? "Error"}${code}: ${e.message ?? e}${details}`;
}

// ~200 bytes of JSON per event (stream + type + data).
export function makeEvents(n, from = 0) {
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    const k = from + i;
    const stream = `account-${k % STREAMS}`;
    const deposit = k % 3 !== 0;
    out[i] = {
      stream,
      type: deposit ? "Deposited" : "Withdrawn",
      data: {
        account: stream,
        amount: Math.round((k * 7919) % 100000) / 100,
        currency: "EUR",
        at: new Date(1764144000000 + k * 1000).toISOString(),
        memo: `transfer ref ${String(k).padStart(9, "0")}`,
        tags: ["bench", deposit ? "in" : "out"],
        n: k,
      },
    };
  }
  return out;
}

/** What this page will run with, for the runner to check and print. */
export function config() {
  const sample = makeEvents(1000);
  const eventBytes = sample.reduce((sum, e) => sum + JSON.stringify(e).length, 0) / sample.length;
  return { durability: DURABILITY, streams: STREAMS, eventBytes };
}

// Raw IndexedDB helpers: promises over requests and transactions.
function request(req) {
  return new Promise((ok, fail) => {
    req.onsuccess = () => ok(req.result);
    req.onerror = () => fail(req.error);
  });
}

function done(tx) {
  return new Promise((ok, fail) => {
    tx.oncomplete = () => ok();
    tx.onerror = () => fail(tx.error);
    tx.onabort = () => fail(tx.error ?? new Error("transaction aborted"));
  });
}

function deleteDatabase(name) {
  return new Promise((ok, fail) => {
    const req = indexedDB.deleteDatabase(name);
    req.onsuccess = () => ok();
    req.onerror = () => fail(req.error);
    // Only happens if a connection was left open; say so instead of waiting silently.
    req.onblocked = () => console.log(`bench: deleteDatabase(${name}) blocked by an open connection`);
  });
}

// One adapter per system, all with the same shape. `append` writes a batch in one transaction;
// `appendOne` writes a single event in its own transaction (for logfold: its own append call,
// which group commit may merge with others in flight).
const systems = {
  logfold: {
    async open(name, fresh) {
      if (!logfold) throw new Error("logfold package not loaded");
      if (fresh) await logfold.Logfold.destroy(name);
      return logfold.Logfold.open({ name, durability: DURABILITY });
    },
    append: (log, events) => log.append(events),
    appendOne: (log, event) => log.append(event),
    async readAll(log, n) {
      // One call when read() honours the limit; pages otherwise.
      let out = await log.read({ after: 0, limit: n });
      while (out.length < n) {
        const more = await log.read({ after: out[out.length - 1]?.seq ?? 0, limit: n - out.length });
        if (!more.length) break;
        out = out.concat(more);
      }
      return out;
    },
    close: (log) => log.close(),
    destroy: (name) => logfold.Logfold.destroy(name),
  },

  dexie: {
    async open(name, fresh) {
      if (fresh) await Dexie.delete(name);
      // Dexie passes no durability unless asked, and Chromium's "default" behaves as "relaxed";
      // ask explicitly to match the others.
      const db = new Dexie(name, { chromeTransactionDurability: DURABILITY });
      db.version(1).stores({ events: "++seq" });
      await db.open();
      return db;
    },
    append: (db, events) => db.events.bulkAdd(events),
    appendOne: (db, event) => db.events.add(event),
    readAll: (db) => db.events.toArray(),
    close: (db) => db.close(),
    destroy: (name) => Dexie.delete(name),
  },

  idb: {
    async open(name, fresh) {
      if (fresh) await deleteDatabase(name);
      const req = indexedDB.open(name, 1);
      req.onupgradeneeded = () => {
        req.result.createObjectStore("events", { keyPath: "seq", autoIncrement: true });
      };
      return request(req);
    },
    append(db, events) {
      const tx = db.transaction("events", "readwrite", { durability: DURABILITY });
      const store = tx.objectStore("events");
      for (const e of events) store.add(e);
      return done(tx);
    },
    appendOne(db, event) {
      const tx = db.transaction("events", "readwrite", { durability: DURABILITY });
      tx.objectStore("events").add(event);
      return done(tx);
    },
    readAll(db) {
      const tx = db.transaction("events", "readonly");
      return request(tx.objectStore("events").getAll());
    },
    close: (db) => db.close(),
    destroy: deleteDatabase,
  },
};

function adapter(system) {
  const s = systems[system];
  if (!s) throw new Error(`unknown system ${system}`);
  return s;
}

// Runs `body` against a fresh database, timing only `body`, then closes and deletes it.
async function fresh(system, body) {
  const s = adapter(system);
  const name = `bench-${system}`;
  const db = await s.open(name, true);
  try {
    const out = await body(s, db);
    // logfold's counters show whether group commit merged appends.
    if (system === "logfold") out.stats = db.stats?.();
    return out;
  } finally {
    await s.close(db);
    await s.destroy(name);
  }
}

/** `total` events in sequential batches of `batch`, one transaction (one append call) per batch. */
export function appendBatches(system, { batch, total }) {
  const events = makeEvents(total);
  const batches = [];
  for (let i = 0; i < total; i += batch) batches.push(events.slice(i, i + batch));
  return fresh(system, async (s, db) => {
    const t0 = performance.now();
    for (const b of batches) await s.append(db, b);
    return { ms: performance.now() - t0, events: total };
  });
}

/** `total` single appends issued at once, then awaited together. */
export function appendConcurrent(system, { total }) {
  const events = makeEvents(total);
  return fresh(system, async (s, db) => {
    const t0 = performance.now();
    await Promise.all(events.map((e) => s.appendOne(db, e)));
    return { ms: performance.now() - t0, events: total };
  });
}

/** `total` single appends, each awaited before the next: the latency of each. */
export function appendSequential(system, { total }) {
  const events = makeEvents(total);
  return fresh(system, async (s, db) => {
    const latencies = new Array(total);
    const t0 = performance.now();
    for (let i = 0; i < total; i++) {
      const t = performance.now();
      await s.appendOne(db, events[i]);
      latencies[i] = performance.now() - t;
    }
    return { ms: performance.now() - t0, events: total, latencies };
  });
}

// The read case keeps one populated database per system across its trials: filling it is slow
// for the per-record systems and reading does not change it.
const readDbs = {};

export async function readSetup(system, { total }) {
  const s = adapter(system);
  const name = `bench-read-${system}`;
  const db = await s.open(name, true);
  readDbs[system] = { db, name };
  const chunk = 10000;
  for (let i = 0; i < total; i += chunk) {
    await s.append(db, makeEvents(Math.min(chunk, total - i), i));
  }
  return { events: total };
}

export async function readAll(system, { total }) {
  const s = adapter(system);
  const db = readDbs[system]?.db;
  if (!db) throw new Error("no read database open");
  const t0 = performance.now();
  const events = await s.readAll(db, total);
  const ms = performance.now() - t0;
  // Touch the result so a lazy implementation cannot skip the work unseen.
  const last = events[events.length - 1];
  if (events.length !== total) throw new Error(`read ${events.length} events, expected ${total}`);
  if (!last || last.data?.n !== total - 1) throw new Error(`last event read is not the last appended`);
  return { ms, events: total };
}

/** logfold only: close the populated read log and time opening it again (open verifies it). */
export async function reopen(system, { total }) {
  if (system !== "logfold") throw new Error("open is measured for logfold only");
  const entry = readDbs[system];
  if (!entry?.db) throw new Error("no read log open: read.100000 did not fill one");
  await entry.db.close();
  entry.db = null;
  const t0 = performance.now();
  entry.db = await logfold.Logfold.open({ name: entry.name, durability: DURABILITY });
  const ms = performance.now() - t0;
  if (entry.db.head !== total) throw new Error(`head after open is ${entry.db.head}, expected ${total}`);
  return { ms, events: total };
}

export async function readTeardown(system) {
  const entry = readDbs[system];
  if (!entry) return {};
  delete readDbs[system];
  const s = adapter(system);
  if (entry.db) await s.close(entry.db);
  await s.destroy(entry.name);
  return {};
}

// Errors come back as { error } so the runner sees logfold's code and details, which
// page.evaluate would drop.
const safe = (fn) => async (...args) => {
  try {
    return await fn(...args);
  } catch (e) {
    return { error: describe(e) };
  }
};

window.bench = {
  loadLogfold,
  config,
  appendBatches: safe(appendBatches),
  appendConcurrent: safe(appendConcurrent),
  appendSequential: safe(appendSequential),
  readSetup: safe(readSetup),
  readAll: safe(readAll),
  reopen: safe(reopen),
  readTeardown: safe(readTeardown),
};
console.log("bench: page ready");
