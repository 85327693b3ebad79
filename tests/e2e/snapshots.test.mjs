// Snapshots from the server (issue 13, part 3): the sync leader shares a set of every projection
// at an offset; a new device starts from the newest set of exactly its projections and schemas
// and pulls only the tail, against the real server. A new device here is a new local log name
// in the same page: it has no database, so it asks for a set.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, profileDir, launch, ev, TEST_TIMEOUT } from "./harness.mjs";
import { startSyncServer } from "./sync-server.mjs";

const PAGE_PORT = 47355;
const SYNC_PORT = 47356;
const REPLACED_PORT = 47357;
let pages, sync, browser, page;

before(async () => {
  pages = await startServer(PAGE_PORT);
  sync = await startSyncServer({ port: SYNC_PORT, corsOrigin: pages.origin });
  browser = await launch(await profileDir("snapshots"));
  page = await browser.newPage(pages.url);
});
after(async () => {
  await browser?.close();
  await sync?.stop();
  await pages?.close();
});

const opts = { timeout: TEST_TIMEOUT };

/** `logfold_snapshot_uploads_total` by result, from the server's /metrics. */
async function uploads(server = sync) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const out = {};
  for (const m of text.matchAll(/^logfold_snapshot_uploads_total\{result="(\w+)"\}\s+(\d+)/gm)) out[m[1]] = Number(m[2]);
  return out;
}

async function waitFor(what, check, ms = 30_000) {
  const until = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("a new device starts from the shared set: the same tables at once, only the tail pulled, history before it TRUNCATED", opts, async () => {
  const stored = (await uploads()).stored ?? 0;
  const sharing = await ev(page, async ({ url }) => {
    const sync = { url, log: "boot", snapshots: { every: 1000 } };
    window.a = await Logfold.open({ name: "boot-a", projections: T.ledger(), sync, snapshotEvery: 1000 });
    const events = T.ledgerEvents(3000, 5, 30);
    for (let i = 0; i < events.length; i += 500) await a.append(events.slice(i, i + 500));
    await a.sync.settled({ timeout: 30_000 });
    await a.snapshot();
    return a.head;
  }, { url: sync.url });
  assert.equal(sharing, 3000);
  await waitFor("a stored upload", async () => ((await uploads()).stored ?? 0) > stored);

  const r = await ev(page, async ({ url }) => {
    // The server moves on after the set: the new device pulls that tail.
    await a.append(T.ledgerEvents(250, 6, 30).slice(30));
    await a.sync.settled({ timeout: 30_000 });
    const sync = { url, log: "boot", snapshots: true };
    const b = await Logfold.open({ name: "boot-b", projections: T.ledger(), sync });
    const opened = { stats: b.stats(), start: b.start, head: b.head };
    await b.sync.settled({ timeout: 30_000 });
    // A stream from before the set: its version came with the set, so an expected version holds.
    const version = await a.version("acct-3");
    await b.append({ stream: "acct-3", type: "Deposited", data: { account: "acct-3", amount: 7 } }, { expectedVersion: version });
    await b.sync.settled({ timeout: 30_000 });
    await a.sync.now();
    // Its snapshots move past the set; time travel after the set starts from it (its base).
    await b.snapshot();
    const travelTo = opened.stats.snapshotSetAt + 5;
    const out = {
      travel: [T.canon(T.tables(await b.tablesAt(travelTo))), T.canon(T.tables(await a.tablesAt(travelTo)))],
      opened,
      versions: [await b.version("acct-3"), await a.version("acct-3")],
      tables: [T.canon(T.tables(a)), T.canon(T.tables(b))],
      heads: [a.head, b.head],
      first: (await b.read({ limit: 1 }))[0]?.seq,
      below: await T.attempt(() => b.read({ after: 10 })),
      rejections: (await b.rejections()).length,
    };
    await b.close();
    // Reopened, it is a log like any other: no set asked for, nothing folded again.
    const again = await Logfold.open({ name: "boot-b", projections: T.ledger(), sync });
    out.reopened = { stats: again.stats(), start: again.start, tables: T.canon(T.tables(again)), verified: await again.verified };
    await again.close();
    // A projection the set did not have needs the history before it: open pulls it back.
    const changed = await Logfold.open({ name: "boot-b", projections: { ...T.ledger(), last: { key: "data.account", on: { Deposited: { set: { amount: "data.amount" } } } } }, sync });
    out.changed = { start: changed.start, replayed: changed.stats().eventsReplayed, tables: T.canon(T.tables(changed)), head: changed.head };
    await changed.close();
    return out;
  }, { url: sync.url });
  const at = r.opened.stats.snapshotSetAt;
  assert.ok(at >= 1000 && at <= 3000, `started from the set at ${at}`);
  assert.equal(r.opened.start, at + 1);
  assert.equal(r.opened.stats.eventsReplayed, 0, "the tables came from the set");
  assert.equal(r.opened.stats.snapshotsLoaded, 2, "the table and the reducer");
  assert.equal(r.first, at + 1, "the first event kept is the one after the set");
  assert.equal(r.below.code, "TRUNCATED", JSON.stringify(r.below));
  assert.equal(r.rejections, 0, "the expected version from the set's stream versions held on the server");
  assert.equal(r.versions[0], r.versions[1]);
  assert.equal(r.tables[0], r.tables[1], "both devices fold to the same tables");
  assert.equal(r.travel[0], r.travel[1], "time travel just after the set, as the device with the whole log sees it");
  assert.equal(r.heads[0], 3000 + 220 + 1);
  assert.deepEqual(r.heads, [r.heads[0], r.heads[0]]);
  assert.equal(r.reopened.stats.snapshotSetAt, 0);
  assert.equal(r.reopened.start, at + 1);
  assert.equal(r.reopened.tables, r.tables[1]);
  assert.equal(r.reopened.verified, null);
  assert.deepEqual([r.changed.start, r.changed.head], [1, r.heads[0]], "every event is kept again");
  assert.equal(r.changed.replayed, r.heads[0], "the new table folded them all");
  assert.equal(r.changed.tables, r.tables[1], "the others reopened as they were");
  // The server's own copy, folded by plain JS, is what both show.
  const { events } = await sync.events("boot");
  const model = await ev(page, (events) => T.canon(T.model(events)), events);
  assert.equal(model, r.tables[0]);
});

test("a set is only used by the same projections and schemas; a reducer state that is not plain JSON is not shared", opts, async () => {
  const r = await ev(page, async ({ url }) => {
    const sync = { url, log: "boot", snapshots: true };
    // The set of test 1 exists; another table, and the same projections under other schemas,
    // have none: they pull it all.
    const other = await Logfold.open({ name: "boot-other", projections: { ...T.ledger(), last: { key: "data.account", on: { Deposited: { set: { amount: "data.amount" } } } } }, sync });
    await other.sync.settled({ timeout: 30_000 });
    const schemas = await Logfold.open({ name: "boot-schemas", projections: T.ledger(), sync, schemas: { Noted: 2 }, upcast: { Noted: { 1: (d) => d } } });
    await schemas.sync.settled({ timeout: 30_000 });
    const out = {
      other: [other.stats().snapshotSetAt, other.start, other.stats().eventsPulled, other.head],
      schemas: [schemas.stats().snapshotSetAt, schemas.start],
      same: T.canon(T.tables(schemas)) === T.canon(T.tables(a)),
    };
    await other.close();
    await schemas.close();
    // Without the option a new device pulls it all.
    const plain = await Logfold.open({ name: "boot-default", projections: T.ledger(), sync: { url, log: "boot" } });
    out.plain = plain.stats().snapshotSetAt;
    await plain.close();
    return out;
  }, { url: sync.url });
  // A reducer state that JSON holds is shared (the control for the Map below)...
  const share = async (name, kind) => {
    await ev(page, async ({ url, name, kind }) => {
      const projections = kind === "map"
        ? { seen: { version: 1, init: () => new Map(), apply: (m, e) => new Map(m).set(e.stream, e.seq) } }
        : { seen: { version: 1, init: () => ({}), apply: (o, e) => ({ ...o, [e.stream]: e.seq }) } };
      window.sharing = await Logfold.open({ name, projections, sync: { url, log: name, snapshots: { every: 10 } }, snapshotEvery: 10 });
      await sharing.append(Array.from({ length: 50 }, (_, i) => ({ stream: `s${i % 5}`, type: "Noted", data: { i } })));
      await sharing.sync.settled({ timeout: 30_000 });
      await sharing.snapshot();
    }, { url: sync.url, name, kind });
  };
  const stored = (await uploads()).stored ?? 0;
  await share("boot-plain", "plain");
  await waitFor("the plain state's set", async () => ((await uploads()).stored ?? 0) > stored);
  await ev(page, () => sharing.close());
  // ... and one with a Map in it, which would come back from JSON as {}, is not: the log stays
  // open as long as the control needed, and nothing more is stored.
  const t0 = Date.now();
  await share("boot-map", "map");
  await new Promise((ok) => setTimeout(ok, Math.max(1500, 3 * (Date.now() - t0))));
  await ev(page, () => sharing.close());
  assert.equal((await uploads()).stored ?? 0, stored + 1, "nothing was shared for the Map state");
  assert.equal(r.other[0], 0, "another table: no set");
  assert.equal(r.other[1], 1);
  assert.equal(r.other[3], 3221);
  assert.deepEqual(r.schemas, [0, 1], "other schemas: no set");
  assert.ok(r.same);
  assert.equal(r.plain, 0, "sets are off by default");
});

test("a set shared before a reload is not uploaded again by the next page load's leader", opts, async () => {
  const other = await browser.newPage(pages.url);
  try {
    // Snapshots only when asked for, a set shared every 1,000 events.
    // `release` 2 adds a reducer: another set id.
    const open = (release = 1) => ev(other, async ({ url, release }) => {
      // n ledger events; `skip` drops the accounts' openings (they are there already).
      window.grow = async (n, seed, skip) => {
        const log = window.shared;
        await log.append(T.ledgerEvents(n + skip, seed, 30).slice(skip));
        await log.sync.settled({ timeout: 30_000 });
        await log.snapshot();
        return log.head;
      };
      const projections = release === 1 ? T.ledger() : { ...T.ledger(), count: { version: 1, init: 0, apply: (n) => n + 1 } };
      window.shared = await Logfold.open({ name: "again", projections, sync: { url, log: "again", snapshots: { every: 1000 } }, snapshotEvery: Infinity });
      await shared.sync.settled({ timeout: 30_000 });
    }, { url: sync.url, release });
    const stored = (await uploads()).stored ?? 0;
    await open();
    assert.equal(await ev(other, () => grow(1200, 7, 0)), 1200);
    await waitFor("the first set", async () => ((await uploads()).stored ?? 0) === stored + 1);

    await other.reload();
    await ev(other, () => window.ready);
    await open();
    // 600 more: a snapshot at 1,800 is under 1,200 + 1,000, so no set. Before the fix the new
    // page's leader knew of no set and uploaded one here.
    assert.equal(await ev(other, () => grow(600, 8, 30)), 1800);
    await new Promise((ok) => setTimeout(ok, 2000));
    assert.equal((await uploads()).stored ?? 0, stored + 1, "no set uploaded after the reload");
    // Past it, a set again (the control: sharing still works after the reload).
    assert.equal(await ev(other, () => grow(500, 9, 30)), 2300);
    await waitFor("the second set", async () => ((await uploads()).stored ?? 0) === stored + 2);
    // A release with other projections has its own set: shared at once, not 1,000 later.
    await ev(other, () => shared.close());
    await open(2);
    assert.equal(await ev(other, () => grow(100, 10, 30)), 2400);
    await waitFor("the other release's set", async () => ((await uploads()).stored ?? 0) === stored + 3);
    await ev(other, () => shared.close());
  } finally {
    await other.close();
  }
});

test("a leader whose server log was replaced shares no set into it before it checked the server again", opts, async () => {
  let first = await startSyncServer({ port: REPLACED_PORT, corsOrigin: pages.origin });
  let second;
  try {
    await ev(page, async ({ url }) => {
      window.moved = await Logfold.open({ name: "moved", projections: T.ledger(), sync: { url, log: "moved", snapshots: { every: 100 } }, snapshotEvery: Infinity });
      await moved.append(T.ledgerEvents(300, 11, 10));
      await moved.sync.settled({ timeout: 30_000 });
    }, { url: first.url });
    // The server's database is replaced (a restore, a new deployment) while the device's live
    // tail waits out its backoff; the new log has grown past this device's by other clients.
    await first.stop();
    first = null;
    await new Promise((ok) => setTimeout(ok, 3000));
    second = await startSyncServer({ port: REPLACED_PORT, corsOrigin: pages.origin });
    const events = Array.from({ length: 400 }, (_, i) => ({
      id: `0190c2a4-5e1f-7c3b-9a10-${String(i + 1).padStart(12, "0")}`,
      stream: `n-${i % 7}`, type: "Noted", data: { i }, meta: null, time: 1_700_000_000_000 + i, version: Math.floor(i / 7) + 1,
    }));
    const pushed = await fetch(`${second.url}/v1/logs/moved/push`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ protocol: 1, batches: [{ client: "other", epoch: 1, batch: 1, expected: {}, events }] }),
    });
    assert.equal(pushed.status, 200, await pushed.text());
    // A snapshot now: before the fix, the leader uploaded the set of its own history into the
    // new log, where new devices would boot from it.
    await ev(page, async () => {
      await moved.snapshot();
      await new Promise((ok) => setTimeout(ok, 2000));
    });
    assert.equal((await uploads(second)).stored ?? 0, 0, "no set stored in the replaced log");
    const end = Date.now() + 30_000;
    let status;
    while ((status = await ev(page, () => JSON.parse(JSON.stringify(moved.sync.status)))).lastError?.code !== "DIVERGED" && Date.now() < end) {
      await new Promise((ok) => setTimeout(ok, 100));
    }
    assert.equal(status.lastError?.code, "DIVERGED", JSON.stringify(status));
    await ev(page, () => moved.close());
  } finally {
    await first?.stop();
    await second?.stop();
  }
});

test("a new device whose server cannot be reached opens at once, empty, and syncs from the start later", opts, async () => {
  const r = await ev(page, async () => {
    const t0 = performance.now();
    const log = await Logfold.open({ name: "boot-offline", projections: T.ledger(), sync: { url: "http://127.0.0.1:47359", log: "boot", snapshots: true } });
    const ms = performance.now() - t0;
    const out = { ms, at: log.stats().snapshotSetAt, start: log.start, head: log.head };
    await log.close();
    return out;
  });
  assert.deepEqual([r.at, r.start, r.head], [0, 1, 0]);
  // A refused connection fails at once: open does not wait out the 5 s timeout.
  assert.ok(r.ms < 4000, `open took ${r.ms} ms`);
});

test("two tabs opening a new log at once: one starts it from the set, both open it and agree", opts, async () => {
  const r = await ev(page, async ({ url }) => {
    const sync = { url, log: "boot", snapshots: true };
    const [x, y] = await Promise.all([0, 1].map(() => Logfold.open({ name: "boot-twins", projections: T.ledger(), sync })));
    await Promise.all([x.sync.settled({ timeout: 30_000 }), y.sync.settled({ timeout: 30_000 })]);
    await y.refresh();
    const out = {
      at: [x.stats().snapshotSetAt, y.stats().snapshotSetAt],
      start: [x.start, y.start],
      tables: [T.canon(T.tables(x)), T.canon(T.tables(y)), T.canon(T.tables(a))],
      verified: [await x.verified, await y.verified],
    };
    await x.close();
    await y.close();
    return out;
  }, { url: sync.url });
  const at = Math.max(...r.at);
  assert.ok(at > 0 && r.at.includes(0), `one of them started the log from the set: ${r.at}`);
  assert.deepEqual(r.start, [at + 1, at + 1]);
  assert.deepEqual(r.tables, [r.tables[2], r.tables[2], r.tables[2]]);
  assert.deepEqual(r.verified, [null, null]);
});
