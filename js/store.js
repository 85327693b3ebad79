// The IndexedDB steps JS runs itself rather than as async code in the wasm: on an open log,
// its snapshots and its past tables (and, in sync.js, leadership and marks); on a log no
// handle has open, `Logfold.repair` and the write-back of history pulled from the server. The
// wasm checks, decodes and encodes what only it can read (segments, tables, sync records).
import { LogfoldError } from "./errors.js";
import { openDatabase, storageError, segmentDamage, outboxIntact, rejectionIntact, outboxCheck, backfillSegments } from "./logfold.js";

// Segments per getAll when reading the log through (about 6 MiB when compacted).
export const PAGE = 128;

export function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

// Stored counters and positions are numbers; anything else (missing, damaged) counts as 0.
export const counter = (v) => (typeof v === "number" && v > 0 ? Math.floor(v) : 0);

// Runs `step(tx, abort)` in a transaction over `stores` and resolves to its result once the
// transaction has committed, or at once if the step aborted it (an answer that writes
// nothing). A throw aborts it.
export async function inTransaction(db, stores, mode, durability, step) {
  const tx = db.transaction(stores, mode, { durability });
  const end = new Promise((resolve, reject) => {
    tx.oncomplete = resolve;
    tx.onabort = () => reject(tx.error ?? new DOMException("transaction aborted", "AbortError"));
  });
  end.catch(() => {});
  let aborted = false;
  try {
    const result = await step(tx, () => {
      aborted = true;
      tx.abort();
    });
    if (!aborted) await end;
    return result;
  } catch (e) {
    try {
      tx.abort();
    } catch {}
    throw e;
  }
}

// The same on an open log's connection: a failure of IndexedDB reads as the log's own error,
// `CLOSED` once it has closed (what the step throws itself stays as it is).
async function onLog(core, stores, mode, durability, step) {
  if (core.closed) throw core.failure();
  try {
    return await inTransaction(core.db, stores, mode, durability, step);
  } catch (e) {
    throw e instanceof LogfoldError ? e : core.failure(e);
  }
}

// `onLog` over one store, which the step gets.
export function inStore(core, name, mode, durability, step) {
  return onLog(core, name, mode, durability, (tx, abort) => step(tx.objectStore(name), abort));
}

// --- on an open log ---

// The stored values under `keys` (undefined where none), in one readonly transaction.
export function readSnapshots(core, keys) {
  return inStore(core, "snapshots", "readonly", "default", (store) => Promise.all(keys.map((k) => request(store.get(k)))));
}

/**
 * Writes the tables' snapshots and reducer snapshots `values[i]` under `keys[i]` in one
 * transaction (relaxed: snapshots can be rebuilt); resolves to the position they are of. A
 * reducer state the browser cannot clone is left without a snapshot, with a warning.
 */
export async function writeSnapshots(core, keys, values) {
  const [seq, ...tables] = core.tableSnapshots();
  const written = await inStore(core, "snapshots", "readwrite", "relaxed", (store) => {
    for (let i = 0; i < tables.length; i += 2) store.put(tables[i + 1], tables[i]);
    let n = tables.length / 2;
    keys.forEach((key, i) => {
      try {
        store.put(values[i], key);
        n += 1;
      } catch (e) {
        console.warn(`logfold: no snapshot of ${key}: ${storageError(e).message}`);
      }
    });
    return n;
  });
  core.snapshotsWritten(written);
  return seq;
}

/**
 * The tables as of past position `seq` (see `Log.tablesAt`): from the stored snapshots and
 * base snapshots given, folded on with the segments after them, a page per readonly
 * transaction. `onEvents`, if given, gets the events after `from` (for the JS reducers) as JSON
 * text, a page at a time.
 */
export async function pastTables(core, seq, from, stored, bases, onEvents) {
  const past = core.pastTables(seq, from, stored, bases, onEvents !== undefined);
  try {
    while (past.seq < seq) {
      const after = past.seq;
      const [keys, values] = await onLog(core, ["segments", "meta"], "readonly", "default", (tx) => {
        const range = IDBKeyRange.lowerBound(after, true);
        const segments = tx.objectStore("segments");
        const truncated = tx.objectStore("meta").get("truncated");
        return Promise.all([request(segments.getAllKeys(range, PAGE)), request(segments.getAll(range, PAGE)), request(truncated)]).then(([keys, values, truncated]) => {
          core.checkKept(after, counter(truncated));
          return [keys, values];
        });
      });
      if (keys.length === 0) {
        throw new LogfoldError("INVALID_ARGUMENT", `invalid seq: position ${seq} is past the log's head ${after}`, { argument: "seq" });
      }
      const text = past.fold(keys, values);
      if (text !== undefined) onEvents(text);
    }
  } catch (e) {
    past.free();
    throw e;
  }
  return past.view();
}

// --- on a log no handle has open ---

// Runs `step(db)` on log `name`'s database (created if new), then closes it. IndexedDB's own
// failures read as STORAGE (or QUOTA_EXCEEDED).
async function withDatabase(name, step) {
  const db = await openDatabase(name);
  // Another tab's upgrade or delete is not kept waiting: what runs here then fails.
  db.onversionchange = () => db.close();
  try {
    return await step(db);
  } catch (e) {
    throw e instanceof LogfoldError ? e : storageError(e);
  } finally {
    db.close();
  }
}

// A strict readwrite transaction on a log no handle has open.
const writing = (db, stores, step) => inTransaction(db, stores, "readwrite", "strict", step);

/**
 * Keeps the intact prefix of log `name`: drops its first damaged segment and all after it, and
 * the outbox batches and rejections that cannot be read. Resolves to the new head, the
 * positions dropped (or null) and the records dropped or rewritten.
 */
export function repair(name) {
  return withDatabase(name, async (db) => {
    const { head, from } = await firstDamage(db);
    if (from !== undefined) await dropFrom(db, from - 1);
    const records = await repairRecords(db);
    if (from === undefined) return { head, dropped: null, records };
    return { head: from - 1, dropped: { from, to: Math.max(head, from) }, records };
  });
}

// The head, and the first damaged position (undefined if none): each segment must be intact,
// begin right after the one before it, and the last must end at the head. One readonly
// transaction, so appends and compaction in other tabs cannot make the log look damaged halfway.
async function firstDamage(db) {
  const tx = db.transaction(["segments", "meta"], "readonly");
  const meta = tx.objectStore("meta");
  const segments = tx.objectStore("segments");
  const [head, truncated] = await Promise.all([request(meta.get("head")), request(meta.get("truncated"))]);
  let prev = counter(truncated);
  for (;;) {
    const range = IDBKeyRange.lowerBound(prev, true);
    const [keys, values] = await Promise.all([request(segments.getAllKeys(range, PAGE)), request(segments.getAll(range, PAGE))]);
    if (keys.length === 0) break;
    const damage = segmentDamage(prev, keys, values);
    if (damage?.code === "CORRUPT") return { head: counter(head), from: damage.details.from };
    if (damage) throw damage;
    prev = keys.at(-1);
  }
  return { head: counter(head), from: prev === counter(head) ? undefined : prev + 1 };
}

// Deletes the segments after position `keep`, which becomes the head. The `streams` store
// stays as it is: up to a checkpoint at or before `keep` it still holds; one past the new head
// makes the next open rebuild the store from the segments kept.
function dropFrom(db, keep) {
  return writing(db, ["segments", "meta"], async (tx) => {
    const meta = tx.objectStore("meta");
    tx.objectStore("segments").delete(IDBKeyRange.lowerBound(keep, true));
    meta.put(keep, "head");
    // Compaction starts again at the first segment kept.
    meta.put(counter(await request(meta.get("truncated"))), "compacted");
  });
}

// Drops the outbox batches and rejections that cannot be read, and puts the next batch number
// back above every stored one, so a synced log opens again. A dropped batch's events are lost:
// its record no longer says what they were (and the server never had them whole).
function repairRecords(db) {
  return writing(db, ["outbox", "rejections", "meta"], async (tx, abort) => {
    const outbox = tx.objectStore("outbox");
    const rejections = tx.objectStore("rejections");
    const meta = tx.objectStore("meta");
    const [batchKeys, batches, rejectionKeys, notices, synced, next, acked, rev, check] = await Promise.all(
      [
        outbox.getAllKeys(),
        outbox.getAll(),
        rejections.getAllKeys(),
        rejections.getAll(),
        ...["synced", "nextBatch", "ackedThrough", "outboxRev", "outboxCheck"].map((k) => meta.get(k)),
      ].map(request),
    );
    // A log without sync has no outbox, and no batch counter to put back.
    if (!synced) {
      abort();
      return [];
    }
    const fixed = [];
    const present = outboxCheck(batchKeys);
    if (Array.isArray(check) && (check[0] !== present[0] || check[1] !== present[1])) {
      fixed.push(`outbox: ${Math.max(0, counter(check[0]) - batchKeys.length)} missing`);
    }
    let top = 0;
    const kept = [];
    batchKeys.forEach((n, i) => {
      if (outboxIntact(n, batches[i])) {
        top = Math.max(top, n);
        kept.push(n);
      } else {
        outbox.delete(n);
        fixed.push(`outbox ${n}`);
      }
    });
    rejectionKeys.forEach((n, i) => {
      if (rejectionIntact(notices[i])) {
        top = Math.max(top, n);
      } else {
        rejections.delete(n);
        fixed.push(`rejections ${n}`);
      }
    });
    // The engine refuses a counter at or below a stored batch, and a number at or below the
    // acknowledged ones is taken for acknowledged (and the server has it): never reuse one.
    top = Math.max(top, counter(acked));
    // A missing counter is read as 1, which is right while no batch number was ever used.
    const storedNext = Number.isInteger(next) && next >= 1 ? next : undefined;
    if (storedNext === undefined ? top > 0 : storedNext <= top) {
      meta.put(top + 1, "nextBatch");
      fixed.push("meta nextBatch");
    }
    if (fixed.length > 0) {
      // Other tabs read the outbox again.
      meta.put(counter(rev) + 1, "outboxRev");
      meta.put(outboxCheck(kept), "outboxCheck");
    } else {
      abort();
    }
    return fixed;
  });
}

/**
 * Writes events the server keeps back into log `name`, just below the first position it keeps,
 * so a projection that needs them can be folded: `pages` are pull answers served with log
 * identity `serverLog`, which must be the server log it synced with. Resolves to the last
 * position still dropped. One transaction: the positions after it stay whole.
 */
export function backfill(name, serverLog, pages) {
  // A page that is not a pull answer fails here, before anything is read.
  const cut = backfillSegments(pages);
  return withDatabase(name, (db) =>
    writing(db, ["segments", "meta"], async (tx, abort) => {
      const meta = tx.objectStore("meta");
      const [truncated, known] = await Promise.all([request(meta.get("truncated")), request(meta.get("serverLog"))]);
      const dropped = counter(truncated);
      if (typeof known === "string" && known !== serverLog) {
        throw new LogfoldError("DIVERGED", "the server's log is not the one this log synced with (it has another identity)");
      }
      if (cut && dropped < cut.first) {
        // Another tab pulled these back first: the log keeps them already.
        abort();
        return dropped;
      }
      if (!cut || cut.segments.at(-1)[0] !== dropped) {
        throw new LogfoldError("SYNC_PROTOCOL", `the events pulled back are not positions up to ${dropped}, the last one dropped`);
      }
      const segments = tx.objectStore("segments");
      for (const [key, bytes] of cut.segments) segments.put(bytes, key);
      meta.put(cut.first - 1, "truncated");
      return cut.first - 1;
    }),
  );
}
