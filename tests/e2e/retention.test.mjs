// Local retention (issue 13, part 1): a synced log drops confirmed history it no longer needs
// with log.truncateBefore(seq); the server keeps it all. Reads below the kept start, time
// travel there and projections with no snapshot after the cut say TRUNCATED; the rest works.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, profileDir, launch, ev, TEST_TIMEOUT } from "./harness.mjs";
import { startSyncServer } from "./sync-server.mjs";

const PAGE_PORT = 47352;
const SYNC_PORT = 47353;
let pages, sync, browser, page;

before(async () => {
  pages = await startServer(PAGE_PORT);
  sync = await startSyncServer({ port: SYNC_PORT, corsOrigin: pages.origin });
  browser = await launch(await profileDir("retention"));
  page = await browser.newPage(pages.url);
});
after(async () => {
  await browser?.close();
  await sync?.stop();
  await pages?.close();
});

const opts = { timeout: TEST_TIMEOUT };

test("truncateBefore drops confirmed history: reads below start say TRUNCATED, tables and appends go on, reopen reads only the tail", opts, async () => {
  const r = await ev(page, async ({ url }) => {
    // A reducer beside the ledger's table and reducer: each kind must open after the cut.
    const projections = () => ({ ...T.ledger(), count: { version: 1, init: 0, apply: (n) => n + 1 } });
    const sync = { url, log: "kept-tail" };
    const text = "x".repeat(400);
    const events = T.ledgerEvents(3000, 9, 12).map((e) => ({ ...e, data: { ...e.data, text } }));
    let log = await Logfold.open({ name: "retain", projections: projections(), sync });
    for (let i = 0; i < events.length; i += 250) await log.append(events.slice(i, i + 250));
    await log.sync.settled({ timeout: 30_000 });
    const before = { start: log.start, tables: T.tables(log), count: log.state("count"), usage: (await navigator.storage.estimate()).usage };
    const cut = await log.truncateBefore(2000);
    const after = {
      start: log.start,
      tables: T.tables(log),
      count: log.state("count"),
      first: (await log.read({ limit: 1 }))[0]?.seq,
      below: await T.attempt(() => log.read({ after: 10 })),
      past: await T.attempt(() => log.tablesAt(50)),
      now: await T.attempt(async () => (await log.tablesAt(log.head)).table("accounts").count()),
      again: await log.truncateBefore(2000),
      every: [],
    };
    for await (const e of log.events()) after.every.push(e.seq);
    await log.append({ stream: "acct-0", type: "Deposited", data: { account: "acct-0", amount: 5 } });
    await log.sync.settled({ timeout: 30_000 });
    await log.close();
    // Reopened: the snapshots and the tail; the check after open finds the rest intact.
    log = await Logfold.open({ name: "retain", projections: projections(), sync });
    const reopened = { start: log.start, head: log.head, stats: log.stats(), verified: await log.verified, tables: T.tables(log), count: log.state("count") };
    await log.close();
    // A projection defined after the cut has no snapshot to start from.
    const changed = await T.attempt(() => Logfold.open({ name: "retain", projections: { other: { key: "data.account", on: { Deposited: { set: { last: "data.amount" } } } } }, sync }));
    const usage = (await navigator.storage.estimate()).usage;
    return { before, cut, after, reopened, changed, usage, total: events.length };
  }, { url: sync.url });
  assert.equal(r.before.start, 1);
  assert.ok(r.cut.start > 1000 && r.cut.start <= 2000, JSON.stringify(r.cut));
  assert.equal(r.cut.dropped, r.cut.start - 1);
  assert.equal(r.after.start, r.cut.start);
  assert.deepEqual(r.after.tables, r.before.tables, "the tables do not change");
  assert.equal(r.after.count, r.before.count);
  assert.equal(r.after.first, r.cut.start, "read() starts at the first position kept");
  assert.equal(r.after.below.code, "TRUNCATED", JSON.stringify(r.after.below));
  assert.deepEqual(r.after.below.details, { start: r.cut.start, needed: 11 });
  assert.equal(r.after.past.code, "TRUNCATED", "no state of position 50 is kept");
  assert.equal(r.after.now.value, 12, "time travel from a snapshot after the cut works");
  assert.deepEqual(r.after.again, { start: r.cut.start, dropped: 0 }, "a second cut at the same place drops nothing");
  assert.deepEqual(r.after.every, Array.from({ length: r.total - r.cut.start + 1 }, (_, i) => r.cut.start + i), "events() from start to the head");
  assert.equal(r.reopened.start, r.cut.start);
  assert.equal(r.reopened.head, r.total + 1);
  assert.equal(r.reopened.verified, null);
  assert.equal(r.reopened.stats.eventsReplayed, 0, "nothing folded: the snapshot is at the head");
  assert.equal(r.reopened.count, r.total + 1);
  assert.equal(r.changed.code, "TRUNCATED", JSON.stringify(r.changed));
  assert.deepEqual(r.changed.details, { start: r.cut.start, needed: 1 });
  console.log(`retention: storage.estimate() usage ${r.before.usage} B before the cut, ${r.usage} B after (Chromium frees IndexedDB space when it compacts its files)`);
  // The server kept everything.
  assert.equal(await sync.head("kept-tail"), r.total + 1);
});

test("truncateBefore on a log without sync is refused and drops nothing", opts, async () => {
  const r = await ev(page, async () => {
    const log = await Logfold.open({ name: "retain-local" });
    await log.append(Array.from({ length: 20 }, (_, i) => ({ stream: "s", type: "Noted", data: { i } })));
    const refused = await T.attempt(() => log.truncateBefore(10));
    const out = { refused, start: log.start, count: (await log.read()).length };
    await log.close();
    return out;
  });
  assert.equal(r.refused.code, "INVALID_ARGUMENT", JSON.stringify(r.refused));
  assert.deepEqual([r.start, r.count], [1, 20]);
});

test("truncateBefore never cuts past a failed reducer, which has no snapshot", opts, async () => {
  const r = await ev(page, async ({ url }) => {
    const projections = { bad: { version: 1, init: 0, apply: (n, e) => { if (e.seq === 3) throw new Error("no"); return n + 1; } } };
    const log = await Logfold.open({ name: "retain-failed", projections, sync: { url, log: "kept-failed" } });
    await log.append(Array.from({ length: 10 }, (_, i) => ({ stream: "s", type: "Noted", data: { i } })));
    await log.sync.settled({ timeout: 30_000 });
    const refused = await T.attempt(() => log.truncateBefore(8));
    const out = { refused, start: log.start };
    await log.close();
    return out;
  }, { url: sync.url });
  assert.equal(r.refused.code, "INVALID_ARGUMENT", JSON.stringify(r.refused));
  assert.equal(r.start, 1);
});

