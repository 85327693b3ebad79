// Local retention (issue 13, part 1): a synced log drops confirmed history it no longer needs
// with log.truncateBefore(seq); the server keeps it all. Reads below the kept start, time
// travel there and projections with no snapshot after the cut say TRUNCATED; the rest works.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, profileDir, launch, ev, TEST_TIMEOUT } from "./harness.mjs";
import { startSyncServer } from "./sync-server.mjs";

const PAGE_PORT = 47352;
const SYNC_PORT = 47353;
const OTHER_SYNC_PORT = 47372;
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
    // A projection defined after the cut has no snapshot to start from: with the server out of
    // reach, open refuses it; with the server, it pulls the dropped history back first.
    const other = { other: { key: "data.account", on: { Deposited: { set: { last: "data.amount" } } } } };
    const changed = await T.attempt(() => Logfold.open({ name: "retain", projections: other, sync: { ...sync, url: "http://127.0.0.1:47359" } }));
    const usage = (await navigator.storage.estimate()).usage;
    log = await Logfold.open({ name: "retain", projections: other, sync });
    const back = { start: log.start, stats: log.stats(), rows: log.table("other").count(), first: (await log.read({ limit: 1 }))[0]?.seq, verified: await log.verified };
    await log.close();
    return { before, cut, after, reopened, changed, back, usage, total: events.length };
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
  assert.equal(r.back.start, 1, "the history was pulled back from the server");
  assert.equal(r.back.first, 1);
  assert.equal(r.back.stats.eventsReplayed, r.total + 1, "the new projection folded every event");
  assert.equal(r.back.rows, 12);
  assert.equal(r.back.verified, null);
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


test("a cut at the head leaves an empty log that reopens clean; a cut with pending outbox events stops at the stored snapshots", opts, async () => {
  const r = await ev(page, async ({ url }) => {
    const projections = () => ({ ...T.ledger() });
    const events = T.ledgerEvents(300, 4, 5);
    // Everything confirmed, then cut at the head.
    let log = await Logfold.open({ name: "retain-head", projections: projections(), sync: { url, log: "kept-head" } });
    await log.append(events);
    await log.sync.settled({ timeout: 30_000 });
    const head = log.head;
    const cut = await log.truncateBefore(head + 1);
    const tables = T.tables(log);
    await log.close();
    log = await Logfold.open({ name: "retain-head", projections: projections(), sync: { url, log: "kept-head" } });
    const headCase = { head, cut, start: log.start, verified: await log.verified, read: (await log.read()).length, same: T.canon(T.tables(log)) === T.canon(tables) };
    await log.close();
    // Offline with events in the outbox: the tables' snapshot is of the confirmed base, written
    // at the last close, and the cut must not pass it.
    const dead = "http://127.0.0.1:47359";
    log = await Logfold.open({ name: "retain-pending", projections: projections(), sync: { url, log: "kept-pending" } });
    await log.append(events.slice(0, 100));
    await log.sync.settled({ timeout: 30_000 });
    await log.close();
    log = await Logfold.open({ name: "retain-pending", projections: projections(), sync: { url, log: "kept-pending" } });
    await log.append(events.slice(100, 200));
    await log.sync.settled({ timeout: 30_000 });
    await log.close();
    log = await Logfold.open({ name: "retain-pending", projections: projections(), sync: { url: dead, log: "kept-pending" } });
    await log.append(events.slice(200));
    const pending = log.sync.status.pending;
    const pendingCut = await log.truncateBefore(200);
    await log.close();
    log = await Logfold.open({ name: "retain-pending", projections: projections(), sync: { url: dead, log: "kept-pending" } });
    const pendingCase = { pending, cut: pendingCut, head: log.head, verified: await log.verified, pendingAfter: log.sync.status.pending };
    await log.close();
    return { headCase, pendingCase };
  }, { url: sync.url });
  const h = r.headCase;
  assert.deepEqual(h.cut, { start: h.head + 1, dropped: h.head }, JSON.stringify(h));
  assert.equal(h.start, h.head + 1);
  assert.equal(h.verified, null, "nothing left to check is not damage");
  assert.equal(h.read, 0);
  assert.ok(h.same, "the tables open from their snapshot");
  const p = r.pendingCase;
  assert.equal(p.pending, 100);
  assert.ok(p.cut.start <= 201, JSON.stringify(p.cut));
  assert.equal(p.head, 200, "the log reopens at its confirmed head, with its pending events");
  assert.equal(p.verified, null);
  assert.equal(p.pendingAfter, 100);
});

test("time travel works from the first position kept on, after the snapshots moved past it and after a reopen", opts, async () => {
  const r = await ev(page, async ({ url }) => {
    const sync = { url, log: "kept-travel" };
    const events = T.ledgerEvents(3000, 21, 15);
    let log = await Logfold.open({ name: "retain-travel", projections: T.ledger(), sync });
    for (let i = 0; i < 2000; i += 250) await log.append(events.slice(i, i + 250));
    await log.sync.settled({ timeout: 30_000 });
    const cut = await log.truncateBefore(1000);
    // The snapshots move on past the cut: time travel below them starts from the base.
    for (let i = 2000; i < 3000; i += 250) await log.append(events.slice(i, i + 250));
    await log.sync.settled({ timeout: 30_000 });
    await log.snapshot();
    const at = cut.start + 10;
    const travel = async () => {
      const past = await log.tablesAt(at);
      return T.canon(T.tables(past));
    };
    // The state at the last position dropped is the base itself; before it, nothing is kept.
    const out = { cut, at, past: await travel(), atCut: (await log.tablesAt(cut.start - 1)).seq, below: await T.attempt(() => log.tablesAt(cut.start - 2)) };
    await log.close();
    log = await Logfold.open({ name: "retain-travel", projections: T.ledger(), sync });
    out.reopened = await travel();
    await log.close();
    return out;
  }, { url: sync.url });
  assert.ok(r.cut.start > 500 && r.cut.start <= 1000, JSON.stringify(r.cut));
  const { events } = await sync.events("kept-travel");
  const model = await ev(page, (events) => T.canon(T.model(events)), events.slice(0, r.at));
  assert.equal(r.past, model, "the tables as of a position just after the cut");
  assert.equal(r.reopened, model);
  assert.equal(r.atCut, r.cut.start - 1);
  assert.equal(r.below.code, "TRUNCATED", JSON.stringify(r.below));
});

test("a log cut by an earlier release (no base snapshots) cuts again below its snapshots; time travel there says TRUNCATED", opts, async () => {
  const r = await ev(page, async ({ url }) => {
    const sync = { url, log: "kept-old" };
    const events = T.ledgerEvents(4000, 23, 15);
    let log = await Logfold.open({ name: "retain-old", projections: T.ledger(), sync });
    for (let i = 0; i < 2000; i += 250) await log.append(events.slice(i, i + 250));
    await log.sync.settled({ timeout: 30_000 });
    const first = await log.truncateBefore(1500);
    await log.close();
    // Releases before the base snapshots cut without them.
    const db = await T.rawOpen("retain-old");
    const tx = db.transaction("snapshots", "readwrite");
    const keys = (await T.req(tx.objectStore("snapshots").getAllKeys())).filter((k) => String(k).startsWith("base:"));
    for (const k of keys) tx.objectStore("snapshots").delete(k);
    await new Promise((ok) => (tx.oncomplete = ok));
    db.close();
    log = await Logfold.open({ name: "retain-old", projections: T.ledger(), sync });
    for (let i = 2000; i < 4000; i += 250) await log.append(events.slice(i, i + 250));
    await log.sync.settled({ timeout: 30_000 });
    await log.snapshot();
    const out = { first, bases: keys.length };
    out.second = await T.attempt(() => log.truncateBefore(3000));
    out.start = log.start;
    out.travel = await T.attempt(() => log.tablesAt(log.start + 10));
    out.tables = T.canon(T.tables(log));
    out.head = log.head;
    await log.close();
    return out;
  }, { url: sync.url });
  assert.equal(r.bases, 2, "the table's and the reducer's base snapshots were there to delete");
  assert.ok(r.first.start > 1 && r.first.start <= 1500, JSON.stringify(r.first));
  assert.equal(r.second.threw, false, `the second cut: ${JSON.stringify(r.second)}`);
  assert.ok(r.second.value.dropped > 0 && r.start > r.first.start && r.start <= 3000, JSON.stringify(r.second));
  // Below its snapshot at the head, the log has no state to fold from: a clear TRUNCATED.
  assert.equal(r.travel.code, "TRUNCATED", JSON.stringify(r.travel));
  const { events } = await sync.events("kept-old");
  assert.equal(r.head, 4000);
  assert.equal(r.tables, await ev(page, (events) => T.canon(T.model(events)), events));
});

test("two tabs opening a cut log with a new projection at once both pull the history back and open", opts, async () => {
  const r = await ev(page, async ({ url }) => {
    const sync = { url, log: "kept-twins" };
    const events = T.ledgerEvents(2000, 27, 12);
    const log = await Logfold.open({ name: "retain-twins", projections: T.ledger(), sync });
    for (let i = 0; i < 2000; i += 250) await log.append(events.slice(i, i + 250));
    await log.sync.settled({ timeout: 30_000 });
    const cut = await log.truncateBefore(1500);
    await log.close();
    // A release that adds a table, restored in two tabs at once: each finds the history gone.
    const projections = { ...T.ledger(), other: { key: "data.account", on: { Deposited: { set: { last: "data.amount" } } } } };
    const opened = await Promise.all([0, 1].map(() => T.attempt(async () => {
      const l = await Logfold.open({ name: "retain-twins", projections, sync });
      const out = { start: l.start, rows: l.table("other").count(), tables: T.canon(T.tables(l)), replayed: l.stats().eventsReplayed };
      await l.close();
      return out;
    })));
    return { cut, opened };
  }, { url: sync.url });
  assert.ok(r.cut.start > 1, JSON.stringify(r.cut));
  for (const o of r.opened) {
    assert.equal(o.threw, false, JSON.stringify(o));
    assert.equal(o.value.start, 1, "the history is back");
    assert.equal(o.value.rows, 12);
  }
  assert.equal(r.opened[0].value.tables, r.opened[1].value.tables);
});

test("history pulled back from another server log (another identity) is refused with DIVERGED and writes nothing", opts, async () => {
  // A second server, with a log of the same name: what a wiped and refilled server looks like.
  const other = await startSyncServer({ port: OTHER_SYNC_PORT, corsOrigin: pages.origin });
  try {
    const r = await ev(page, async ({ url, otherUrl }) => {
      const fill = async (name, url) => {
        const log = await Logfold.open({ name, projections: T.ledger(), sync: { url, log: "kept-twice" } });
        // Big enough for several segments, so whole ones lie before the cut.
        const text = "x".repeat(400);
        const events = T.ledgerEvents(600, 31, 6).map((e) => ({ ...e, data: { ...e.data, text } }));
        for (let i = 0; i < 600; i += 100) await log.append(events.slice(i, i + 100));
        await log.sync.settled({ timeout: 30_000 });
        return log;
      };
      (await fill("retain-refill", otherUrl)).close();
      const log = await fill("retain-diverged", url);
      const cut = await log.truncateBefore(400);
      await log.close();
      const projections = { ...T.ledger(), other: { key: "data.account", on: { Deposited: { set: { last: "data.amount" } } } } };
      const refused = await T.attempt(() => Logfold.open({ name: "retain-diverged", projections, sync: { url: otherUrl, log: "kept-twice" } }));
      const again = await Logfold.open({ name: "retain-diverged", projections: T.ledger(), sync: { url, log: "kept-twice" } });
      const out = { cut, refused, start: again.start, seqs: [] };
      for await (const e of again.events()) out.seqs.push(e.seq);
      await again.close();
      return out;
    }, { url: sync.url, otherUrl: other.url });
    assert.ok(r.cut.start > 1, JSON.stringify(r.cut));
    assert.equal(r.refused.code, "DIVERGED", JSON.stringify(r.refused));
    assert.equal(r.start, r.cut.start, "nothing was written back");
    assert.deepEqual(r.seqs, Array.from({ length: 600 - r.cut.start + 1 }, (_, i) => r.cut.start + i));
  } finally {
    await other.stop();
  }
});

test("a cut whose base snapshot cannot be stored (a reducer state holding a function there) drops nothing", opts, async () => {
  const r = await ev(page, async ({ url }) => {
    // The state holds a function until the 2,000th event: its snapshot at the head is stored,
    // its state at the cut cannot be.
    const tagged = (s) => (s.n + 1 < 2000 ? { n: s.n + 1, tag: () => "x" } : { n: s.n + 1 });
    const projections = () => ({ ...T.ledger(), tagged: { version: 1, init: () => ({ n: 0 }), apply: tagged } });
    const sync = { url, log: "kept-clone" };
    const events = T.ledgerEvents(2000, 25, 15);
    let log = await Logfold.open({ name: "retain-clone", projections: projections(), sync });
    for (let i = 0; i < 2000; i += 250) await log.append(events.slice(i, i + 250));
    await log.sync.settled({ timeout: 30_000 });
    const out = { cut: await T.attempt(() => log.truncateBefore(1500)), start: log.start, first: (await log.read({ limit: 1 }))[0]?.seq };
    await log.close();
    log = await Logfold.open({ name: "retain-clone", projections: projections(), sync });
    out.reopened = { start: log.start, verified: await log.verified, n: log.state("tagged").n, count: (await T.readAll(log)).length };
    await log.close();
    return out;
  }, { url: sync.url });
  assert.deepEqual([r.cut.code, r.cut.details?.name], ["STORAGE", "DataCloneError"], JSON.stringify(r.cut));
  assert.deepEqual([r.start, r.first], [1, 1], "nothing dropped");
  assert.deepEqual(r.reopened, { start: 1, verified: null, n: 2000, count: 2000 }, JSON.stringify(r.reopened));
});

test("retention: the leader drops what neither keepEvents nor keepDays keeps as the log grows; bad options are refused", opts, async () => {
  const r = await ev(page, async ({ url }) => {
    const events = T.ledgerEvents(2000, 31, 10);
    const open = (name, retention) => Logfold.open({ name, projections: T.ledger(), sync: { url, log: name }, snapshotEvery: 200, retention });
    const waitFor = async (check) => {
      for (let i = 0; i < 300 && !check(); i++) await new Promise((ok) => setTimeout(ok, 100));
      return check();
    };
    const byCount = await open("retain-count", { keepEvents: 500 });
    await waitFor(() => byCount.sync.status.leader);
    for (let i = 0; i < 2000; i += 100) {
      await byCount.append(events.slice(i, i + 100));
      await byCount.sync.settled({ timeout: 30_000 });
    }
    await waitFor(() => byCount.start > 1000);
    const count = { start: byCount.start, head: byCount.head, tables: T.canon(T.tables(byCount)) };
    await byCount.close();
    // By time: 300 events, a pause past the window, 300 more: the first 300 go.
    const byTime = await open("retain-days", { keepDays: 1.5 / 86_400 });
    await waitFor(() => byTime.sync.status.leader);
    await byTime.append(events.slice(0, 300));
    await byTime.sync.settled({ timeout: 30_000 });
    await new Promise((ok) => setTimeout(ok, 2000));
    for (let i = 300; i < 600; i += 100) {
      await byTime.append(events.slice(i, i + 100));
      await byTime.sync.settled({ timeout: 30_000 });
    }
    await waitFor(() => byTime.start > 1);
    const days = { start: byTime.start, head: byTime.head };
    await byTime.close();
    const refused = await Promise.all([
      T.attempt(() => Logfold.open({ name: "retain-bad", retention: { keepEvents: 10 } })),
      T.attempt(() => open("retain-bad2", { keepEvents: 0 })),
      T.attempt(() => open("retain-bad3", { keepHours: 1 })),
      T.attempt(() => open("retain-bad4", {})),
    ]);
    return { count, days, refused: refused.map((e) => [e.code, e.details?.argument]), model: T.canon(T.model(events)) };
  }, { url: sync.url });
  // Whole segments are dropped, so a little more than the last 500 may stay.
  assert.ok(r.count.start > 1000 && r.count.start <= 1501, JSON.stringify(r.count));
  assert.equal(r.count.head, 2000);
  assert.equal(r.count.tables, r.model, "the tables hold everything, dropped history included");
  assert.ok(r.days.start > 1 && r.days.start <= 301, JSON.stringify(r.days));
  assert.equal(r.days.head, 600);
  assert.deepEqual(r.refused, [["INVALID_ARGUMENT", "retention"], ["INVALID_ARGUMENT", "retention.keepEvents"], ["INVALID_ARGUMENT", "retention.keepHours"], ["INVALID_ARGUMENT", "retention"]]);
});

test("a tab that had not read what another tab's cut dropped reads the versions of the streams in it, however it appends", opts, async () => {
  const other = await browser.newPage(pages.url);
  try {
    const cfg = { url: sync.url, log: "cut-unread" };
    // This tab leads: it pushes, pulls and cuts.
    await ev(page, async (sync) => {
      await Logfold.destroy("cut-unread");
      window.__cutter = await Logfold.open({ name: "cut-unread", sync });
    }, cfg);
    // The other tab, without BroadcastChannel, reads nothing of the first one's appends until it
    // appends itself: when it does, the segments that held them are gone.
    await ev(other, async (sync) => {
      window.BroadcastChannel = undefined;
      window.__late = await Logfold.open({ name: "cut-unread", sync });
    }, cfg);
    const cut = await ev(page, async () => {
      const log = window.__cutter;
      await log.append([1, 2, 3].map((i) => ({ stream: `made-${i}`, type: "Created" })));
      await log.sync.settled({ timeout: 30_000 });
      return log.truncateBefore(log.head + 1);
    });
    assert.deepEqual(cut, { start: 4, dropped: 3 }, "every event dropped");
    const late = await ev(other, async () => {
      const log = window.__late;
      const out = [];
      // The first append finds the head moved and reads; the next two go from memory, which
      // must not take streams it never saw for new ones.
      for (const stream of ["made-1", "made-2", "made-3"]) {
        out.push(await T.attempt(() => log.append({ stream, type: "Created" }, { expectedVersion: "none" })));
      }
      out.push((await log.append({ stream: "made-4", type: "Created" }, { expectedVersion: "none" })).version);
      return out;
    });
    assert.deepEqual(late.slice(0, 3).map((r) => [r.code, r.details?.actual]), [["CONFLICT", 1], ["CONFLICT", 1], ["CONFLICT", 1]], JSON.stringify(late));
    assert.equal(late[3], 1);
  } finally {
    await ev(page, () => window.__cutter?.close()).catch(() => {});
    await other.close().catch(() => {});
  }
});
