// The benchmark page. bench/run.mjs drives it one trial at a time through window.bench, so that
// every trial has its own timeout in the runner and a hang shows up as the trial that hung.
// Each system gets the same events and the same durability (strict unless run.mjs --relaxed).
import Dexie from "/dexie/dexie.mjs";
import { ACCOUNTS, ledgerEvents, pushAll, serverHead, wireEvents } from "./fixtures.js";

export { ledgerEvents };

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
export function makeEvents(n, from = 0, streams = STREAMS) {
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    const k = from + i;
    const stream = `account-${k % streams}`;
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
    // `url`: synced with that server (append.synced500), appends go to the outbox.
    async open(name, fresh, url = null) {
      if (!logfold) throw new Error("logfold package not loaded");
      if (fresh) await logfold.Logfold.destroy(name);
      const sync = url ? { sync: { url, log: uniqueName("outbox") } } : {};
      return logfold.Logfold.open({ name, durability: DURABILITY, ...sync });
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

// Runs `body` against a fresh database, timing only `body`, then closes and deletes it. `url`:
// a sync server, for the systems that sync.
async function fresh(system, body, url = null) {
  const s = adapter(system);
  const name = `bench-${system}`;
  const db = await s.open(name, true, url);
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

/**
 * `total` single appends, each awaited before the next: the latency of each. `create`: each
 * starts a new stream, as an app creating records does.
 */
export function appendSequential(system, { total, url = null, create = false }) {
  const events = makeEvents(total, 0, create ? Infinity : STREAMS);
  return fresh(system, async (s, db) => {
    const latencies = new Array(total);
    const t0 = performance.now();
    for (let i = 0; i < total; i++) {
      const t = performance.now();
      await s.appendOne(db, events[i]);
      latencies[i] = performance.now() - t;
    }
    return { ms: performance.now() - t0, events: total, latencies };
  }, url);
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
export async function reopen(system, { total, verify }) {
  if (system !== "logfold") throw new Error("open is measured for logfold only");
  const entry = readDbs[system];
  if (!entry?.db) throw new Error("no read log open: read.100000 did not fill one");
  await entry.db.close();
  entry.db = null;
  const t0 = performance.now();
  entry.db = await logfold.Logfold.open({ name: entry.name, durability: DURABILITY, verify });
  const ms = performance.now() - t0;
  if (entry.db.head !== total) throw new Error(`head after open is ${entry.db.head}, expected ${total}`);
  // The check after a default open: untimed, but it must find the log intact.
  const damage = await entry.db.verified;
  if (damage) throw new Error(`log.verified: ${describe(damage)}`);
  return { ms, events: total, verifiedMs: performance.now() - t0 };
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

// ---- Tables: the bank ledger folded into an accounts table ------------------------------------
// One log (logfold) and one peer database (read by Dexie and by raw IndexedDB) are filled once per
// run with the same ledger events and kept, across the tables.* cases, until tablesTeardown.

/** The ledger table: the same definition as the e2e tests' T.ledger().accounts. */
export const LEDGER = {
  key: "data.account",
  on: {
    Opened: { set: { owner: "data.owner", balance: 0, movements: 0 } },
    Deposited: { add: { balance: "data.amount" }, count: "movements" },
    Withdrawn: { subtract: { balance: "data.amount" }, count: "movements" },
    Transferred: [
      { row: "data.from", subtract: { balance: "data.amount" }, count: "movements" },
      { row: "data.to", add: { balance: "data.amount" }, count: "movements" },
    ],
  },
};
/** The plain JS fold the peers use: a mutable Map of account → { owner, balance, movements }. */
export function foldLedger(events, accounts = new Map()) {
  const row = (k) => {
    let r = accounts.get(k);
    if (!r) accounts.set(k, (r = { balance: 0, movements: 0 }));
    return r;
  };
  for (const e of events) {
    const d = e.data;
    switch (e.type) {
      case "Opened": accounts.set(d.account, { owner: d.owner, balance: 0, movements: 0 }); break;
      case "Deposited": { const r = row(d.account); r.balance += d.amount; r.movements++; break; }
      case "Withdrawn": { const r = row(d.account); r.balance -= d.amount; r.movements++; break; }
      case "Transferred": {
        const f = row(d.from); f.balance -= d.amount; f.movements++;
        const t = row(d.to); t.balance += d.amount; t.movements++;
        break;
      }
    }
  }
  return accounts;
}

// The JS reducer of tables.reducer, used as is by logfold and by the Dexie path. logfold's
// contract: return the new state, never change the old one. Copying a 10,000-row Map per event
// would be 10^10 copies for a million events, so the state is a small persistent map: 128
// buckets, and an event copies the bucket array and only the bucket(s) it touches.
const BUCKETS = 128;
function bucketOf(key) {
  let h = 0;
  for (let i = 0; i < key.length; i++) h = (h * 31 + key.charCodeAt(i)) | 0;
  return (h >>> 0) % BUCKETS;
}

function updateRow(buckets, key, change) {
  const b = bucketOf(key);
  const bucket = new Map(buckets[b]);
  bucket.set(key, change(bucket.get(key) ?? { balance: 0, movements: 0 }));
  buckets[b] = bucket;
}

export const ACCOUNTS_REDUCER = {
  version: 1,
  init: () => new Array(BUCKETS).fill(new Map()),
  apply(state, e) {
    const d = e.data;
    const next = state.slice();
    switch (e.type) {
      case "Opened": updateRow(next, d.account, () => ({ owner: d.owner, balance: 0, movements: 0 })); break;
      case "Deposited": updateRow(next, d.account, (r) => ({ ...r, balance: r.balance + d.amount, movements: r.movements + 1 })); break;
      case "Withdrawn": updateRow(next, d.account, (r) => ({ ...r, balance: r.balance - d.amount, movements: r.movements + 1 })); break;
      case "Transferred":
        updateRow(next, d.from, (r) => ({ ...r, balance: r.balance - d.amount, movements: r.movements + 1 }));
        updateRow(next, d.to, (r) => ({ ...r, balance: r.balance + d.amount, movements: r.movements + 1 }));
        break;
      default: return state;
    }
    return next;
  },
};
const reducerRow = (state, key) => state[bucketOf(key)].get(key);

// What the filled databases must hold: a few rows of the plain fold, by `total`.
const expected = {};
const CHECKED = ["acct-0", "acct-4999", "acct-9999"];

function expectedRows(total) {
  if (!expected[total]) {
    const next = ledgerEvents();
    const accounts = new Map();
    for (let i = 0; i < total; i += 50_000) foldLedger(next(Math.min(50_000, total - i)), accounts);
    expected[total] = Object.fromEntries(CHECKED.map((k) => [k, accounts.get(k)]));
  }
  return expected[total];
}

function checkRows(total, get, where) {
  for (const [key, want] of Object.entries(expectedRows(total))) {
    const got = get(key);
    if (got?.balance !== want.balance || got?.movements !== want.movements || got?.owner !== want.owner) {
      throw new Error(`${where}: ${key} is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
    }
  }
}

const TABLES_LOG = "bench-tables";
const TABLES_PEER = "bench-tables-peer";

function openPeer(durability) {
  const db = new Dexie(TABLES_PEER, { chromeTransactionDurability: durability });
  db.version(1).stores({ events: "++seq" });
  return db.open().then(() => db);
}

// Raw IndexedDB on the peer database (Dexie made it): no version, so whatever Dexie set.
function openPeerRaw() {
  return request(indexedDB.open(TABLES_PEER));
}

/**
 * Fills the ledger log (logfold) or the peer database (dexie, idb) with `total` events, in
 * batches of 100,000, unless it already holds them: a later case or a new page reuses them.
 * Big batches because each logfold batch reads and writes the version of every stream it touches
 * (up to all 10,000 accounts).
 */
export async function tablesSetup(system, { total }) {
  expectedRows(total);
  const next = ledgerEvents();
  const chunk = 100_000;
  if (system === "logfold") {
    // No projections, so no snapshot: the replay cases fold from the first event.
    let log = await logfold.Logfold.open({ name: TABLES_LOG, durability: DURABILITY });
    if (log.head === total) {
      await log.close();
      return { filled: false };
    }
    await log.close();
    await logfold.Logfold.destroy(TABLES_LOG);
    log = await logfold.Logfold.open({ name: TABLES_LOG, durability: DURABILITY });
    for (let i = 0; i < total; i += chunk) await log.append(next(Math.min(chunk, total - i)));
    await log.close();
    return { filled: true };
  }
  // dexie and idb read the same peer database, filled through Dexie.
  let db = await openPeer(DURABILITY);
  if ((await db.events.count()) === total) {
    db.close();
    return { filled: false };
  }
  db.close();
  await Dexie.delete(TABLES_PEER);
  db = await openPeer(DURABILITY);
  for (let i = 0; i < total; i += chunk) await db.events.bulkAdd(next(Math.min(chunk, total - i)));
  db.close();
  return { filled: true };
}

export async function tablesTeardown(system) {
  if (system === "logfold") await logfold.Logfold.destroy(TABLES_LOG);
  else await Dexie.delete(TABLES_PEER);
  return {};
}

// Deletes the log's projection snapshots (untimed), so open folds from the first event.
async function clearSnapshots(name) {
  const db = await request(indexedDB.open(`logfold:${name}`));
  try {
    const tx = db.transaction(["snapshots"], "readwrite");
    tx.objectStore("snapshots").clear();
    await done(tx);
  } finally {
    db.close();
  }
}

function expectStats(log, want) {
  const stats = log.stats();
  for (const [k, v] of Object.entries(want)) {
    if (stats[k] !== v) throw new Error(`stats().${k} is ${stats[k]}, expected ${v}: ${JSON.stringify(stats)}`);
  }
  return stats;
}

/** Reads every peer event back: Dexie toArray() or raw getAll(). */
async function readPeer(system) {
  if (system === "dexie") {
    const db = await openPeer(DURABILITY);
    try {
      return await db.events.toArray();
    } finally {
      db.close();
    }
  }
  const db = await openPeerRaw();
  try {
    return await request(db.transaction("events", "readonly").objectStore("events").getAll());
  } finally {
    db.close();
  }
}

/**
 * tables.replay: logfold opens the log with the accounts table and no snapshot (verify + fold);
 * the peers read every event and fold them with foldLedger. The clock includes opening.
 */
export async function tablesReplay(system, { total }) {
  if (system === "logfold") {
    await clearSnapshots(TABLES_LOG);
    const t0 = performance.now();
    const log = await logfold.Logfold.open({
      name: TABLES_LOG, durability: DURABILITY, projections: { accounts: LEDGER }, snapshotEvery: Infinity,
    });
    const ms = performance.now() - t0;
    try {
      const stats = expectStats(log, { projectionsRebuilt: 1, eventsReplayed: total, snapshotsLoaded: 0 });
      checkRows(total, (k) => log.table("accounts").get(k), "logfold accounts table");
      if (log.table("accounts").count() !== ACCOUNTS) throw new Error(`${log.table("accounts").count()} rows`);
      return { ms, events: total, stats };
    } finally {
      await log.close();
    }
  }
  const t0 = performance.now();
  const events = await readPeer(system);
  const accounts = foldLedger(events);
  const ms = performance.now() - t0;
  if (events.length !== total) throw new Error(`read ${events.length} events, expected ${total}`);
  checkRows(total, (k) => accounts.get(k), `${system} accounts`);
  return { ms, events: total };
}

/** tables.reducer: as tables.replay, but the accounts are ACCOUNTS_REDUCER's, on both sides. */
export async function tablesReducer(system, { total }) {
  if (system === "logfold") {
    await clearSnapshots(TABLES_LOG);
    const t0 = performance.now();
    const log = await logfold.Logfold.open({
      name: TABLES_LOG, durability: DURABILITY, projections: { accounts: ACCOUNTS_REDUCER }, snapshotEvery: Infinity,
    });
    const ms = performance.now() - t0;
    try {
      const stats = expectStats(log, { projectionsRebuilt: 1, eventsReplayed: total, snapshotsLoaded: 0 });
      const state = log.state("accounts");
      checkRows(total, (k) => reducerRow(state, k), "logfold reducer state");
      return { ms, events: total, stats };
    } finally {
      // close() would snapshot the reducer state (untimed, but slow and unused): clear it now.
      await log.close();
      await clearSnapshots(TABLES_LOG);
    }
  }
  if (system !== "dexie") throw new Error("tables.reducer runs logfold and dexie");
  const t0 = performance.now();
  const events = await readPeer(system);
  let state = ACCOUNTS_REDUCER.init();
  for (const e of events) state = ACCOUNTS_REDUCER.apply(state, e);
  const ms = performance.now() - t0;
  checkRows(total, (k) => reducerRow(state, k), "dexie reducer state");
  return { ms, events: total };
}

// The fixture's own JS reducer: the bank's total money (transfers move money, not make it).
export const TOTAL_REDUCER = {
  version: 1,
  init: 0,
  apply: (total, e) => (e.type === "Deposited" ? total + e.data.amount : e.type === "Withdrawn" ? total - e.data.amount : total),
};

const expectedTotals = {};
function expectedTotal(total) {
  if (expectedTotals[total] === undefined) {
    const next = ledgerEvents();
    const accounts = new Map();
    for (let i = 0; i < total; i += 50_000) foldLedger(next(Math.min(50_000, total - i)), accounts);
    let sum = 0;
    for (const r of accounts.values()) sum += r.balance;
    expectedTotals[total] = sum;
  }
  return expectedTotals[total];
}

/** tables.reducerTotal: as tables.reducer, with TOTAL_REDUCER: what the path costs, not the reducer. */
export async function tablesReducerTotal(system, { total }) {
  const check = (got, where) => {
    if (got !== expectedTotal(total)) throw new Error(`${where}: total ${got}, expected ${expectedTotal(total)}`);
  };
  if (system === "logfold") {
    await clearSnapshots(TABLES_LOG);
    const t0 = performance.now();
    const log = await logfold.Logfold.open({
      name: TABLES_LOG, durability: DURABILITY, projections: { total: TOTAL_REDUCER }, snapshotEvery: Infinity,
    });
    const ms = performance.now() - t0;
    try {
      const stats = expectStats(log, { projectionsRebuilt: 1, eventsReplayed: total, snapshotsLoaded: 0 });
      check(log.state("total"), "logfold reducer state");
      return { ms, events: total, stats };
    } finally {
      await log.close();
      await clearSnapshots(TABLES_LOG);
    }
  }
  if (system !== "dexie") throw new Error("tables.reducerTotal runs logfold and dexie");
  const t0 = performance.now();
  const events = await readPeer(system);
  let state = TOTAL_REDUCER.init;
  for (const e of events) state = TOTAL_REDUCER.apply(state, e);
  const ms = performance.now() - t0;
  check(state, "dexie reducer state");
  return { ms, events: total };
}

/** tables.coldOpen setup: a snapshot of the accounts table at the head, written once. */
export async function coldOpenSetup(system, arg) {
  const filled = await tablesSetup(system, arg);
  const log = await logfold.Logfold.open({
    name: TABLES_LOG, durability: DURABILITY, projections: { accounts: LEDGER }, snapshotEvery: Infinity,
  });
  await log.snapshot();
  await log.close();
  return filled;
}

/** tables.coldOpen: open from the snapshot until the first answer of the table. */
export async function coldOpen(system, { total }) {
  if (system !== "logfold") throw new Error("cold open is measured for logfold only");
  const t0 = performance.now();
  const log = await logfold.Logfold.open({
    name: TABLES_LOG, durability: DURABILITY, projections: { accounts: LEDGER }, snapshotEvery: Infinity,
  });
  const row = log.table("accounts").get("acct-0");
  const ms = performance.now() - t0;
  try {
    const stats = expectStats(log, { eventsReplayed: 0, projectionsRebuilt: 0 });
    if (!(stats.snapshotsLoaded >= 1)) throw new Error(`no snapshot loaded: ${JSON.stringify(stats)}`);
    checkRows(total, (k) => (k === "acct-0" ? row : log.table("accounts").get(k)), "logfold accounts from snapshot");
    return { ms, events: total, stats };
  } finally {
    await log.close();
  }
}

/**
 * tables.memory, in a page of its own: the JS heap after a GC (and for logfold the wasm memory)
 * once the accounts are folded from all `total` events, and the heap before (the page itself).
 * The wasm memory never shrinks: it is the high-water mark of the fold, not what the table holds.
 */
export async function tablesMemory(system, { total }) {
  if (typeof gc !== "function" || !performance.memory) throw new Error("needs --js-flags=--expose-gc and performance.memory");
  await collect();
  const heapBefore = performance.memory.usedJSHeapSize;
  if (system === "logfold") {
    await clearSnapshots(TABLES_LOG);
    const log = await logfold.Logfold.open({
      name: TABLES_LOG, durability: DURABILITY, projections: { accounts: LEDGER }, snapshotEvery: Infinity,
    });
    try {
      expectStats(log, { projectionsRebuilt: 1, eventsReplayed: total });
      checkRows(total, (k) => log.table("accounts").get(k), "logfold accounts table");
      await collect();
      // The wasm-bindgen glue's init() resolves to the instance's exports once loaded.
      const wasm = await (await import("/pkg/logfold.js")).default();
      return {
        events: total,
        metrics: {
          js_heap_bytes: performance.memory.usedJSHeapSize,
          js_heap_base_bytes: heapBefore,
          wasm_memory_bytes: wasm.memory.buffer.byteLength,
        },
      };
    } finally {
      await log.close();
    }
  }
  let accounts = await peerAccounts(system);
  await collect();
  const heap = performance.memory.usedJSHeapSize;
  checkRows(total, (k) => accounts.get(k), `${system} accounts`);
  accounts = null;
  return { events: total, metrics: { js_heap_bytes: heap, js_heap_base_bytes: heapBefore } };
}

// Out of line, so that nothing in the caller's frame keeps the events read alive.
async function peerAccounts(system) {
  return foldLedger(await readPeer(system));
}

// A full GC once the current task is over (a finished await can keep its value until then).
async function collect() {
  await new Promise((ok) => setTimeout(ok, 0));
  gc();
  gc();
}

/** tables.fold, "js": foldLedger over events already in memory (made before the clock starts). */
export function foldInMemory(system, { total }) {
  if (system !== "js") throw new Error("the in-memory JS fold is system js");
  const events = ledgerEvents()(total);
  const t0 = performance.now();
  const accounts = foldLedger(events);
  const ms = performance.now() - t0;
  checkRows(total, (k) => accounts.get(k), "in-memory fold");
  return { ms, events: total, acct0_balance: accounts.get("acct-0").balance };
}

// ---- tables.tabLatency: an append in this tab, heard by a subscriber in another tab -------------
const ACK = "bench-tab-ack";
let listener = null;

// Absolute time, comparable between the two tabs of one browser.
const now = () => performance.timeOrigin + performance.now();

/**
 * In the listening tab: logfold opens the log with the accounts table and subscribes to it;
 * "broadcast" listens on a BroadcastChannel. Each arrival is acknowledged with its time.
 */
export async function tabListen(system, { name }) {
  const ack = new BroadcastChannel(ACK);
  if (system === "logfold") {
    const log = await logfold.Logfold.open({ name, durability: DURABILITY, projections: { accounts: LEDGER } });
    const off = log.subscribe("accounts", (change) => ack.postMessage({ at: now(), seq: change.seq }));
    listener = { stop: async () => { off(); await log.close(); ack.close(); } };
  } else {
    const ch = new BroadcastChannel("bench-tab-ping");
    ch.onmessage = (m) => ack.postMessage({ at: now(), seq: m.data.seq });
    listener = { stop: async () => { ch.close(); ack.close(); } };
  }
  return {};
}

export async function tabStop() {
  await listener?.stop();
  listener = null;
  return {};
}

/** In the appending tab: `total` single appends (or posts), each waiting for the other tab's ack. */
export async function tabLatency(system, { total, name }) {
  const ack = new BroadcastChannel(ACK);
  let waiting = null;
  ack.onmessage = (m) => waiting?.(m.data);
  const heard = () => new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("the other tab did not hear it within 5 s")), 5000);
    waiting = (m) => { clearTimeout(timer); ok(m); };
  });
  const latencies = new Array(total);
  const t0 = performance.now();
  try {
    if (system === "logfold") {
      const log = await logfold.Logfold.open({ name, durability: DURABILITY });
      try {
        for (let i = 0; i < total; i++) {
          const a = `acct-${i % 100}`;
          const arrival = heard();
          const sent = now();
          const e = await log.append({ stream: a, type: "Deposited", data: { account: a, amount: 100 } });
          const m = await arrival;
          if (m.seq !== e.seq) throw new Error(`the other tab heard position ${m.seq}, not ${e.seq}`);
          latencies[i] = m.at - sent;
        }
      } finally {
        await log.close();
      }
    } else {
      const ch = new BroadcastChannel("bench-tab-ping");
      for (let i = 0; i < total; i++) {
        const arrival = heard();
        const sent = now();
        ch.postMessage({ seq: i });
        latencies[i] = (await arrival).at - sent;
      }
      ch.close();
    }
  } finally {
    ack.close();
  }
  return { ms: performance.now() - t0, events: total, latencies };
}

/** After the listener closed its handle: delete the tab log. */
export async function tabTeardown(system, { name }) {
  if (system === "logfold") await logfold.Logfold.destroy(name);
  return {};
}

// ---- sync.*: the sync server (bench/run.mjs starts logfold-server) ------------------------------
// Every case names its server log and local logs afresh per trial; the server keeps everything
// in memory for the run. `url` is the server's base URL, given by the runner.

const SYNC_WAIT_MS = 150_000;
// Outbox batches of sync.push: one append (and so one protocol batch) per PUSH_BATCH events.
const PUSH_BATCH = 1000;
let syncNames = 0;
const uniqueName = (what) => `bench-${what}-${Date.now().toString(36)}-${++syncNames}`;

/**
 * Resolves with the sync status once `pred(status)` holds: told by log.sync.subscribe, with a
 * 25 ms poll of log.sync.status as a fallback (`viaPoll` says when the poll saw it first, i.e.
 * the subscription did not report the change).
 */
function until(log, pred, ms, what) {
  return new Promise((ok, fail) => {
    let finished = false;
    let off = null;
    let timer = null;
    let poll = null;
    const finish = (error, status, viaPoll) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      clearInterval(poll);
      off?.();
      if (error) fail(error);
      else ok({ status, viaPoll });
    };
    timer = setTimeout(() => finish(new Error(`${what}: not within ${ms / 1000} s; sync status ` +
      JSON.stringify(log.sync.status))), ms);
    off = log.sync.subscribe((s) => {
      const status = s ?? log.sync.status;
      if (pred(status)) finish(null, status, false);
    });
    if (finished) off?.();
    poll = setInterval(() => pred(log.sync.status) && finish(null, log.sync.status, true), 25);
    if (pred(log.sync.status)) finish(null, log.sync.status, false);
  });
}

function openSynced(name, url, serverLog) {
  if (!logfold) throw new Error("logfold package not loaded");
  return logfold.Logfold.open({
    name, durability: DURABILITY, projections: { accounts: LEDGER }, sync: { url, log: serverLog },
  });
}

// Only what the runner logs and the checker does not need.
const SYNC_STATS = ["transactions", "eventsPulled", "pulled", "pushed", "baseEvents", "overlayEvents",
  "overlayRebuilds", "fullRebuilds", "projectionsRebuilt"];
const syncStats = (log) => {
  const s = log.stats();
  return Object.fromEntries(SYNC_STATS.filter((k) => s[k] !== undefined).map((k) => [k, s[k]]));
};

/**
 * sync.initial: `total` ledger events (the runner filled server log `log` from node) into a fresh
 * page-side store, folded into the accounts table. logfold: from open() with sync until the status
 * says every server event is confirmed; dexie: plain fetch of JSON pages of 10,000 events, Dexie
 * bulkAdd of each page and the plain JS fold, from opening the database to the last page.
 */
export async function syncInitial(system, { total, url, log: serverLog }) {
  expectedRows(total);
  if (system === "logfold") {
    const name = uniqueName("initial");
    await logfold.Logfold.destroy(name);
    try {
      const t0 = performance.now();
      const log = await openSynced(name, url, serverLog);
      try {
        const { status, viaPoll } = await until(log, (s) => s.confirmed >= total && s.pending === 0,
          SYNC_WAIT_MS, "initial sync");
        const ms = performance.now() - t0;
        if (status.confirmed !== total || log.head !== total) {
          throw new Error(`confirmed ${status.confirmed}, head ${log.head}: the server holds ${total}`);
        }
        checkRows(total, (k) => log.table("accounts").get(k), "logfold synced accounts table");
        if (log.table("accounts").count() !== ACCOUNTS) throw new Error(`${log.table("accounts").count()} rows`);
        return { ms, events: total, stats: syncStats(log), viaPoll };
      } finally {
        await log.close();
      }
    } finally {
      await logfold.Logfold.destroy(name);
    }
  }
  if (system !== "dexie") throw new Error("sync.initial runs logfold and dexie");
  const { ms, after, accounts } = await dexiePull("initial-dexie", url, serverLog);
  if (after !== total) throw new Error(`pulled up to offset ${after}, expected ${total}`);
  checkRows(total, (k) => accounts.get(k), "dexie synced accounts");
  return { ms, events: total };
}

/**
 * The Dexie peer of sync.initial and sync.boot: from opening a fresh database (`events:
 * "offset"`) through plain fetch of JSON pages of 10,000 events of `serverLog`, each stored with
 * bulkAdd and folded with foldLedger, to the last page. Resolves to the time, the last offset
 * pulled and the accounts (the database is deleted after, untimed).
 */
async function dexiePull(what, url, serverLog) {
  const name = uniqueName(what);
  const t0 = performance.now();
  const db = new Dexie(name, { chromeTransactionDurability: DURABILITY });
  db.version(1).stores({ events: "offset" });
  await db.open();
  try {
    const accounts = new Map();
    let after = 0;
    for (;;) {
      const res = await fetch(`${url}/v1/logs/${serverLog}/events?after=${after}&limit=10000`);
      if (!res.ok) throw new Error(`pull: HTTP ${res.status} ${await res.text()}`);
      const page = await res.json();
      if (!page.events.length) break;
      await db.events.bulkAdd(page.events);
      foldLedger(page.events, accounts);
      after = page.events[page.events.length - 1].offset;
      if (after >= page.head) break;
    }
    return { ms: performance.now() - t0, after, accounts };
  } finally {
    db.close();
    await Dexie.delete(name);
  }
}

/**
 * sync.push: an outbox of `total` ledger events, appended in batches of PUSH_BATCH (untimed), then
 * timed until the server holds them all. logfold: appended with sync paused, timed from resume()
 * until pending is 0 and confirmed equals the server head; dexie: an outbox table read with
 * toArray(), POSTed by plain fetch (requests of 10 batches of 1,000) and each acknowledged request's
 * events deleted; fetch: the same POSTs of events already in memory (the raw push).
 */
export async function syncPush(system, { total, url, fillBudgetMs = 60_000 }) {
  const serverLog = uniqueName(`push-${system}`);
  const next = ledgerEvents();
  let out;
  if (system === "logfold") {
    expectedRows(total);
    const name = uniqueName("push");
    await logfold.Logfold.destroy(name);
    try {
      const log = await openSynced(name, url, serverLog);
      try {
        await log.sync.pause();
        // Untimed, but bounded, so that a slow fill fails this system instead of the run's deadline.
        const a0 = performance.now();
        const times = [];
        for (let i = 0; i < total; i += PUSH_BATCH) {
          const t = performance.now();
          await log.append(next(Math.min(PUSH_BATCH, total - i)));
          times.push(performance.now() - t);
          if (performance.now() - a0 > fillBudgetMs && i + PUSH_BATCH < total) {
            throw new Error(`filling the outbox (untimed) passed ${fillBudgetMs / 1000} s at ${i + PUSH_BATCH} of ` +
              `${total} events: appends of ${PUSH_BATCH} took ${times.slice(0, 3).map((x) => x.toFixed(0)).join(", ")} ms ` +
              `at first, ${times.slice(-3).map((x) => x.toFixed(0)).join(", ")} ms by then`);
          }
        }
        const appendMs = performance.now() - a0;
        const before = log.sync.status;
        const headBefore = await serverHead(url, serverLog);
        if (before.pending !== total || headBefore !== 0) {
          throw new Error(`paused, the outbox should hold ${total} and the server none: pending ` +
            `${before.pending}, server head ${headBefore}, status ${JSON.stringify(before)}`);
        }
        // When the server head reached N (all pushed) and when confirmed did (pulled back), for the log.
        const seen = {};
        const t0 = performance.now();
        const off = log.sync.subscribe((s) => {
          if (s.serverHead >= total) seen.serverHead ??= performance.now() - t0;
          if (s.confirmed >= total) seen.confirmed ??= performance.now() - t0;
          // confirmed is a prefix of the server's log: a status saying otherwise is worth a word.
          if (s.confirmed > 0 && !(s.serverHead >= s.confirmed)) seen.ahead ??= { confirmed: s.confirmed, serverHead: s.serverHead };
        });
        await log.sync.resume();
        const { viaPoll } = await until(log, (s) => s.pending === 0 && s.confirmed >= total && s.serverHead >= total,
          SYNC_WAIT_MS, "pushing the outbox").finally(off);
        const ms = performance.now() - t0;
        const status = log.sync.status;
        if (status.confirmed !== total || status.serverHead !== total) {
          throw new Error(`after the push: ${JSON.stringify(status)}, expected ${total} confirmed`);
        }
        checkRows(total, (k) => log.table("accounts").get(k), "logfold accounts table after the push");
        out = { ms, events: total, stats: syncStats(log), viaPoll, note: `outbox appended in ${appendMs.toFixed(0)} ms, untimed; ` +
          `server head at N after ${seen.serverHead?.toFixed(0)} ms, confirmed at N after ${seen.confirmed?.toFixed(0)} ms` +
          (seen.ahead ? `; status once had confirmed ${seen.ahead.confirmed} with serverHead ${seen.ahead.serverHead}` : "") };
      } finally {
        await log.close();
      }
    } finally {
      await logfold.Logfold.destroy(name);
    }
  } else if (system === "fetch") {
    const events = wireEvents(next(total));
    const t0 = performance.now();
    await pushAll(url, serverLog, events, { client: `bench-fetch-${syncNames}` });
    out = { ms: performance.now() - t0, events: total };
  } else if (system === "dexie") {
    const name = uniqueName("push-dexie");
    // The untimed fill is relaxed (it is not measured); the timed drain has the run's durability.
    const filler = new Dexie(name, { chromeTransactionDurability: "relaxed" });
    filler.version(1).stores({ outbox: "++seq" });
    await filler.open();
    const events = wireEvents(next(total));
    for (let i = 0; i < total; i += 10_000) await filler.outbox.bulkAdd(events.slice(i, i + 10_000));
    filler.close();
    const db = new Dexie(name, { chromeTransactionDurability: DURABILITY });
    db.version(1).stores({ outbox: "++seq" });
    await db.open();
    try {
      const t0 = performance.now();
      const rows = await db.outbox.toArray();
      const wire = rows.map(({ id, stream, type, data, meta, time }) => ({ id, stream, type, data, meta, time }));
      await pushAll(url, serverLog, wire, {
        client: `bench-dexie-${syncNames}`,
        acked: (from, to) => db.outbox.bulkDelete(rows.slice(from, to).map((r) => r.seq)),
      });
      out = { ms: performance.now() - t0, events: total };
      if ((await db.outbox.count()) !== 0) throw new Error("the Dexie outbox is not empty after the push");
    } finally {
      db.close();
      await Dexie.delete(name);
    }
  } else {
    throw new Error("sync.push runs logfold, dexie and fetch");
  }
  const head = await serverHead(url, serverLog);
  if (head !== total) throw new Error(`the server log holds ${head} events, expected ${total}`);
  return out;
}

// ---- sync.boot: a new device of a big server log, from the server's snapshot set -----------------
// The runner fills server log `log` with `total` ledger events from node, has bootSeed share a
// snapshot set of it (and waits until the server stored it), then pushes `tail` more events, so
// every trial's new device has a tail to pull after the set.

let seed = null;

/**
 * The seeding device: opens server log `log` with the accounts table, waits until it caught up,
 * writes its snapshots, which (`every: 1`, and this tab leads) uploads its snapshot set; the
 * runner then waits for the server's count of stored uploads. No snapshots while it pulls
 * (`snapshotEvery: Infinity`): each would upload a set too.
 */
export async function bootSeed(system, { total, url, log: serverLog, waitMs }) {
  if (system !== "logfold") throw new Error("bootSeed is logfold's");
  if (seed) throw new Error("a seed is open already");
  const name = uniqueName("boot-seed");
  await logfold.Logfold.destroy(name);
  const t0 = performance.now();
  const log = await logfold.Logfold.open({
    name, durability: DURABILITY, projections: { accounts: LEDGER }, snapshotEvery: Infinity,
    sync: { url, log: serverLog, snapshots: { every: 1 } },
  });
  seed = { name, log };
  await log.sync.settled({ timeout: waitMs });
  const pullMs = performance.now() - t0;
  if (log.head !== total) throw new Error(`the seed's head is ${log.head} after settled(), the server holds ${total}`);
  if (log.table("accounts").count() !== ACCOUNTS) throw new Error(`the seed has ${log.table("accounts").count()} accounts`);
  await log.snapshot();
  return { head: log.head, pullMs, stats: syncStats(log) };
}

/** After the runner saw the upload stored: close and delete the seed. */
export async function bootSeedClose() {
  if (!seed) return {};
  const { name, log } = seed;
  seed = null;
  try {
    await log.close();
  } finally {
    await logfold.Logfold.destroy(name);
  }
  return {};
}

// The snapshot set's GET (resource timing): its duration in ms, and its size (read once, untimed,
// by fetching the same URL again: the server is another origin, so resource timing has no sizes).
let setBytes = null;
async function setDownload() {
  const entry = performance.getEntriesByType("resource").find((e) => e.name.includes("/snapshots/"));
  if (!entry) return null;
  if (setBytes === null) {
    const res = await fetch(entry.name, { headers: { accept: "application/vnd.logfold.snapshots" }, cache: "no-store" });
    if (!res.ok) throw new Error(`the snapshot set: HTTP ${res.status}`);
    setBytes = (await res.arrayBuffer()).byteLength;
  }
  return { ms: entry.responseEnd - entry.startTime, bytes: setBytes };
}

/**
 * sync.boot: a new device (a new local log name) of server log `log`, which holds total + tail
 * events. logfold: open() (with the server's snapshot set: `open_ms` until the table answers a
 * get) until sync.settled() (`usable_ms`: caught up with the server's head); logfold-full: the
 * same without `snapshots` (off by default), pulling and folding every event; dexie: dexiePull of the whole
 * log (`usable_ms`). Every trial checks the head, the rows and, for logfold, that it started from
 * the set.
 */
export async function syncBoot(system, { total, tail, url, log: serverLog, waitMs }) {
  const head = total + tail;
  expectedRows(head);
  if (system === "dexie") {
    const { ms, after, accounts } = await dexiePull("boot-dexie", url, serverLog);
    if (after !== head) throw new Error(`pulled up to offset ${after}, expected ${head}`);
    if (accounts.size !== ACCOUNTS) throw new Error(`dexie folded ${accounts.size} accounts, expected ${ACCOUNTS}`);
    checkRows(head, (k) => accounts.get(k), "dexie booted accounts");
    return { metrics: { usable_ms: ms }, events: head };
  }
  if (system !== "logfold" && system !== "logfold-full") throw new Error("sync.boot runs logfold, logfold-full and dexie");
  const boot = system === "logfold";
  const name = uniqueName(boot ? "boot" : "boot-full");
  await logfold.Logfold.destroy(name);
  performance.clearResourceTimings();
  try {
    const t0 = performance.now();
    const log = await logfold.Logfold.open({
      name, durability: DURABILITY, projections: { accounts: LEDGER },
      sync: boot ? { url, log: serverLog, snapshots: true } : { url, log: serverLog },
    });
    try {
      log.table("accounts").get("acct-0");
      const openMs = performance.now() - t0;
      const opened = { setAt: log.stats().snapshotSetAt, start: log.start, head: log.head, rows: log.table("accounts").count() };
      await log.sync.settled({ timeout: waitMs });
      const usableMs = performance.now() - t0;
      const stats = { ...syncStats(log), snapshotSetAt: log.stats().snapshotSetAt, start: log.start };
      const serverAt = await serverHead(url, serverLog);
      if (boot && !(stats.snapshotSetAt > 0)) {
        throw new Error(`did not start from the server's snapshot set: stats().snapshotSetAt is ${stats.snapshotSetAt}`);
      }
      if (!boot && stats.snapshotSetAt !== 0) throw new Error(`started from a snapshot set at ${stats.snapshotSetAt} with snapshots: false`);
      if (log.head !== serverAt || serverAt !== head) {
        throw new Error(`head ${log.head} after settled(); the server's head is ${serverAt}, expected ${head}`);
      }
      const rows = log.table("accounts").count();
      if (rows !== ACCOUNTS) throw new Error(`the accounts table has ${rows} rows, expected ${ACCOUNTS}`);
      checkRows(head, (k) => log.table("accounts").get(k), `logfold ${boot ? "booted" : "fully synced"} accounts table`);
      const set = boot ? await setDownload() : null;
      const note = boot
        ? `opened at ${opened.head} from the set at ${opened.setAt} (start ${opened.start}, ${opened.rows} rows)` +
          (set ? `; set GET ${set.ms.toFixed(0)} ms, ${(set.bytes / 1024).toFixed(0)} KiB` : "; no set GET seen") +
          `; after open: ${(usableMs - openMs).toFixed(0)} ms to the head`
        : `opened at ${opened.head}, ${opened.rows} rows`;
      return { metrics: { open_ms: openMs, usable_ms: usableMs }, events: head, stats, note, set };
    } finally {
      await log.close();
    }
  } finally {
    await logfold.Logfold.destroy(name);
  }
}

// ---- sync.latency: device A (this origin) appends, device B (another origin) sees the row -------
// The runner drives both pages: arm B, append in A, wait for B. Times are absolute (`now()`), as
// in tables.tabLatency. Rows are `lat-<i>`, made by one Opened event each.
let device = null;

/**
 * Opens this device: logfold opens `name` synced with server log `log` and the accounts table (B
 * also subscribes to it); "fetch" in B reads the server's live tail (SSE) with a streamed fetch.
 */
export async function latencyOpen(system, { url, log: serverLog, name, listen }) {
  const arrivals = new Map();
  const hear = (key, at) => {
    const a = arrivals.get(key);
    if (a?.wake) a.wake(at);
    else if (!a) arrivals.set(key, { at });
  };
  device = { arrivals, url, serverLog, sent: 0 };
  if (system === "logfold") {
    await logfold.Logfold.destroy(name);
    const log = await openSynced(name, url, serverLog);
    device.log = log;
    if (listen) {
      device.off = log.subscribe("accounts", ({ changes }) => {
        const at = now();
        for (const { key } of changes) if (String(key).startsWith("lat-")) hear(key, at);
      });
    }
    const { status } = await until(log, (s) => s.state === "online", 30_000, "going online");
    return { status };
  }
  if (system !== "fetch") throw new Error("sync.latency runs logfold and fetch");
  if (!listen) return {};
  const abort = new AbortController();
  const res = await fetch(`${url}/v1/logs/${serverLog}/live?after=0`, {
    signal: abort.signal, headers: { accept: "text/event-stream" },
  });
  if (!res.ok) throw new Error(`live: HTTP ${res.status}`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  device.abort = abort;
  (async () => {
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      const at = now();
      buf += value.replace(/\r\n?/g, "\n");
      let k;
      while ((k = buf.indexOf("\n\n")) >= 0) {
        const message = buf.slice(0, k);
        buf = buf.slice(k + 2);
        const data = message.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
        if (data) for (const e of JSON.parse(data).events) hear(e.data?.account, at);
      }
    }
  })().catch((e) => { if (!abort.signal.aborted) console.error(`bench: live tail: ${describe(e)}`); });
  return {};
}

/** In B: start waiting for row lat-<i> (before A appends it). */
export async function latencyArm(system, { i }) {
  const key = `lat-${i}`;
  if (device.arrivals.has(key)) throw new Error(`${key} arrived before it was appended`);
  const entry = {};
  entry.heard = new Promise((ok) => { entry.wake = ok; });
  device.arrivals.set(key, entry);
  return {};
}

/** In A: append (logfold) or push (fetch) the event that makes row lat-<i>; returns when it started. */
export async function latencyAppend(system, { i }) {
  const key = `lat-${i}`;
  const event = { stream: key, type: "Opened", data: { account: key, owner: "device A" } };
  const sent = now();
  if (system === "logfold") {
    await device.log.append(event);
  } else {
    await pushAll(device.url, device.serverLog, wireEvents([event]), {
      client: "bench-device-a", firstBatch: i + 2, // the runner's untimed first round is i = -1
    });
  }
  return { sent };
}

/** In B: when row lat-<i> arrived. */
export async function latencyHeard(system, { i }) {
  const key = `lat-${i}`;
  const entry = device.arrivals.get(key);
  let timer;
  const at = await Promise.race([
    entry.heard,
    new Promise((_, fail) => {
      timer = setTimeout(() => fail(new Error(`device B did not see ${key} within 10 s` +
        (device.log ? `; its sync status ${JSON.stringify(device.log.sync.status)}` : ""))), 10_000);
    }),
  ]).finally(() => clearTimeout(timer));
  return { at };
}

export async function latencyClose(system, { name }) {
  const d = device;
  device = null;
  if (!d) return {};
  d.off?.();
  d.abort?.abort();
  if (d.log) {
    await d.log.close();
    await logfold.Logfold.destroy(name);
  }
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
  tablesSetup: safe(tablesSetup),
  tablesTeardown: safe(tablesTeardown),
  tablesReplay: safe(tablesReplay),
  tablesReducer: safe(tablesReducer),
  tablesReducerTotal: safe(tablesReducerTotal),
  coldOpenSetup: safe(coldOpenSetup),
  coldOpen: safe(coldOpen),
  tablesMemory: safe(tablesMemory),
  foldInMemory: safe(foldInMemory),
  tabListen: safe(tabListen),
  tabStop: safe(tabStop),
  tabLatency: safe(tabLatency),
  tabTeardown: safe(tabTeardown),
  syncInitial: safe(syncInitial),
  syncPush: safe(syncPush),
  bootSeed: safe(bootSeed),
  bootSeedClose: safe(bootSeedClose),
  syncBoot: safe(syncBoot),
  latencyOpen: safe(latencyOpen),
  latencyArm: safe(latencyArm),
  latencyAppend: safe(latencyAppend),
  latencyHeard: safe(latencyHeard),
  latencyClose: safe(latencyClose),
};
console.log("bench: page ready");
