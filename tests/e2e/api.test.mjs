// The API end to end in a real page: what append returns, read/events paging, versions, head,
// stats, group commit under concurrency, compaction, and two tabs appending at once.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, profileDir, launch, ev, TEST_TIMEOUT } from "./harness.mjs";

const PORT = 47313;
let server, browser, page;

before(async () => {
  server = await startServer(PORT);
  browser = await launch(await profileDir("api"));
  page = await browser.newPage(server.url);
});
after(async () => {
  await browser?.close();
  await server?.close();
});

const opts = { timeout: TEST_TIMEOUT };
const UUID7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test("append of one event returns one StoredEvent with id, version, seq, time, origin, offset", opts, async () => {
  const r = await ev(page, async () => {
    const log = await Logfold.open({ name: "single" });
    const t0 = Date.now();
    const e = await log.append({ stream: "acct-1", type: "Opened", data: { owner: "ann", n: [1, 2.5, "x", null, true, { y: false }] }, meta: { user: "u1" } });
    const t1 = Date.now();
    const f = await log.append({ stream: "acct-1", type: "Deposited", data: { amount: 5 } });
    return { e, f, t0, t1, clientId: log.clientId, name: log.name, head: log.head, closed: log.closed, isArray: Array.isArray(e) };
  });
  const { e, f } = r;
  assert.equal(r.isArray, false);
  assert.match(e.id, UUID7, "id is UUIDv7 text");
  assert.notEqual(e.id, f.id);
  assert.ok(e.id < f.id, "UUIDv7 ids are time-ordered");
  assert.equal(e.stream, "acct-1");
  assert.equal(e.type, "Opened");
  assert.deepEqual(e.data, { owner: "ann", n: [1, 2.5, "x", null, true, { y: false }] });
  assert.deepEqual(e.meta, { user: "u1" });
  assert.equal(f.meta, null);
  assert.equal(e.version, 1);
  assert.equal(f.version, 2);
  assert.equal(e.seq, 1);
  assert.equal(f.seq, 2);
  assert.ok(e.time >= r.t0 && e.time <= r.t1, `time ${e.time} within [${r.t0}, ${r.t1}]`);
  assert.match(r.clientId, /\S/);
  assert.equal(e.origin, r.clientId, "origin === log.clientId");
  assert.equal(e.offset, null);
  assert.equal(e.schema, 1, "an app that names no schemas writes schema 1");
  assert.equal(r.name, "single");
  assert.equal(r.head, 2);
  assert.equal(r.closed, false);
  assert.deepEqual(Object.keys(e).sort(), ["data", "id", "meta", "offset", "origin", "schema", "seq", "stream", "time", "type", "version"]);
});

test("the client id persists across opens of the same log", opts, async () => {
  const r = await ev(page, async () => {
    const a = await Logfold.open({ name: "cid" });
    const ida = a.clientId;
    await a.close();
    const b = await Logfold.open({ name: "cid" });
    const e = await b.append({ stream: "s", type: "T" });
    await b.close();
    return [ida, b.clientId, e.origin];
  });
  assert.equal(r[0], r[1]);
  assert.equal(r[2], r[0]);
});

test("batch append returns an array in order; read({after, limit}); version(); head", opts, async () => {
  const r = await ev(page, async () => {
    const log = await Logfold.open({ name: "batch" });
    const one = await log.append([{ stream: "a", type: "T", data: 0 }]);
    const batch = await log.append(Array.from({ length: 20 }, (_, i) => ({ stream: i % 2 ? "b" : "a", type: "T", data: i + 1 })));
    const headBeforeEmpty = log.head;
    const empty = await T.attempt(() => T.within(5000, log.append([]), "append([])"));
    return {
      one, batch, empty, head: log.head, headBeforeEmpty,
      all: await log.read(),
      page: await log.read({ after: 5, limit: 3 }),
      tail: await log.read({ after: 19 }),
      none: await log.read({ after: 21 }),
      lim: await log.read({ limit: 4 }),
      va: await log.version("a"), vb: await log.version("b"), vz: await log.version("zzz"),
    };
  });
  assert.ok(Array.isArray(r.one) && r.one.length === 1);
  assert.equal(r.batch.length, 20);
  assert.deepEqual(r.batch.map((e) => e.seq), Array.from({ length: 20 }, (_, i) => i + 2));
  assert.deepEqual(r.batch.map((e) => e.data), Array.from({ length: 20 }, (_, i) => i + 1));
  assert.deepEqual(r.batch.filter((e) => e.stream === "a").map((e) => e.version), [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  assert.deepEqual(r.batch.filter((e) => e.stream === "b").map((e) => e.version), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.equal(new Set(r.batch.map((e) => e.id)).size, 20);
  assert.equal(r.head, 21);
  assert.equal(r.headBeforeEmpty, 21);
  assert.deepEqual(r.all, [...r.one, ...r.batch], "read() returns what append returned");
  assert.deepEqual(r.page.map((e) => e.seq), [6, 7, 8]);
  assert.deepEqual(r.tail.map((e) => e.seq), [20, 21]);
  assert.deepEqual(r.none, []);
  assert.deepEqual(r.lim.map((e) => e.seq), [1, 2, 3, 4]);
  assert.deepEqual([r.va, r.vb, r.vz], [11, 10, 0]);
  // An empty batch writes nothing and settles: it returns [] or is refused with a LogfoldError.
  if (r.empty.threw) assert.equal(r.empty.isLogfoldError, true, `append([]): ${JSON.stringify(r.empty)}`);
  else assert.deepEqual(r.empty.value, []);
});

test("read() defaults to 1000 events; events() iterates everything in order across many pages", opts, async () => {
  const r = await ev(page, async () => {
    const log = await Logfold.open({ name: "many" });
    for (let b = 0; b < 5; b++) {
      await log.append(Array.from({ length: 700 }, (_, i) => ({ stream: `s${i % 7}`, type: "T", data: { n: b * 700 + i } })));
    }
    const first = await log.read();
    const seqs = [];
    let ok = true;
    for await (const e of log.events()) {
      seqs.push(e.seq);
      if (e.data.n !== e.seq - 1) ok = false;
    }
    const fromMid = [];
    for await (const e of log.events({ after: 1234 })) fromMid.push(e.seq);
    const early = [];
    const it = log.events({ after: 10 });
    for await (const e of it) { early.push(e.seq); if (early.length === 3) break; }
    return { n1: first.length, firstSeq: first[0].seq, lastSeq: first.at(-1).seq, seqs, ok, fromMid, early, head: log.head };
  }, undefined, 60_000);
  assert.equal(r.head, 3500);
  assert.equal(r.n1, 1000);
  assert.equal(r.firstSeq, 1);
  assert.equal(r.lastSeq, 1000);
  assert.equal(r.seqs.length, 3500);
  assert.ok(r.seqs.every((s, i) => s === i + 1), "events() yields seq 1..3500 in order");
  assert.ok(r.ok, "each event's data matches its position");
  assert.equal(r.fromMid.length, 3500 - 1234);
  assert.ok(r.fromMid.every((s, i) => s === 1235 + i));
  assert.deepEqual(r.early, [11, 12, 13]);
});

test("events() sees events appended while it iterates, up to the end", opts, async () => {
  const r = await ev(page, async () => {
    const log = await Logfold.open({ name: "iter-live" });
    await log.append(Array.from({ length: 5 }, (_, i) => ({ stream: "s", type: "T", data: i })));
    const seen = [];
    for await (const e of log.events()) {
      seen.push(e.seq);
      if (e.seq === 2) await log.append({ stream: "s", type: "T", data: "late" });
    }
    return seen;
  });
  // Appended before the iterator reached the end: it must not be skipped.
  assert.deepEqual(r, [1, 2, 3, 4, 5, 6]);
});

test("stats() counters increase with appends", opts, async () => {
  const r = await ev(page, async () => {
    const log = await Logfold.open({ name: "stats" });
    const s0 = log.stats();
    await log.append({ stream: "s", type: "T" });
    const s1 = log.stats();
    await log.append(Array.from({ length: 10 }, () => ({ stream: "s", type: "T" })));
    const s2 = log.stats();
    await T.attempt(() => log.append({ stream: "", type: "T" }));
    const s3 = log.stats();
    return { s0, s1, s2, s3 };
  });
  assert.deepEqual(Object.keys(r.s0).sort(), [
    "baseEvents", "compactions", "eventsAppended", "eventsMigrated", "eventsPulled", "eventsReplayed",
    "overlayEvents", "overlayRebuilds", "projectionsRebuilt", "segmentsMerged",
    "segmentsWritten", "snapshotSetAt", "snapshotsDiscarded", "snapshotsLoaded", "snapshotsWritten", "streamsRebuilt", "transactions",
  ]);
  assert.equal(r.s0.eventsAppended, 0);
  assert.equal(r.s1.eventsAppended, 1);
  assert.equal(r.s2.eventsAppended, 11);
  assert.ok(r.s1.transactions > r.s0.transactions && r.s2.transactions > r.s1.transactions, JSON.stringify(r));
  assert.ok(r.s1.segmentsWritten > r.s0.segmentsWritten && r.s2.segmentsWritten > r.s1.segmentsWritten, JSON.stringify(r));
  assert.equal(r.s3.eventsAppended, 11, "a refused append appends nothing");
});

test("200 concurrent single appends get distinct consecutive seqs, in fewer than 200 transactions (group commit)", opts, async () => {
  const r = await ev(page, async () => {
    const log = await Logfold.open({ name: "group" });
    await log.append({ stream: "x", type: "First" });
    const h0 = log.head;
    const t0 = log.stats().transactions;
    const stored = await Promise.all(Array.from({ length: 200 }, (_, i) => log.append({ stream: i % 2 ? "odd" : "even", type: "T", data: { i } })));
    const t1 = log.stats().transactions;
    const back = await log.read({ after: h0 });
    return { h0, tx: t1 - t0, stored, back, head: log.head, ve: await log.version("even"), vo: await log.version("odd"), appended: log.stats().eventsAppended };
  });
  const seqs = r.stored.map((e) => e.seq);
  assert.equal(new Set(seqs).size, 200, "distinct seqs");
  assert.deepEqual([...seqs].sort((a, b) => a - b), Array.from({ length: 200 }, (_, i) => r.h0 + 1 + i), "consecutive seqs after the head");
  assert.equal(new Set(r.stored.map((e) => e.id)).size, 200);
  assert.ok(r.tx < 200, `group commit: ${r.tx} transactions for 200 concurrent appends`);
  assert.ok(r.tx >= 1);
  assert.equal(r.head, r.h0 + 200);
  assert.equal(r.appended, 201);
  // Each stored event reads back identical, at its seq; versions per stream are dense in seq order.
  const bySeq = new Map(r.back.map((e) => [e.seq, e]));
  for (const e of r.stored) assert.deepEqual(bySeq.get(e.seq), e);
  for (const s of ["even", "odd"]) {
    assert.deepEqual(r.back.filter((e) => e.stream === s).map((e) => e.version), Array.from({ length: 100 }, (_, i) => i + 1));
  }
  assert.deepEqual([r.ve, r.vo], [100, 100]);
});

test("compact() merges small segments; read() returns the same events before and after", opts, async () => {
  const r = await ev(page, async () => {
    const log = await Logfold.open({ name: "compact" });
    for (let i = 0; i < 150; i++) await log.append({ stream: `s${i % 3}`, type: "T", data: { i, text: "some words ".repeat(3) } });
    const beforeEvents = await T.readAll(log);
    const rawBefore = await T.raw("compact");
    const s0 = log.stats();
    await log.compact();
    const s1 = log.stats();
    const afterEvents = await T.readAll(log);
    const rawAfter = await T.raw("compact");
    const next = await log.append({ stream: "s0", type: "After" });
    await log.close();
    const again = await Logfold.open({ name: "compact" });
    const reopened = await T.readAll(again);
    await again.close();
    return { beforeEvents, afterEvents, reopened, s0, s1, segBefore: rawBefore.segments, segAfter: rawAfter.segments, next: [next.seq, next.version] };
  }, undefined, 60_000);
  assert.equal(r.beforeEvents.length, 150);
  assert.deepEqual(r.afterEvents, r.beforeEvents, "read() is unchanged by compaction");
  assert.deepEqual(r.reopened.slice(0, 150), r.beforeEvents);
  assert.deepEqual(r.next, [151, 51]);
  assert.ok(r.s1.segmentsMerged > 0, `segmentsMerged after compact(): ${JSON.stringify(r.s1)}`);
  assert.ok(r.s1.compactions > 0, JSON.stringify(r.s1));
  assert.ok(r.s1.segmentsMerged >= r.s0.segmentsMerged);
  // ~150 × 150 B fits a few target-size segments: far fewer than 150.
  assert.ok(r.segAfter.length <= 3, `segments after compact(): ${r.segAfter.length} (before: ${r.segBefore.length})`);
  assert.ok(r.segAfter.length < 150);
  assert.equal(r.segAfter.at(-1).key, 150, "the last segment still ends at the head");
  for (const s of r.segAfter) {
    assert.equal(s.magic, "LFSG");
    assert.ok(s.size <= 64 * 1024, `a merged segment of ${s.size} bytes exceeds 64 KiB`);
  }
});

test("two tabs appending at once produce distinct seqs and a consistent log", opts, async () => {
  const other = await browser.newPage(server.url);
  try {
    // Both tabs open the log first (opening during another tab's appends is the next test).
    for (const p of [page, other]) await ev(p, async () => { window.__tabs = await Logfold.open({ name: "tabs" }); });
    const work = (p, tag) => ev(p, async (tag) => {
      const log = window.__tabs;
      const out = [];
      const singles = Promise.all(Array.from({ length: 60 }, (_, i) => log.append({ stream: "shared", type: tag, data: { tag, i } })));
      for (let b = 0; b < 10; b++) out.push(...(await log.append(Array.from({ length: 7 }, (_, i) => ({ stream: `${tag}-own`, type: tag, data: { tag, b, i } })))));
      out.push(...(await singles));
      const r = { stored: out.map((e) => [e.id, e.seq, e.stream, e.version]), clientId: log.clientId };
      await log.close();
      return r;
    }, tag, 60_000);
    const [a, b] = await Promise.all([work(page, "A"), work(other, "B")]);
    const all = [...a.stored, ...b.stored];
    assert.equal(all.length, 260);
    assert.equal(new Set(all.map((x) => x[1])).size, 260, "seqs are distinct across tabs");
    assert.equal(new Set(all.map((x) => x[0])).size, 260);
    const check = await ev(page, async () => {
      const log = await Logfold.open({ name: "tabs" });
      const events = await T.readAll(log);
      const r = { events: events.map((e) => [e.id, e.seq, e.stream, e.version]), head: log.head, shared: await log.version("shared") };
      await log.close();
      return r;
    });
    assert.equal(check.head, 260);
    assert.deepEqual(check.events.map((e) => e[1]), Array.from({ length: 260 }, (_, i) => i + 1));
    const byId = new Map(check.events.map((e) => [e[0], e]));
    for (const x of all) assert.deepEqual(byId.get(x[0]), x, "each tab's acknowledged event is in the log as acknowledged");
    assert.deepEqual(check.events.filter((e) => e[2] === "shared").map((e) => e[3]), Array.from({ length: 120 }, (_, i) => i + 1), "the shared stream's versions are dense across tabs");
    assert.equal(check.shared, 120);
  } finally {
    await other.close().catch(() => {});
  }
});

test("a tab's cached versions give way to another tab's appends: its stale expectation is a CONFLICT", opts, async () => {
  const other = await browser.newPage(server.url);
  try {
    const open = (p) => ev(p, async () => { window.__stale = await Logfold.open({ name: "stale-cache" }); });
    await open(page);
    await open(other);
    // This tab appends (its cache now knows s at version 1), then the other tab moves s to 2.
    await ev(page, () => window.__stale.append({ stream: "s", type: "A" }));
    await ev(other, () => window.__stale.append({ stream: "s", type: "B" }, { expectedVersion: 1 }));
    const r = await ev(page, async () => {
      const log = window.__stale;
      const stale = await T.attempt(() => log.append({ stream: "s", type: "A" }, { expectedVersion: 1 }));
      const fresh = await log.append({ stream: "s", type: "A" }, { expectedVersion: 2 });
      const events = (await T.readAll(log)).map((e) => [e.seq, e.version, e.type]);
      await log.close();
      return { stale: stale.code ?? "accepted", details: stale.details, fresh: [fresh.seq, fresh.version], events };
    });
    await ev(other, () => window.__stale.close());
    assert.equal(r.stale, "CONFLICT", JSON.stringify(r));
    assert.deepEqual(r.details, { stream: "s", expected: 1, actual: 2 });
    assert.deepEqual(r.fresh, [3, 3]);
    assert.deepEqual(r.events, [[1, 1, "A"], [2, 2, "B"], [3, 3, "A"]]);
  } finally {
    await other.close().catch(() => {});
  }
});

test("an append that starts a new stream reads no version first; existing streams' versions are still read: after a reopen, and another tab's new stream", opts, async () => {
  const other = await browser.newPage(server.url);
  // Counts the `get`s on the streams store (a stream's stored version) from here on.
  const countReads = (p) => ev(p, () => {
    if (!window.__streamReads) {
      const get = IDBObjectStore.prototype.get;
      IDBObjectStore.prototype.get = function (...args) {
        if (this.name === "streams") window.__streamReads += 1;
        return get.apply(this, args);
      };
    }
    window.__streamReads = 0;
  });
  const reads = (p) => ev(p, () => window.__streamReads);
  try {
    await ev(page, () => Logfold.destroy("new-streams"));
    await countReads(page);
    const created = await ev(page, async () => {
      const log = (window.__created = await Logfold.open({ name: "new-streams" }));
      const out = [];
      for (let i = 0; i < 20; i++) out.push((await log.append({ stream: `todo-${i}`, type: "Created" }, { expectedVersion: "none" })).version);
      out.push((await log.append({ stream: "todo-3", type: "Done" }, { expectedVersion: 1 })).version);
      return out;
    });
    assert.deepEqual(created, [...Array(20).fill(1), 2]);
    assert.equal(await reads(page), 0, "new streams, and one appended here before, need no read");

    // Another tab makes a stream this one has never seen: the stale expectation is refused.
    await ev(other, async () => {
      const log = await Logfold.open({ name: "new-streams" });
      await log.append({ stream: "theirs", type: "Created" });
      await log.close();
    });
    const stale = await ev(page, async () => {
      const log = window.__created;
      const again = await T.attempt(() => log.append({ stream: "theirs", type: "Created" }, { expectedVersion: "none" }));
      await log.close();
      return again;
    });
    assert.equal(stale.code, "CONFLICT", JSON.stringify(stale));
    assert.deepEqual(stale.details, { stream: "theirs", expected: "none", actual: 1 });

    // Reopened, memory holds no versions: the stored ones are read, and new streams still not.
    await countReads(page);
    const reopened = await ev(page, async () => {
      const log = await Logfold.open({ name: "new-streams" });
      const opened = window.__streamReads;
      const known = await T.attempt(() => log.append({ stream: "todo-7", type: "Created" }, { expectedVersion: "none" }));
      const next = (await log.append({ stream: "todo-3", type: "Edited" }, { expectedVersion: 2 })).version;
      const knownReads = window.__streamReads - opened;
      const before = window.__streamReads;
      const fresh = (await log.append({ stream: "todo-20", type: "Created" }, { expectedVersion: "none" })).version;
      const freshReads = window.__streamReads - before;
      const r = { known, next, fresh, knownReads, freshReads, versions: [await log.version("theirs"), await log.version("todo-20")] };
      await log.close();
      return r;
    });
    assert.equal(reopened.known.code, "CONFLICT", JSON.stringify(reopened.known));
    assert.deepEqual(reopened.known.details, { stream: "todo-7", expected: "none", actual: 1 });
    assert.equal(reopened.next, 3);
    assert.equal(reopened.fresh, 1);
    assert.equal(reopened.freshReads, 0, "a new stream after a reopen needs no read either");
    assert.deepEqual(reopened.versions, [1, 1]);
    assert.equal(reopened.knownReads, 2, "the versions of the two streams only the store knew were read");

    // A synced log (its server out of reach: the appends wait in the outbox) spares them too.
    await countReads(page);
    const synced = await ev(page, async () => {
      await Logfold.destroy("new-streams-synced");
      const log = await Logfold.open({ name: "new-streams-synced", sync: { url: "http://127.0.0.1:9", log: "new-streams" } });
      const out = [];
      for (let i = 0; i < 10; i++) out.push((await log.append({ stream: `note-${i}`, type: "Created" }, { expectedVersion: "none" })).version);
      const again = await T.attempt(() => log.append({ stream: "note-4", type: "Created" }, { expectedVersion: "none" }));
      const r = { out, again, pending: log.sync.status.pending };
      await log.close();
      return r;
    });
    assert.deepEqual(synced.out, Array(10).fill(1));
    assert.equal(synced.again.code, "CONFLICT", JSON.stringify(synced.again));
    assert.equal(synced.pending, 10);
    assert.equal(await reads(page), 0, "no read for a synced log's new streams");
  } finally {
    await other.close().catch(() => {});
  }
});

test("a tab can open the log (and read it) while another tab is appending", opts, async () => {
  const other = await browser.newPage(server.url);
  try {
    await ev(page, async () => {
      const log = await Logfold.open({ name: "open-during" });
      await log.append({ stream: "s", type: "Seed" });
      window.__stop = false;
      window.__writer = (async () => {
        let n = 0;
        while (!window.__stop) {
          await log.append(Array.from({ length: 1 + (n % 5) }, (_, i) => ({ stream: "s", type: "W", data: { n, i } })));
          n++;
        }
        await log.close();
        return n;
      })();
    });
    const opens = await ev(other, async () => {
      const out = [];
      for (let i = 0; i < 15; i++) {
        out.push(await T.attempt(async () => {
          const log = await Logfold.open({ name: "open-during" });
          const events = await T.readAll(log);
          const dense = events.every((e, j) => e.seq === j + 1);
          const r = { head: log.head, n: events.length, dense };
          await log.close();
          return r;
        }));
        await new Promise((r) => setTimeout(r, 30));
      }
      return out;
    }, undefined, 60_000);
    const batches = await ev(page, async () => { window.__stop = true; return window.__writer; });
    assert.ok(batches > 5, `the writer appended only ${batches} batches`);
    const failed = opens.filter((o) => o.threw);
    assert.deepEqual(failed, [], `Logfold.open failed ${failed.length} of ${opens.length} times while another tab was appending`);
    for (const o of opens) {
      assert.equal(o.value.dense, true, "a reader saw a gap");
      assert.ok(o.value.n >= 1 && o.value.head >= o.value.n, JSON.stringify(o.value));
    }
  } finally {
    await ev(page, () => { window.__stop = true; }).catch(() => {});
    await other.close().catch(() => {});
  }
});

test("reading in pages while another tab appends and compacts yields every event exactly once, in order", opts, async () => {
  const other = await browser.newPage(server.url);
  try {
    await ev(page, async () => {
      const log = await Logfold.open({ name: "compact-during" });
      for (let i = 0; i < 400; i++) await log.append({ stream: `s${i % 4}`, type: "T", data: { i } });
      window.__cd = log;
    }, undefined, 60_000);
    // The other tab reads in small pages, slowly; this tab compacts and appends meanwhile.
    const reader = ev(other, async () => {
      const log = await Logfold.open({ name: "compact-during" });
      const seqs = [];
      let after = 0;
      for (;;) {
        const page = await log.read({ after, limit: 7 });
        if (page.length === 0) break;
        for (const e of page) seqs.push(e.seq);
        after = page[page.length - 1].seq;
        await new Promise((r) => setTimeout(r, 2));
      }
      const iterated = [];
      for await (const e of log.events()) iterated.push(e.seq);
      await log.close();
      return { seqs, iterated };
    }, undefined, 90_000);
    const writer = ev(page, async () => {
      const log = window.__cd;
      for (let k = 0; k < 10; k++) {
        for (let i = 0; i < 20; i++) await log.append({ stream: "late", type: "T", data: { k, i } });
        await log.compact();
      }
      const merged = log.stats().segmentsMerged;
      const head = log.head;
      await log.close();
      return { merged, head };
    }, undefined, 90_000);
    const [r, w] = await Promise.all([reader, writer]);
    assert.equal(w.head, 600);
    assert.ok(w.merged > 0, "compaction merged nothing");
    for (const [what, seqs] of [["read() pages", r.seqs], ["events()", r.iterated]]) {
      assert.ok(seqs.length >= 400, `${what}: ${seqs.length} events`);
      assert.ok(seqs.every((s, i) => s === i + 1), `${what}: not 1..n exactly once in order: ${seqs.slice(0, 50).join(",")}…`);
    }
    assert.ok(r.iterated.length >= r.seqs.length);
  } finally {
    await other.close().catch(() => {});
  }
});
