// Opening a log: the steps of src/log/open.rs, each in its own IndexedDB transaction. JS reads
// what a step needs there; the wasm decides from it and issues the step's writes in the same
// transaction (see that file for what each step does).
import { LogfoldError } from "./errors.js";
import { Opening, openDatabase, storageError } from "./logfold.js";
import { request, counter, inTransaction, PAGE } from "./store.js";

/** Opens log `name` (the arguments of `new Opening`); resolves to its `LogCore`. */
export async function openLog(name, ...options) {
  const opening = new Opening(name, ...options);
  let db;
  try {
    db = await openDatabase(name);
    await initMeta(db, opening);
    if (opening.needsPrepare && !(await prepare(db, opening))) await initMeta(db, opening);
    await loadSnapshots(db, opening);
    await fold(db, opening);
    await checkStreams(db, opening);
  } catch (e) {
    db?.close();
    opening.free();
    throw e instanceof LogfoldError ? e : storageError(e);
  }
  const core = opening.finish(db);
  if (core.synced) {
    // What other tabs put in the outbox meanwhile.
    try {
      await core.catchUp();
    } catch (e) {
      core.db.close();
      core.free();
      throw e;
    }
  }
  return core;
}

// Step 1: the format, the client id and the marks.
async function initMeta(db, opening) {
  const refused = await inTransaction(db, "meta", "readwrite", opening.durability, async (tx) => {
    const meta = tx.objectStore("meta");
    const read = await Promise.all(Opening.metaKeys().map((k) => request(meta.get(k))));
    return opening.initMeta(meta, read);
  });
  if (refused) throw refused;
}

// Step 2: false when another tab had done it.
function prepare(db, opening) {
  return inTransaction(db, Opening.prepareStores(), "readwrite", opening.durability, async (tx, abort) => {
    const meta = tx.objectStore("meta");
    if (await request(meta.get("synced"))) {
      abort();
      return false;
    }
    const segments = tx.objectStore("segments");
    const [keys, values, kept, ...marks] = await Promise.all(
      [segments.getAllKeys(), segments.getAll(), tx.objectStore("outbox").getAllKeys(), ...["head", "nextBatch", "outboxRev"].map((k) => meta.get(k))].map(request),
    );
    opening.prepare(tx, keys, values, kept, ...marks.map(counter));
    return true;
  });
}

// Step 3: where each projection starts.
async function loadSnapshots(db, opening) {
  const keys = opening.snapshotKeys();
  if (keys.length === 0) return opening.loadSnapshots(0, []);
  const [head, values] = await inTransaction(db, ["snapshots", "meta"], "readonly", "default", (tx) => {
    const store = tx.objectStore("snapshots");
    return Promise.all([request(tx.objectStore("meta").get("head")), Promise.all(keys.map((k) => request(store.get(k))))]);
  });
  opening.loadSnapshots(counter(head), values);
}

// Step 4: the segments from the one holding `opening.start` to the head, checked and folded, in
// one readonly transaction; the next page is read while one folds.
function fold(db, opening) {
  return inTransaction(db, ["segments", "meta"], "readonly", "default", async (tx) => {
    const meta = tx.objectStore("meta");
    const segments = tx.objectStore("segments");
    const start = opening.start;
    // The last segment before the one holding `start`: a key cursor walking back one step.
    const below = start > 1 ? request(segments.openKeyCursor(IDBKeyRange.upperBound(start, true), "prev")).then((c) => c?.key) : undefined;
    const [head, truncated, before] = await Promise.all([request(meta.get("head")), request(meta.get("truncated")), below]);
    const page = (after) => {
      const range = IDBKeyRange.lowerBound(after, true);
      const next = Promise.all([request(segments.getAllKeys(range, PAGE)), request(segments.getAll(range, PAGE))]);
      // Not left unhandled when a fold fails (and aborts the transaction) while it is read.
      next.catch(() => {});
      return next;
    };
    let next = page(opening.foldFrom(counter(before), counter(truncated)));
    for (;;) {
      const [keys, values] = await next;
      if (keys.length === 0) break;
      next = page(keys.at(-1));
      opening.foldPage(keys, values, counter(head));
    }
    opening.foldEnd(counter(head));
  });
}

// Step 5: the `streams` store against its digest; rebuilt from the segments if they differ.
async function checkStreams(db, opening) {
  const intact = await inTransaction(db, ["streams", "meta"], "readwrite", "relaxed", async (tx) => {
    const meta = tx.objectStore("meta");
    const streams = tx.objectStore("streams");
    const read = await Promise.all([...["streamsCheck", "streamsThrough", "head"].map((k) => meta.get(k)), streams.getAllKeys(), streams.getAll()].map(request));
    return opening.streamsIntact(meta, ...read);
  });
  if (intact) return;
  await inTransaction(db, ["segments", "streams", "meta"], "readwrite", "strict", async (tx) => {
    const meta = tx.objectStore("meta");
    const streams = tx.objectStore("streams");
    const [head, truncated] = (await Promise.all([request(meta.get("head")), request(meta.get("truncated"))])).map(counter);
    const segments = tx.objectStore("segments");
    const range = IDBKeyRange.lowerBound(truncated, true);
    // Where history was dropped, the store's records are the base the segments bring up to date.
    const stored = truncated > 0 ? [streams.getAllKeys(), streams.getAll()] : [];
    const [keys, values, storedKeys = [], storedValues = []] = await Promise.all([segments.getAllKeys(range), segments.getAll(range), ...stored].map(request));
    opening.rebuildStreams(streams, meta, head, truncated, storedKeys, storedValues, keys, values);
  });
}
