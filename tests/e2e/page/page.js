// The end-to-end test page: imports the built package and offers helpers to the tests
// (error descriptions, full reads, raw IndexedDB access). Tests drive it with page.evaluate.
window.ready = (async () => {
  try {
    const m = await import("/pkg/index.js");
    window.Logfold = m.Logfold;
    window.LogfoldError = m.LogfoldError;
    if (!m.Logfold || !m.LogfoldError) throw new Error("pkg/index.js lacks Logfold or LogfoldError");
    return { ok: true, exports: Object.keys(m).sort() };
  } catch (e) {
    return { ok: false, error: String((e && e.stack) || e) };
  }
})();

const T = (window.T = {
  /** A random (incompressible) string of n letters. */
  noise(n) {
    const a = new Uint8Array(n);
    for (let i = 0; i < n; i += 65536) crypto.getRandomValues(a.subarray(i, Math.min(n, i + 65536)));
    const parts = [];
    for (let i = 0; i < n; i += 8192) parts.push(String.fromCharCode(...a.subarray(i, i + 8192).map((x) => 97 + (x % 26))));
    return parts.join("");
  },

  /** Open logs by name, kept across page.evaluate calls. */
  logs: {},

  /** A JSON-able description of an error (or of a value that was not expected to be returned). */
  describe(e) {
    return {
      threw: true,
      isLogfoldError: window.LogfoldError ? e instanceof window.LogfoldError : false,
      isError: e instanceof Error,
      name: e && e.name,
      code: e && e.code,
      details: e && e.details !== undefined ? JSON.parse(JSON.stringify(e.details)) : undefined,
      message: e && e.message,
    };
  },

  /** Runs `fn`; returns { threw: false, value } or the error's description. */
  async attempt(fn) {
    try {
      const value = await fn();
      return { threw: false, value: value === undefined ? null : JSON.parse(JSON.stringify(value)) };
    } catch (e) {
      return T.describe(e);
    }
  },

  /** Rejects if `promise` does not settle within `ms` (so a hang is reported, not waited out). */
  within(ms, promise, what = "call") {
    return Promise.race([promise, new Promise((_, fail) => setTimeout(() => fail(new Error(`${what} did not settle within ${ms} ms`)), ms))]);
  },

  /** Every event of the log, read through read() in pages of `page`. */
  async readAll(log, page = 1000) {
    const all = [];
    let after = 0;
    for (;;) {
      const got = await log.read({ after, limit: page });
      if (got.length === 0) return all;
      all.push(...got);
      after = got[got.length - 1].seq;
    }
  },

  /** What a caller can see of the log: head, every event, and the given streams' versions. */
  async snap(log, streams = []) {
    const events = await T.readAll(log);
    const versions = {};
    for (const s of streams) versions[s] = await log.version(s);
    return { head: log.head, events, versions };
  },

  /** Like snap, plus the raw `streams` store and meta "head" (what a buggy append could leave). */
  async fullSnap(log, streams = []) {
    const s = await T.snap(log, streams);
    const raw = await T.raw(log.name);
    return { ...s, rawStreams: raw.streams, rawHead: raw.meta.head ?? null };
  },

  /** Runs a call that must be refused: the log seen before, the error, the log seen after. */
  async refuse(log, fn, streams = []) {
    // Background maintenance (compaction, the stream-version checkpoint) runs when appends
    // pause and may write between the two looks: do it now, so only the call can change things.
    if (!log.closed) await log.compact();
    const before = await T.fullSnap(log, streams);
    const err = await T.attempt(() => fn(log));
    const after = await T.fullSnap(log, streams);
    return { before, after, err };
  },

  /** The named log, opened once per page. */
  async log(name, options = {}) {
    if (!T.logs[name] || T.logs[name].closed) T.logs[name] = await window.Logfold.open({ name, ...options });
    return T.logs[name];
  },

  async dbExists(name) {
    const dbs = await indexedDB.databases();
    return dbs.some((d) => d.name === `logfold:${name}`);
  },

  /** Opens the log's database raw (no version: never upgrades). Caller closes it. */
  rawOpen(name) {
    return new Promise((ok, fail) => {
      const req = indexedDB.open(`logfold:${name}`);
      req.onsuccess = () => ok(req.result);
      req.onerror = () => fail(req.error);
      req.onblocked = () => fail(new Error("raw open blocked"));
      req.onupgradeneeded = () => {
        req.transaction.abort();
        fail(new Error(`database logfold:${name} does not exist`));
      };
    });
  },

  req(r) {
    return new Promise((ok, fail) => {
      r.onsuccess = () => ok(r.result);
      r.onerror = () => fail(r.error);
    });
  },

  /** The raw stores: segment keys and sizes, streams, meta (JSON-able parts). */
  async raw(name) {
    const db = await T.rawOpen(name);
    try {
      const stores = [...db.objectStoreNames].sort();
      const tx = db.transaction(stores, "readonly");
      const out = { stores, segments: [], streams: {}, meta: {}, counts: {} };
      for (const s of stores) out.counts[s] = await T.req(tx.objectStore(s).count());
      if (stores.includes("segments")) {
        const keys = await T.req(tx.objectStore("segments").getAllKeys());
        const vals = await T.req(tx.objectStore("segments").getAll());
        out.segments = keys.map((key, i) => {
          const v = vals[i];
          const bytes = v instanceof ArrayBuffer ? new Uint8Array(v) : ArrayBuffer.isView(v) ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : null;
          return {
            key,
            kind: v instanceof ArrayBuffer ? "ArrayBuffer" : v && v.constructor ? v.constructor.name : typeof v,
            size: bytes ? bytes.byteLength : -1,
            magic: bytes ? String.fromCharCode(...bytes.slice(0, 4)) : null,
          };
        });
      }
      for (const s of ["streams", "meta"]) {
        if (!stores.includes(s)) continue;
        const keys = await T.req(tx.objectStore(s).getAllKeys());
        const vals = await T.req(tx.objectStore(s).getAll());
        keys.forEach((k, i) => {
          const v = vals[i];
          out[s][String(k)] = v instanceof ArrayBuffer || ArrayBuffer.isView(v) ? `<${v.byteLength} bytes>` : v;
        });
      }
      return out;
    } finally {
      db.close();
    }
  },

  crc32(bytes) {
    let c = 0xffffffff;
    for (let i = 0; i < bytes.length; i++) {
      c ^= bytes[i];
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    }
    return (c ^ 0xffffffff) >>> 0;
  },

  /** Rewrites a segment with another format byte and a valid checksum (an intact future format). */
  async setSegmentFormat(name, key, format) {
    const db = await T.rawOpen(name);
    try {
      const tx = db.transaction(["segments"], "readwrite");
      const store = tx.objectStore("segments");
      const v = await T.req(store.get(key));
      const isBuf = v instanceof ArrayBuffer;
      const bytes = isBuf ? new Uint8Array(v.slice(0)) : new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
      bytes[4] = format;
      new DataView(bytes.buffer).setUint32(bytes.length - 4, T.crc32(bytes.subarray(0, bytes.length - 4)), true);
      store.put(isBuf ? bytes.buffer : bytes, key);
      await new Promise((ok, fail) => { tx.oncomplete = ok; tx.onabort = () => fail(tx.error); });
    } finally {
      db.close();
    }
  },

  /** Puts a raw value into the meta store. */
  async putMeta(name, key, value) {
    const db = await T.rawOpen(name);
    try {
      const tx = db.transaction(["meta"], "readwrite");
      tx.objectStore("meta").put(value, key);
      await new Promise((ok, fail) => { tx.oncomplete = ok; tx.onabort = () => fail(tx.error); });
    } finally {
      db.close();
    }
  },

  /** The bank ledger of the project's examples: a declarative table and a JS reducer. */
  ledger({ totalVersion = 1 } = {}) {
    return {
      accounts: {
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
      },
      total: {
        version: totalVersion,
        init: 0,
        apply: (total, e) => (e.type === "Deposited" ? total + e.data.amount : e.type === "Withdrawn" ? total - e.data.amount : total),
      },
    };
  },

  /** `n` random ledger events over `accounts` accounts (opened first), from a seeded generator. */
  ledgerEvents(n, seed = 1, accounts = 20) {
    let x = seed >>> 0 || 1;
    const rnd = (k) => {
      x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
      return x % k;
    };
    const acct = (i) => `acct-${i}`;
    const out = [];
    for (let i = 0; i < Math.min(n, accounts); i++) out.push({ stream: acct(i), type: "Opened", data: { account: acct(i), owner: `owner ${i}` } });
    while (out.length < n) {
      const a = acct(rnd(accounts));
      const amount = 1 + rnd(10_000);
      switch (rnd(3)) {
        case 0: out.push({ stream: a, type: "Deposited", data: { account: a, amount } }); break;
        case 1: out.push({ stream: a, type: "Withdrawn", data: { account: a, amount } }); break;
        default: {
          const b = acct(rnd(accounts));
          out.push({ stream: a, type: "Transferred", data: { from: a, to: b, amount } });
        }
      }
    }
    return out;
  },

  /** The ledger folded by plain JS, independently of logfold: { accounts: {key: row}, total }. */
  model(events) {
    const accounts = {};
    let total = 0;
    const row = (k) => (accounts[k] ??= {});
    for (const e of events) {
      const d = e.data;
      if (e.type === "Opened") Object.assign(row(d.account), { owner: d.owner, balance: 0, movements: 0 });
      if (e.type === "Deposited") { const r = row(d.account); r.balance = (r.balance ?? 0) + d.amount; r.movements = (r.movements ?? 0) + 1; total += d.amount; }
      if (e.type === "Withdrawn") { const r = row(d.account); r.balance = (r.balance ?? 0) - d.amount; r.movements = (r.movements ?? 0) + 1; total -= d.amount; }
      if (e.type === "Transferred") {
        const f = row(d.from); f.balance = (f.balance ?? 0) - d.amount; f.movements = (f.movements ?? 0) + 1;
        const t = row(d.to); t.balance = (t.balance ?? 0) + d.amount; t.movements = (t.movements ?? 0) + 1;
      }
    }
    return { accounts, total };
  },

  /** What a log's ledger projections hold: { accounts: {key: row}, total }. */
  tables(log) {
    const accounts = {};
    for (const { key, row } of log.table("accounts").scan()) accounts[key] = row;
    return { accounts, total: log.state("total") };
  },

  /** JSON with object keys sorted, to compare values whatever their key order. */
  canon(v) {
    const sort = (x) => (Array.isArray(x) ? x.map(sort) : x && typeof x === "object" ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, sort(x[k])])) : x);
    return JSON.stringify(sort(v));
  },

  /** The keys of the snapshots store. */
  async snapshotKeys(name) {
    const db = await T.rawOpen(name);
    try {
      return await T.req(db.transaction(["snapshots"], "readonly").objectStore("snapshots").getAllKeys());
    } finally {
      db.close();
    }
  },

  /** Flips a byte in the middle of the snapshot stored under `key`. */
  async flipSnapshot(name, key) {
    const db = await T.rawOpen(name);
    try {
      const tx = db.transaction(["snapshots"], "readwrite");
      const store = tx.objectStore("snapshots");
      const bytes = new Uint8Array((await T.req(store.get(key))).slice(0));
      bytes[bytes.length >> 1] ^= 0xff;
      store.put(bytes.buffer, key);
      await new Promise((ok, fail) => { tx.oncomplete = ok; tx.onabort = () => fail(tx.error); });
    } finally {
      db.close();
    }
  },

  /** Waits until `check()` is truthy (polling), or throws after `ms`. */
  async until(check, ms = 20_000, what = "condition") {
    const end = Date.now() + ms;
    for (;;) {
      const v = await check();
      if (v) return v;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  },

  /** Flips one byte (XOR 0xff) of the segment stored under `key`, keeping its value type. */
  async flip(name, key, offset) {
    const db = await T.rawOpen(name);
    try {
      const tx = db.transaction(["segments"], "readwrite");
      const store = tx.objectStore("segments");
      const v = await T.req(store.get(key));
      if (v === undefined) throw new Error(`no segment ${key}`);
      const isBuf = v instanceof ArrayBuffer;
      const bytes = isBuf ? new Uint8Array(v.slice(0)) : new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
      const at = offset ?? Math.floor(bytes.length / 2);
      bytes[at] ^= 0xff;
      store.put(isBuf ? bytes.buffer : bytes, key);
      await new Promise((ok, fail) => {
        tx.oncomplete = ok;
        tx.onerror = () => fail(tx.error);
        tx.onabort = () => fail(tx.error || new Error("aborted"));
      });
      return { at, size: bytes.length };
    } finally {
      db.close();
    }
  },
});
