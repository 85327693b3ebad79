// Browser sync end to end (issue #5): real Chromium pages, served by the harness's static server
// (so a page still loads while the sync server is down), syncing with the real `logfold-server`
// binary over SQLite (sync-server.mjs). Two devices are two Chromium launches on their own
// profiles; two tabs of one device are two pages of one launch. Every wait is generous and no
// test asserts a speed: they assert what the logs, tables, statuses and the server hold.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, profileDir, launch, ev, ready, sleep, rand, pkgBuilt } from "./harness.mjs";
import { startSyncServer, serverBuilt, SERVER_BIN } from "./sync-server.mjs";
import { startChaosProxy } from "./chaos-proxy.mjs";

const PAGE_PORT = 47320;
// A sync server port per test (47321–47329; the last test reuses the first: the server binds
// with SO_REUSEADDR and sync-server.mjs retries a start whose port is still held).
const PORTS = { hang: 47370, hangProxy: 47371, offline: 47321, conflict: 47322, crash: 47323, reload: 47324, frozen: 47325, closed: 47326, auth401: 47327, auth403: 47328, history: 47329, limits: 47330, diverged: 47331, tabSynced: 47332, bigPages: 47333, chaosProxy: 47334, chaos: 47335, tailCap: 47336, quiet: 47337, twoWriters: 47338, control: 47321, browserKill: 47322, tabsStatus: 47323, frames: 47358, uplink: 47362, uplinkProxy: 47363 };
const LONG = 90_000; // a sync that must happen: backoff with jitter may delay it, so be generous
const opts = { timeout: 300_000 };

let pages;
before(async () => {
  assert.ok(pkgBuilt(), "pkg/ is not built: npm run build");
  assert.ok(serverBuilt(), `no server binary at ${SERVER_BIN}: cargo build --profile server -p logfold-server`);
  pages = await startServer(PAGE_PORT);
});
after(async () => {
  await pages?.close();
});

// ---- helpers ---------------------------------------------------------------------------------

/**
 * Installed in each page (again after a reload): opens synced logs and reports what a tab sees.
 * Kinds of projections: "ledger" (the bank ledger of page.js) and "notes" (a title per stream).
 */
function installHelpers() {
  if (window.S) return true;
  const notes = () => ({
    notes: {
      key: "stream",
      on: {
        Created: { set: { title: "data.title", edits: 0 } },
        Edited: { set: { title: "data.title" }, count: "edits" },
      },
    },
  });
  const json = (v) => (v === undefined ? null : JSON.parse(JSON.stringify(v)));
  const S = (window.S = {
    logs: {},
    kinds: {},
    heard: {}, // what onRejected was called with, per log name
    retracted: {}, // what onRetracted was called with, per log name
    statuses: {}, // what log.sync.subscribe delivered, per log name
    changes: {}, // what log.subscribe delivered for the table (accounts or notes), per log name
    tokens: [], // getToken returns tokens[min(calls, length - 1)]; null never answers
    tokenCalls: 0,
    uncaught: [],
    ticks: 0, // a 100 ms timer: it stops when the page is frozen
    async open(name, { url, log, kind = "ledger", auth = null, live, maxPushBytes, timeout } = {}) {
      const heard = (S.heard[name] ??= []);
      const retracted = (S.retracted[name] ??= []);
      const sync = { url, log, maxPushBytes, onRejected: (r) => heard.push(json(r)), onRetracted: (id) => retracted.push(id) };
      if (auth) {
        S.tokens = auth;
        sync.getToken = () => {
          const token = S.tokens[Math.min(S.tokenCalls++, S.tokens.length - 1)];
          return token === null ? new Promise(() => {}) : Promise.resolve(token);
        };
      }
      if (live !== undefined) sync.live = live;
      if (timeout !== undefined) sync.timeout = timeout;
      const projections = kind === "notes" ? notes() : T.ledger();
      S.logs[name] = await window.Logfold.open({ name, projections, sync });
      S.kinds[name] = kind;
      const statuses = (S.statuses[name] = []);
      S.logs[name].sync.subscribe((st) => statuses.push(json(st)));
      const changes = (S.changes[name] = []);
      S.logs[name].subscribe(kind === "notes" ? "notes" : "accounts", (c) => changes.push(json(c)));
      return S.status(name);
    },
    status(name) {
      return json(S.logs[name].sync.status);
    },
    tables(name) {
      const log = S.logs[name];
      if (S.kinds[name] === "ledger") return T.tables(log);
      const notes = {};
      for (const { key, row } of log.table("notes").scan()) notes[key] = row;
      return { notes };
    },
    /** The log as read() gives it, the tables, the status, the rejections, what onRejected heard. */
    async view(name) {
      const log = S.logs[name];
      return {
        events: json(await T.readAll(log)),
        tables: S.tables(name),
        status: S.status(name),
        rejections: json(await log.rejections()),
        heard: S.heard[name] ?? [],
        clientId: log.clientId,
        stats: json(log.stats()),
      };
    },
    /**
     * Appends small random ledger batches for `ms` over accounts acct-0..3, some with an
     * expected version read just before (may conflict with the other device) and some with one
     * read long ago (often refused here); resolves to the batches appended (their ids) and how
     * many were refused at append.
     */
    async appendFor(name, ms, seed) {
      const log = S.logs[name];
      let x = seed;
      const rnd = (k) => ((x = (x * 1103515245 + 12345) >>> 0), (x >>> 8) % k);
      const acct = () => `acct-${rnd(4)}`;
      const batches = [];
      let refused = 0;
      const old = {};
      const end = Date.now() + ms;
      while (Date.now() < end) {
        const a = acct();
        const amount = 1 + rnd(100);
        const kind = rnd(10);
        try {
          let stored;
          if (kind < 5) {
            stored = await log.append([{ stream: a, type: "Deposited", data: { account: a, amount } }, { stream: a, type: "Withdrawn", data: { account: a, amount: 1 } }].slice(0, 1 + rnd(2)));
          } else if (kind < 8) {
            const v = await log.version(a);
            old[a] ??= v;
            stored = await log.append([{ stream: a, type: "Withdrawn", data: { account: a, amount } }], { expectedVersion: v });
          } else {
            const b = acct();
            stored = await log.append([{ stream: a, type: "Transferred", data: { from: a, to: b, amount } }], { expectedVersion: old[a] ?? 0 });
          }
          batches.push(stored.map((e) => e.id));
        } catch (e) {
          if (e.code !== "CONFLICT") throw e;
          refused += 1;
        }
        await new Promise((r) => setTimeout(r, 20 + rnd(120)));
      }
      return { batches, refused };
    },
    /** Appends `events` in batches of `size`; resolves to the stored events. */
    async appendAll(name, events, size = 100, pauseMs = 0) {
      const out = [];
      for (let i = 0; i < events.length; i += size) {
        out.push(...(await S.logs[name].append(events.slice(i, i + size))));
        if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
      }
      return json(out);
    },
  });
  setInterval(() => S.ticks++, 100);
  window.addEventListener("unhandledrejection", (e) => S.uncaught.push(String(e.reason?.stack ?? e.reason)));
  window.addEventListener("error", (e) => S.uncaught.push(String(e.error?.stack ?? e.message)));
  return true;
}

/** A tab of `device` on the test page, with the helpers installed. */
async function tab(device) {
  const page = await device.newPage(pages.url);
  await ev(page, installHelpers);
  return page;
}

async function reload(page) {
  await page.reload();
  await ready(page);
  await ev(page, installHelpers);
}

/** Polls `get` until `pred` holds for its value; throws with the last value after `ms`. */
async function until(what, get, pred = Boolean, ms = LONG, every = 250) {
  const end = Date.now() + ms;
  let last;
  let err;
  for (;;) {
    try {
      last = await get();
      err = undefined;
      if (pred(last)) return last;
    } catch (e) {
      err = e;
    }
    if (Date.now() > end) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}; last: ${err ? err.stack : JSON.stringify(last)?.slice(0, 3000)}`);
    }
    await sleep(every);
  }
}

const status = (page, name) => ev(page, (n) => S.status(n), name);
const view = (page, name) => ev(page, (n) => S.view(n), name);
const open = (page, name, cfg) => ev(page, ([n, c]) => S.open(n, c), [name, cfg]);
const appendAll = (page, name, events, size, pauseMs) =>
  ev(page, ([n, e, s, p]) => S.appendAll(n, e, s, p), [name, events, size, pauseMs], LONG);
const ledgerEvents = (page, n, seed) => ev(page, ([n, s]) => T.ledgerEvents(n, s), [n, seed]);
/** The ledger folded by the page's plain-JS model (T.model), independently of logfold. */
const model = (page, events) => ev(page, (e) => T.model(e), events);
const uncaught = (page) => ev(page, () => S.uncaught);

/** Waits until the tab has nothing pending and has confirmed `n` events. */
const synced = (page, name, n, ms = LONG) =>
  until(`${name}: pending 0 and confirmed ${n}`, () => status(page, name), (s) => s.pending === 0 && s.confirmed === n, ms);

/** Waits until the server log `log` holds `n` events. */
const serverAt = (sync, log, n, token, ms = LONG) => until(`server log ${log} at head ${n}`, () => sync.head(log, token), (h) => h === n, ms);

/** Checks that `events` (read()) are confirmed, dense from 1, and equal the server's, field by field. */
function assertConfirmedLike(events, server, what) {
  assert.equal(events.length, server.length, `${what}: as many events as the server`);
  events.forEach((e, i) => {
    const s = server[i];
    assert.equal(e.seq, i + 1, `${what}: seq of event ${i}`);
    assert.equal(e.offset, e.seq, `${what}: offset === seq for event ${i}`);
    assert.deepEqual(
      { id: e.id, stream: e.stream, version: e.version, type: e.type, data: e.data, meta: e.meta ?? null, time: e.time, origin: e.origin, offset: e.offset },
      { id: s.id, stream: s.stream, version: s.version, type: s.type, data: s.data, meta: s.meta ?? null, time: s.time, origin: s.origin, offset: s.offset },
      `${what}: event ${i} as the server has it`,
    );
  });
}

/** Each id once on the server, and exactly the ids that were appended. */
function assertExactlyOnce(serverEvents, appendedIds, what) {
  const ids = serverEvents.map((e) => e.id);
  assert.equal(new Set(ids).size, ids.length, `${what}: an event is on the server twice`);
  assert.deepEqual([...ids].sort(), [...appendedIds].sort(), `${what}: the server holds exactly the appended events`);
  serverEvents.forEach((e, i) => assert.equal(e.offset, i + 1, `${what}: server offsets dense`));
}

async function withDevices(names, fn) {
  const devices = [];
  try {
    for (const n of names) devices.push(await launch(await profileDir(`sync-${n}`)));
    return await fn(...devices);
  } finally {
    for (const d of devices) await d.close();
  }
}

// ---- 1. offline on two devices ---------------------------------------------------------------

test("two devices append while offline, reconnect, and end with identical logs and tables equal to a plain JS fold", opts, async () => {
  const sync = await startSyncServer({ port: PORTS.offline, corsOrigin: pages.origin });
  const log = "offline-both";
  try {
    await withDevices(["a", "b"], async (a, b) => {
      const pa = await tab(a);
      const pb = await tab(b);
      const cfg = { url: sync.url, log };
      await open(pa, "ledger", cfg);
      await open(pb, "ledger", cfg);
      await until("each device's only tab leads its sync", async () => [await status(pa, "ledger"), await status(pb, "ledger")], (s) => s.every((x) => x.leader));

      await a.context.setOffline(true);
      await b.context.setOffline(true);
      // A opens the accounts and moves money; B moves money on the same accounts (no Opened).
      const evA = await ledgerEvents(pa, 600, 1);
      const evB = (await ledgerEvents(pb, 620, 2)).slice(20);
      const storedA = await appendAll(pa, "ledger", evA, 100);
      const storedB = await appendAll(pb, "ledger", evB, 75);
      assert.equal(storedA.length, 600);
      assert.equal(storedB.length, 600);
      assert.ok(storedA.every((e, i) => e.offset === null && e.seq === i + 1), "offline appends are pending, with provisional seqs 1..600");
      assert.ok(storedB.every((e, i) => e.offset === null && e.seq === i + 1), "offline appends are pending, with provisional seqs 1..600");

      await sleep(2000);
      assert.equal(await sync.head(log), 0, "nothing reached the server while both were offline");
      const offline = [];
      for (const [p, stored] of [[pa, storedA], [pb, storedB]]) {
        const v = await view(p, "ledger");
        offline.push(v);
        assert.equal(v.status.pending, 600);
        assert.equal(v.status.confirmed, 0);
        assert.ok(["offline", "error"].includes(v.status.state), `offline state: ${JSON.stringify(v.status)}`);
        assert.deepEqual(v.events.map((e) => e.id), stored.map((e) => e.id), "read() shows the outbox in local order");
        assert.ok(v.events.every((e) => e.offset === null));
        assert.deepEqual(v.tables, await model(p, stored), "the tables show the pending events");
      }

      const [offA, offB] = offline;
      await a.context.setOffline(false);
      await b.context.setOffline(false);
      await serverAt(sync, log, 1200);
      await synced(pa, "ledger", 1200);
      await synced(pb, "ledger", 1200);

      const server = (await sync.events(log)).events;
      assertExactlyOnce(server, [...storedA, ...storedB].map((e) => e.id), "after reconnecting");
      const [va, vb] = [await view(pa, "ledger"), await view(pb, "ledger")];
      assert.deepEqual(va.events, vb.events, "both devices read the same log (ids, seqs, offsets, versions, data)");
      assertConfirmedLike(va.events, server, "device A");
      assertConfirmedLike(vb.events, server, "device B");
      assert.notEqual(va.clientId, vb.clientId);
      const originOf = new Map(server.map((e) => [e.id, e.origin]));
      assert.ok(storedA.every((e) => originOf.get(e.id) === va.clientId), "A's events carry A's client id");
      assert.ok(storedB.every((e) => originOf.get(e.id) === vb.clientId), "B's events carry B's client id");
      const want = await model(pa, server);
      assert.deepEqual(va.tables, want, "A's tables are the fold of the server's log");
      assert.deepEqual(vb.tables, want, "B's tables are the fold of the server's log");
      assert.deepEqual(va.rejections, []);
      assert.deepEqual(vb.rejections, []);
      // Remote events fold into the base and the outbox is re-applied: never a full rebuild.
      for (const [v, o] of [[va, offA], [vb, offB]]) {
        assert.equal(v.stats.projectionsRebuilt, o.stats.projectionsRebuilt, `no projection rebuilt: ${JSON.stringify(v.stats)}`);
        assert.equal(v.stats.fullRebuilds ?? 0, 0, JSON.stringify(v.stats));
      }

      // Both online now: an append on A reaches B's table through the live tail (no now()).
      const before = vb.tables.accounts["acct-3"];
      // Cleared first: B may hear the deposit before A's append call has even returned.
      await ev(pb, () => { S.changes.ledger.length = 0; });
      const dep = await ev(pa, () => S.logs.ledger.append({ stream: "acct-3", type: "Deposited", data: { account: "acct-3", amount: 4242 } }));
      const row = await until("A's deposit in B's table", () => ev(pb, () => S.tables("ledger").accounts["acct-3"]), (r) => r && r.balance === before.balance + 4242);
      assert.equal(row.movements, before.movements + 1);
      const heardB = await until("B's table subscriber to hear A's deposit", () => ev(pb, () => S.changes.ledger), (c) => c.some((x) => x.changes.some((ch) => ch.key === "acct-3" && ch.row?.balance === row.balance)), 30_000);
      assert.ok(heardB.length >= 1);
      await synced(pb, "ledger", 1201);
      const vb2 = await view(pb, "ledger");
      assert.equal(vb2.events[1200].id, dep.id);
      assert.equal(vb2.events[1200].offset, 1201);

      // A fresh client of the same server log (another log name on A) pulls it all.
      await open(pa, "fresh", cfg);
      await synced(pa, "fresh", 1201);
      const fresh = await view(pa, "fresh");
      const server2 = (await sync.events(log)).events;
      assertConfirmedLike(fresh.events, server2, "a fresh client");
      assert.deepEqual(fresh.tables, await model(pa, server2), "a fresh client's tables");

      assert.deepEqual(await uncaught(pa), []);
      assert.deepEqual(await uncaught(pb), []);
    });
  } finally {
    await sync.stop();
  }
});

// ---- 2. a conflict: one accepted, the other rejected in its own context ----------------------

test("two conflicting appends with the same expectedVersion: one accepted, the other reported to its device's tabs and its effect gone", opts, async () => {
  const sync = await startSyncServer({ port: PORTS.conflict, corsOrigin: pages.origin });
  const log = "conflict";
  try {
    await withDevices(["c", "d"], async (a, b) => {
      const pa = await tab(a);
      const pb1 = await tab(b);
      const pb2 = await tab(b);
      const cfg = { url: sync.url, log, kind: "notes" };
      for (const p of [pa, pb1, pb2]) await open(p, "notes", cfg);

      const created = await ev(pa, () => S.logs.notes.append({ stream: "doc-1", type: "Created", data: { title: "first" }, meta: { by: "A", tags: ["x"] } }, { expectedVersion: "none" }));
      await serverAt(sync, log, 1);
      for (const p of [pa, pb1, pb2]) {
        await until("doc-1 confirmed in every tab", () => view(p, "notes"), (v) => v.events.length === 1 && v.events[0].offset === 1 && v.tables.notes["doc-1"]?.title === "first");
      }

      await a.context.setOffline(true);
      await b.context.setOffline(true);
      const editA = await ev(pa, () => S.logs.notes.append({ stream: "doc-1", type: "Edited", data: { title: "from A" } }, { expectedVersion: 1 }));
      const editB = await ev(pb1, () => S.logs.notes.append({ stream: "doc-1", type: "Edited", data: { title: "from B" } }, { expectedVersion: 1 }));
      // A batch after the conflicting one, on another stream: a rejection never blocks it.
      const otherB = await ev(pb1, () => S.logs.notes.append({ stream: "doc-2", type: "Created", data: { title: "B's own" } }, { expectedVersion: "none" }));
      assert.equal(editA.offset, null);
      assert.equal(editB.offset, null);
      assert.equal(editB.version, 2, "provisional version");
      // B's other tab shows B's pending edit too (confirmed ⊕ outbox).
      await until("B's pending edit in B's other tab", () => ev(pb2, () => S.tables("notes").notes["doc-1"]), (r) => r?.title === "from B", 30_000);

      // A reconnects first and wins; then B reconnects and its batch is rejected.
      await a.context.setOffline(false);
      await serverAt(sync, log, 2);
      await synced(pa, "notes", 2);
      await ev(pb2, () => { S.changes.notes.length = 0; });
      await b.context.setOffline(false);
      await until("B's rejection", () => view(pb1, "notes"), (v) => v.status.pending === 0 && v.rejections.length === 1 && v.heard.length === 1);
      await until("onRejected in B's other tab", () => ev(pb2, () => S.heard.notes), (h) => h.length === 1, 30_000);
      await synced(pb1, "notes", 3);
      await synced(pb2, "notes", 3);
      await synced(pa, "notes", 3);
      await sleep(1000); // nothing more arrives

      const server = (await sync.events(log)).events;
      assert.deepEqual(server.map((e) => [e.id, e.data.title]), [[created.id, "first"], [editA.id, "from A"], [otherB.id, "B's own"]], "exactly one edit accepted: A's; B's other batch too");
      assert.deepEqual(server[0].meta, { by: "A", tags: ["x"] }, "meta reaches the server");

      for (const [p, what] of [[pb1, "B tab 1"], [pb2, "B tab 2"]]) {
        const v = await view(p, "notes");
        assert.equal(v.heard.length, 1, `${what}: onRejected once`);
        const r = v.heard[0];
        assert.equal(r.reason, "conflict", `${what}: ${JSON.stringify(r)}`);
        assert.deepEqual(r.events.map((e) => e.id), [editB.id], `${what}: the rejected event`);
        assert.equal(r.currentVersion, 2, `${what}: the stream's version on the server`);
        assert.equal(r.details?.stream, "doc-1", `${what}: details name the stream`);
        assert.deepEqual(v.rejections.map((x) => x.events.map((e) => e.id)), [[editB.id]], `${what}: rejections()`);
        assert.equal(v.rejections[0].reason, "conflict");
        assert.equal(v.rejections[0].currentVersion, 2);
        assert.deepEqual(v.tables.notes["doc-1"], { title: "from A", edits: 1 }, `${what}: B's edit left the table`);
        assert.deepEqual(v.tables.notes["doc-2"], { title: "B's own", edits: 0 }, `${what}: B's other batch stays`);
        assertConfirmedLike(v.events, server, what);
        assert.ok(!v.events.some((e) => e.id === editB.id), `${what}: the rejected event is not in the log`);
      }
      assert.equal(await ev(pb1, () => S.logs.notes.version("doc-1")), 2);
      // B's other tab's table subscriber heard doc-1 go back to A's title.
      const heard = await ev(pb2, () => S.changes.notes);
      assert.ok(
        heard.some((c) => c.changes.some((ch) => ch.key === "doc-1" && ch.row?.title === "from A")),
        `a table change for the rejection: ${JSON.stringify(heard)}`,
      );
      const va = await view(pa, "notes");
      assert.deepEqual(va.heard, [], "A heard of no rejection");
      assert.deepEqual(va.rejections, []);
      assert.deepEqual(va.tables.notes["doc-1"], { title: "from A", edits: 1 });
      assert.deepEqual(va.tables.notes["doc-2"], { title: "B's own", edits: 0 });

      // The rejection is kept across a reload, until dismissed (in any tab).
      await reload(pb2);
      await open(pb2, "notes", cfg);
      const kept = await view(pb2, "notes");
      assert.deepEqual(kept.rejections.map((x) => x.events.map((e) => e.id)), [[editB.id]], "the rejection survives a reload");
      assert.deepEqual(kept.tables.notes["doc-1"], { title: "from A", edits: 1 });
      await ev(pb1, async (id) => S.logs.notes.dismissRejection(id), kept.rejections[0].id);
      assert.deepEqual(await ev(pb1, async () => S.logs.notes.rejections()), []);
      assert.deepEqual(await ev(pb2, async () => S.logs.notes.rejections()), [], "dismissed for every tab");

      // B can go on from the server's version, and A sees it.
      const again = await ev(pb1, () => S.logs.notes.append({ stream: "doc-1", type: "Edited", data: { title: "B again" } }, { expectedVersion: 2 }));
      await serverAt(sync, log, 4);
      await until("B's new edit on A", () => ev(pa, () => S.tables("notes").notes["doc-1"]), (r) => r?.title === "B again" && r.edits === 2);
      assert.equal((await sync.events(log)).events[3].id, again.id);
      for (const p of [pa, pb1, pb2]) assert.deepEqual(await uncaught(p), []);
    });
  } finally {
    await sync.stop();
  }
});

// ---- 3. the server SIGKILLed mid-sync -------------------------------------------------------

test("the sync server SIGKILLed mid-sync and restarted: every event on the server exactly once, nothing lost", opts, async () => {
  const sync = await startSyncServer({ port: PORTS.crash, corsOrigin: pages.origin });
  const log = "crash";
  const total = 5000;
  try {
    await withDevices(["crash"], async (dev) => {
      const p = await tab(dev);
      await open(p, "ledger", { url: sync.url, log });
      await until("the tab leads", () => status(p, "ledger"), (s) => s.leader);
      // Appends keep coming (250 batches of 20) while the server is killed and restarted.
      await ev(p, (n) => {
        S.bg = S.appendAll("ledger", T.ledgerEvents(n, 9), 20, 10);
        return true;
      }, total);
      const kills = [];
      let last = 0;
      for (let k = 0; k < 3; k++) {
        let head;
        try {
          head = await until("the device pushing part of its events", () => sync.head(log), (h) => h > last, 60_000, 20);
        } catch {
          break; // no progress since the last restart: enough kills
        }
        if (head >= total) break;
        await sync.kill();
        kills.push(head);
        await sleep(rand(200, 1500));
        await sync.restart();
        last = head;
      }
      assert.ok(kills.some((h) => h > 0 && h < total), `the server was killed while the device was mid-sync: heads at kills ${kills}`);

      const stored = await ev(p, () => S.bg, undefined, LONG * 2);
      assert.equal(stored.length, total, "every append succeeded locally");
      await serverAt(sync, log, total, undefined, LONG * 2);
      await synced(p, "ledger", total);
      await sleep(1000);

      const server = (await sync.events(log)).events;
      assertExactlyOnce(server, stored.map((e) => e.id), "after the kills");
      const v = await view(p, "ledger");
      assertConfirmedLike(v.events, server, "the device");
      assert.deepEqual(v.tables, await model(p, server), "tables are the fold of the server's log");
      assert.deepEqual(v.rejections, [], "no batch was rejected");
      // Local order survives: one device, so the server keeps its order.
      assert.deepEqual(server.map((e) => e.id), stored.map((e) => e.id), "the server has the device's events in append order");
    });
  } finally {
    await sync.stop();
  }
});

// ---- 4. a reload while the server is down ---------------------------------------------------

test("a page reloaded while the sync server is down shows its pending events and pushes them when the server is back", opts, async () => {
  const sync = await startSyncServer({ port: PORTS.reload, corsOrigin: pages.origin });
  const log = "reload";
  const cfg = { url: sync.url, log };
  try {
    await withDevices(["reload"], async (dev) => {
      const p = await tab(dev);
      await open(p, "ledger", cfg);
      const events = await ledgerEvents(p, 8, 4);
      const first = await appendAll(p, "ledger", events.slice(0, 3), 3);
      await serverAt(sync, log, 3);
      await synced(p, "ledger", 3);

      await sync.kill();
      const pending = await appendAll(p, "ledger", events.slice(3), 1);
      assert.ok(pending.every((e) => e.offset === null));
      await reload(p); // the page is served by the static server, which is still up
      await open(p, "ledger", cfg);

      const v = await view(p, "ledger");
      assert.equal(v.events.length, 8);
      assert.deepEqual(v.events.map((e) => e.id), [...first, ...pending].map((e) => e.id), "the confirmed log, then the outbox in order");
      assert.deepEqual(v.events.map((e) => e.offset), [1, 2, 3, null, null, null, null, null]);
      assert.deepEqual(v.events.map((e) => e.seq), [1, 2, 3, 4, 5, 6, 7, 8]);
      assert.equal(v.status.pending, 5);
      assert.equal(v.status.confirmed, 3);
      const iterated = await ev(p, async () => { const out = []; for await (const e of S.logs.ledger.events({ after: 0 })) out.push([e.id, e.offset]); return out; });
      assert.deepEqual(iterated, v.events.map((e) => [e.id, e.offset]), "events() gives what read() gives");
      assert.deepEqual(v.tables, await model(p, events), "the tables show the pending events after the reload");
      const down = await until("the tab to notice the server is down", () => status(p, "ledger"), (s) => s.lastError?.code === "NETWORK" || ["offline", "error"].includes(s.state), 60_000);
      assert.equal(down.pending, 5, JSON.stringify(down));
      assert.notEqual(down.state, "online", JSON.stringify(down));

      await sync.restart();
      await serverAt(sync, log, 8);
      await synced(p, "ledger", 8);
      const server = (await sync.events(log)).events;
      assertExactlyOnce(server, [...first, ...pending].map((e) => e.id), "after the restart");
      const after = await view(p, "ledger");
      assertConfirmedLike(after.events, server, "the reloaded tab");
      assert.deepEqual(after.tables, await model(p, server));
      assert.notEqual(after.status.state, "error", JSON.stringify(after.status));
      // log.sync.subscribe heard the outbox drain.
      const heard = await ev(p, () => S.statuses.ledger);
      assert.ok(heard.some((x) => x.pending === 5), `a status with the 5 pending: ${JSON.stringify(heard).slice(0, 2000)}`);
      assert.deepEqual([heard.at(-1).pending, heard.at(-1).confirmed], [0, 8]);
    });
  } finally {
    await sync.stop();
  }
});

// ---- 5. a frozen leader ---------------------------------------------------------------------

/**
 * Freezes a tab with the DevTools protocol's `Page.setWebLifecycleState`. Headless Chromium 156
 * accepts that command for a visible page and does nothing (its timers keep running; measured
 * here through S.ticks), so when the page is not frozen the tab is stopped instead with
 * `Debugger.pause`: no script of it runs (timers, network callbacks, lock callbacks) while its
 * Web Lock stays held — what a frozen leader looks like to the other tabs. Returns
 * { mode, thaw() }.
 */
async function freeze(device, page) {
  const cdp = await device.context.newCDPSession(page);
  await cdp.send("Page.setWebLifecycleState", { state: "frozen" });
  const ticks = () => Promise.race([ev(page, () => S.ticks), sleep(1000).then(() => null)]);
  const t1 = await ticks();
  await sleep(600);
  const t2 = await ticks();
  let mode = "lifecycle";
  if (t1 !== null && t2 !== null && t2 > t1) {
    mode = "debugger";
    await cdp.send("Debugger.enable");
    await cdp.send("Debugger.pause");
    // Paused at its next script (S.ticks runs every 100 ms): nothing of it runs from now.
    await sleep(300);
    assert.equal(await Promise.race([ev(page, () => S.ticks), sleep(1500).then(() => "stopped")]), "stopped", "the tab is stopped");
  }
  return {
    mode,
    async thaw() {
      if (mode === "debugger") {
        await cdp.send("Debugger.resume");
        await cdp.send("Debugger.disable");
      }
      await cdp.send("Page.setWebLifecycleState", { state: "active" });
    },
  };
}

/** Waits until exactly one of the tabs leads; returns [leader, other, leaderStatus]. */
async function oneLeader(t1, t2, name) {
  const [s1, s2] = await until("exactly one leader tab", async () => [await status(t1, name), await status(t2, name)], ([x, y]) => x.leader !== y.leader, 60_000);
  return s1.leader ? [t1, t2, s1] : [t2, t1, s2];
}

test("a frozen leader tab with pending events: the other tab takes over and syncs them; thawed, the old leader changes nothing", opts, async () => {
  const sync = await startSyncServer({ port: PORTS.frozen, corsOrigin: pages.origin });
  const log = "frozen";
  const cfg = { url: sync.url, log };
  try {
    await withDevices(["frozen"], async (dev) => {
      const t1 = await tab(dev);
      const t2 = await tab(dev);
      await open(t1, "ledger", cfg);
      await open(t2, "ledger", cfg);
      const [leader, other, was] = await oneLeader(t1, t2, "ledger");
      const events = await ledgerEvents(leader, 9, 5);
      const ids = [];
      ids.push(...(await appendAll(leader, "ledger", events.slice(0, 3), 3)).map((e) => e.id));
      await serverAt(sync, log, 3);

      // The server goes down: the leader's next push fails and it holds 2 pending events
      // when it is frozen (in its backoff, with no IndexedDB transaction open).
      await sync.kill();
      ids.push(...(await appendAll(leader, "ledger", events.slice(3, 5), 1)).map((e) => e.id));
      await until("the leader to see the server down", () => status(leader, "ledger"), (s) => s.lastError?.code === "NETWORK" && s.pending === 2, 60_000);
      const frozen = await freeze(dev, leader);
      // Appended while the leader is frozen: only a new leader can push them.
      ids.push(...(await appendAll(other, "ledger", events.slice(5, 7), 2)).map((e) => e.id));
      const took = await until("the other tab to take over", () => status(other, "ledger"), (s) => s.leader, LONG);
      assert.ok(took.epoch > was.epoch, `a higher epoch: ${took.epoch} > ${was.epoch}`);
      assert.equal(took.pending, 4, `the frozen leader's and its own pending events: ${JSON.stringify(took)}`);
      await sync.restart();
      await serverAt(sync, log, 7);
      await synced(other, "ledger", 7);

      await frozen.thaw();
      const thawed = await until("the thawed tab to know it no longer leads", () => status(leader, "ledger"), (s) => !s.leader, 60_000);
      await sleep(6000); // several heartbeats and sync rounds of the thawed tab
      const still = await status(other, "ledger");
      assert.equal(still.leader, true, "the new leader still leads");
      assert.equal(still.epoch, took.epoch, "and keeps its epoch");
      assert.equal((await status(leader, "ledger")).leader, false, `the thawed tab does not lead: ${JSON.stringify(thawed)}`);
      assert.equal(await sync.head(log), 7, "the thawed tab pushed nothing more");
      assertExactlyOnce((await sync.events(log)).events, ids, "after the thaw");

      // The thawed tab's new events go through the new leader, once.
      ids.push(...(await appendAll(leader, "ledger", events.slice(7), 2)).map((e) => e.id));
      await serverAt(sync, log, 9);
      await synced(other, "ledger", 9);
      await synced(leader, "ledger", 9);
      await sleep(1000);
      const server = (await sync.events(log)).events;
      assertExactlyOnce(server, ids, "at the end");
      const [v1, v2] = [await view(leader, "ledger"), await view(other, "ledger")];
      assertConfirmedLike(v1.events, server, "the thawed tab");
      assertConfirmedLike(v2.events, server, "the new leader");
      assert.deepEqual(v1.tables, await model(other, server));
      assert.deepEqual(v2.tables, v1.tables);
      assert.equal((await status(leader, "ledger")).leader, false);
    });
  } finally {
    await sync.stop();
  }
});

// ---- every tab's status ---------------------------------------------------------------------

test("a tab that does not lead sees its and the leader's appends confirmed in its status and read()", opts, async () => {
  const sync = await startSyncServer({ port: PORTS.tabsStatus, corsOrigin: pages.origin });
  const log = "tabs-status";
  const cfg = { url: sync.url, log };
  try {
    await withDevices(["tabs-status"], async (dev) => {
      const t1 = await tab(dev);
      const t2 = await tab(dev);
      await open(t1, "ledger", cfg);
      await open(t2, "ledger", cfg);
      const [leader, other] = await oneLeader(t1, t2, "ledger");
      const events = await ledgerEvents(leader, 8, 61);
      const ids = (await appendAll(leader, "ledger", events.slice(0, 2), 1)).map((e) => e.id);
      ids.push(...(await appendAll(other, "ledger", events.slice(2, 4), 1)).map((e) => e.id));
      await serverAt(sync, log, 4);
      await synced(leader, "ledger", 4);
      await synced(other, "ledger", 4, 30_000);
      // Both tabs' appends pushed together in one request (the leader paused meanwhile).
      await ev(leader, () => S.logs.ledger.sync.pause());
      ids.push(...(await appendAll(leader, "ledger", events.slice(4, 6), 1)).map((e) => e.id));
      ids.push(...(await appendAll(other, "ledger", events.slice(6), 1)).map((e) => e.id));
      await ev(leader, () => S.logs.ledger.sync.resume());
      await serverAt(sync, log, 8);
      await synced(leader, "ledger", 8);
      await synced(other, "ledger", 8, 30_000);
      const server = (await sync.events(log)).events;
      assertExactlyOnce(server, ids, "two tabs' appends");
      const v = await view(other, "ledger");
      assertConfirmedLike(v.events, server, "the tab that does not lead");
      assert.deepEqual(v.tables, await model(other, server));
    });
  } finally {
    await sync.stop();
  }
});

// ---- 6. the leader tab closed ---------------------------------------------------------------

test("the leader tab closed: the other tab takes over and pushes what the closed one left pending", opts, async () => {
  const sync = await startSyncServer({ port: PORTS.closed, corsOrigin: pages.origin });
  const log = "closed";
  const cfg = { url: sync.url, log };
  try {
    await withDevices(["closed"], async (dev) => {
      const t1 = await tab(dev);
      const t2 = await tab(dev);
      await open(t1, "ledger", cfg);
      await open(t2, "ledger", cfg);
      const [leader, other, was] = await oneLeader(t1, t2, "ledger");
      const events = await ledgerEvents(other, 7, 6);
      const ids = (await appendAll(leader, "ledger", events.slice(0, 2), 2)).map((e) => e.id);
      await serverAt(sync, log, 2);

      // The server goes down, the leader appends (pending) and its tab is closed.
      await sync.kill();
      ids.push(...(await appendAll(leader, "ledger", events.slice(2, 5), 1)).map((e) => e.id));
      await leader.close();
      const took = await until("the other tab to take over", () => status(other, "ledger"), (s) => s.leader, 30_000);
      assert.ok(took.epoch > was.epoch, `a higher epoch: ${took.epoch} > ${was.epoch}`);
      assert.equal(took.pending, 3, `the closed tab's pending events are the new leader's outbox: ${JSON.stringify(took)}`);

      await sync.restart();
      ids.push(...(await appendAll(other, "ledger", events.slice(5), 2)).map((e) => e.id));
      await serverAt(sync, log, 7);
      await synced(other, "ledger", 7);
      const server = (await sync.events(log)).events;
      assertExactlyOnce(server, ids, "after the take-over");
      const v = await view(other, "ledger");
      assertConfirmedLike(v.events, server, "the new leader");
      assert.deepEqual(v.tables, await model(other, server));
    });
  } finally {
    await sync.stop();
  }
});

// ---- auth -----------------------------------------------------------------------------------

test("401: getToken is called again and the request retried; a token that stays refused surfaces UNAUTHORIZED", opts, async () => {
  const tokens = "# e2e\nwriter-token-0001 auth401:write\nreader-token-0003 *:read\n";
  const sync = await startSyncServer({ port: PORTS.auth401, corsOrigin: pages.origin, tokens });
  try {
    await withDevices(["auth401"], async (dev) => {
      // A stale token first, then a good one.
      const p = await tab(dev);
      await open(p, "ok", { url: sync.url, log: "auth401", auth: ["stale-token-0000", "writer-token-0001"] });
      const stored = await appendAll(p, "ok", await ledgerEvents(p, 4, 8), 2);
      await serverAt(sync, "auth401", 4, "reader-token-0003");
      await synced(p, "ok", 4);
      const server = (await sync.events("auth401", "reader-token-0003")).events;
      assertExactlyOnce(server, stored.map((e) => e.id), "with a refreshed token");
      assert.ok((await sync.requestsByStatus())["401"] >= 1, "the stale token was sent and refused");
      assert.ok((await ev(p, () => S.tokenCalls)) >= 2, "getToken was called again after the 401");
      assertConfirmedLike((await view(p, "ok")).events, server, "the tab");

      // A token the server never accepts: after the retry, UNAUTHORIZED, and nothing pushed.
      const q = await tab(dev);
      await open(q, "bad", { url: sync.url, log: "auth401", auth: ["wrong-token-0002"] });
      await ev(q, () => S.logs.bad.append({ stream: "x", type: "Deposited", data: { account: "x", amount: 1 } }));
      // Between retries the state is "syncing" for a moment, the last error kept: wait for both.
      const s = await until("UNAUTHORIZED", () => status(q, "bad"), (x) => x.lastError?.code === "UNAUTHORIZED" && x.state === "error", 60_000, 50);
      assert.equal(s.state, "error", JSON.stringify(s));
      assert.ok((await ev(q, () => S.tokenCalls)) >= 2, "getToken was called again before giving up");
      assert.equal(s.pending >= 1, true, JSON.stringify(s));
      assert.equal(await sync.head("auth401", "reader-token-0003"), 4, "nothing pushed with the refused token");

      // A getToken() that never answers (an auth backend behind a dead network) has the
      // sync timeout: the round fails as NETWORK, and the next one asks again and pushes.
      const r = await tab(dev);
      await open(r, "hang", { url: sync.url, log: "auth401", auth: [null, "writer-token-0001"], timeout: 500 });
      const hung = await ev(r, () => S.logs.hang.append({ stream: "y", type: "Deposited", data: { account: "y", amount: 2 } }));
      await serverAt(sync, "auth401", 5, "reader-token-0003");
      await synced(r, "hang", 5);
      const late = (await ev(r, () => S.statuses.hang)).find((x) => x.lastError?.message.includes("getToken"));
      assert.equal(late?.state, "offline", "a status said the token was late");
      assert.equal(late.lastError.code, "NETWORK", JSON.stringify(late));
      assert.equal(await ev(r, () => S.tokenCalls), 2, "asked once more after the late token");
      assertExactlyOnce((await sync.events("auth401", "reader-token-0003")).events, [...stored.map((e) => e.id), hung.id], "after a late token");
    });
  } finally {
    await sync.stop();
  }
});

test("403: status error FORBIDDEN and sync paused (no more pushes) until resume() in any tab", opts, async () => {
  const tokens = "reader-token-0003 forbid:read\n";
  const sync = await startSyncServer({ port: PORTS.auth403, corsOrigin: pages.origin, tokens });
  try {
    await withDevices(["auth403"], async (dev) => {
      const t1 = await tab(dev);
      const t2 = await tab(dev);
      const cfg = { url: sync.url, log: "forbid", auth: ["reader-token-0003"] };
      await open(t1, "ledger", cfg);
      await open(t2, "ledger", cfg);
      const [p, other] = await oneLeader(t1, t2, "ledger");
      const stored = await appendAll(p, "ledger", await ledgerEvents(p, 3, 12), 3);
      const s = await until("FORBIDDEN", () => status(p, "ledger"), (x) => x.lastError?.code === "FORBIDDEN", 60_000);
      assert.ok(["error", "paused"].includes(s.state), JSON.stringify(s));
      assert.equal(s.pending, 3);
      const refused = (await sync.requestsByStatus("push"))["403"];
      assert.ok(refused >= 1, "the push was refused with 403");
      await sleep(6000);
      assert.equal((await sync.requestsByStatus("push"))["403"], refused, "paused: no more pushes");
      const s2 = await status(p, "ledger");
      assert.ok(["error", "paused"].includes(s2.state), JSON.stringify(s2));
      assert.equal(s2.lastError?.code, "FORBIDDEN");
      assert.equal((await status(other, "ledger")).lastError?.code, "FORBIDDEN", "the other tab hears of it");
      assert.equal(await sync.head("forbid", "reader-token-0003"), 0);

      // The token is granted write access (the server restarts with the new token file):
      // resume() in the tab that does not lead reaches the leader, which pushes.
      await sync.writeTokens("reader-token-0003 forbid:write\n");
      await sync.restart();
      await ev(other, () => S.logs.ledger.sync.resume());
      await serverAt(sync, "forbid", 3, "reader-token-0003");
      await synced(p, "ledger", 3);
      await synced(other, "ledger", 3);
      assertExactlyOnce((await sync.events("forbid", "reader-token-0003")).events, stored.map((e) => e.id), "after resume");
      const s3 = await status(p, "ledger");
      assert.ok(!["error", "paused"].includes(s3.state) && s3.lastError === null, JSON.stringify(s3));
      assert.equal(s3.leader, true, "the same tab still leads");
    });
  } finally {
    await sync.stop();
  }
});

// ---- batches the server would refuse --------------------------------------------------------

test("a synced batch that could not be pushed is refused at append; pushes and migrated history fit the server's body limit", opts, async () => {
  // The server takes bodies of 300 KiB; the page pushes at most 256 KiB.
  const sync = await startSyncServer({ port: PORTS.limits, corsOrigin: pages.origin, maxBody: 300 << 10 });
  const log = "limits";
  const maxPushBytes = 256 << 10;
  const note = (stream, size, i) => ({ stream, type: "Created", data: { title: `${i}:${"x".repeat(size)}` } });
  try {
    await withDevices(["limits"], async (dev) => {
      const p = await tab(dev);
      // A history of 200 events of 10 KB written without sync: 2 MB to migrate.
      const history = Array.from({ length: 200 }, (_, i) => note(`h-${i}`, 10_000, i));
      await ev(p, async (h) => {
        const l = await window.Logfold.open({ name: "limits" });
        await l.append(h);
        await l.close();
      }, history);
      await open(p, "limits", { url: sync.url, log, kind: "notes", maxPushBytes });

      const refused = await ev(p, async ([big, many]) => {
        const l = S.logs.limits;
        const codes = [];
        for (const batch of [big, many]) {
          try {
            await l.append(batch);
            codes.push("appended");
          } catch (e) {
            codes.push([e instanceof window.LogfoldError, e.code, e.message]);
          }
        }
        return { codes, events: (await T.readAll(l)).length, notes: [...l.table("notes").scan()].length };
      }, [Array.from({ length: 30 }, (_, i) => note(`big-${i}`, 10_000, i)), Array.from({ length: 10_001 }, (_, i) => note("many", 1, i))]);
      assert.deepEqual(refused.codes.map((c) => c.slice?.(0, 2)), [[true, "INVALID_ARGUMENT"], [true, "INVALID_ARGUMENT"]], JSON.stringify(refused.codes));
      assert.match(refused.codes[0][2], /bytes to push/);
      assert.match(refused.codes[1][2], /10000 events/);
      assert.equal(refused.events, 200, "nothing of the refused batches is in the log");
      assert.equal(refused.notes, 200, "nor in the tables");

      // Batches that fit: 20 of 10 KB, then a small one, each pushed in bodies under the limit.
      const fits = Array.from({ length: 20 }, (_, i) => note(`fit-${i}`, 10_000, i));
      await ev(p, async (f) => {
        await S.logs.limits.append(f);
        await S.logs.limits.append({ stream: "small", type: "Created", data: { title: "small" } });
      }, fits);
      await serverAt(sync, log, 221);
      await synced(p, "limits", 221);
      const pushes = await sync.requestsByStatus("push");
      assert.equal(pushes["413"], undefined, `no push over the body limit: ${JSON.stringify(pushes)}`);
      assert.ok(pushes["200"] >= 9, `2.2 MB went in bodies of at most 256 KiB: ${JSON.stringify(pushes)}`);
      const server = (await sync.events(log)).events;
      assert.equal(new Set(server.map((e) => e.id)).size, 221);
      assert.equal(server.at(-1).stream, "small");
      assert.deepEqual(await uncaught(p), []);
    });
  } finally {
    await sync.stop();
  }
});

// ---- pages cut by bytes ----------------------------------------------------------------------

test("a fresh device pulls a log of large events in pages the server cuts by bytes, and settles", opts, async () => {
  const sync = await startSyncServer({ port: PORTS.bigPages, corsOrigin: pages.origin, pageBytes: 1 << 20 });
  const log = "big-pages";
  try {
    // 60 events of 200 KB (12 MB) pushed by another client; a page holds 5 of them.
    const events = Array.from({ length: 60 }, (_, i) => ({
      id: `0190c2a4-5e1f-7c3b-9a10-${String(i + 1).padStart(12, "0")}`,
      stream: `n-${i}`,
      type: "Created",
      data: { title: `${i}:${"x".repeat(200_000)}` },
      meta: null,
      time: 1_700_000_000_000 + i,
    }));
    for (let b = 0; b < 3; b++) {
      const res = await fetch(`${sync.url}/v1/logs/${log}/push`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ protocol: 1, batches: [{ client: "seeder", epoch: 1, batch: b + 1, expected: {}, events: events.slice(b * 20, b * 20 + 20) }] }),
      });
      assert.equal(res.status, 200, await res.text());
    }
    await withDevices(["big-pages"], async (dev) => {
      const p = await tab(dev);
      await open(p, "big", { url: sync.url, log, kind: "notes", live: false });
      const s = await ev(p, () => S.logs.big.sync.settled({ timeout: 60_000 }).then((x) => JSON.parse(JSON.stringify(x))), undefined, LONG);
      assert.equal(s.confirmed, 60, JSON.stringify(s));
      const v = await view(p, "big");
      assert.deepEqual(v.events.map((e) => e.id), events.map((e) => e.id));
      assert.equal(Object.keys(v.tables.notes).length, 60);
      const pulls = (await sync.requestsByStatus("events"))["200"];
      assert.ok(pulls >= 12, `12 MB in pages of 1 MiB: ${pulls} pulls`);
    });
  } finally {
    await sync.stop();
  }
});

test("a live tail refused at the server's cap (503 TOO_MANY_TAILS, Retry-After: 5) waits that long before it asks again", opts, async () => {
  const sync = await startSyncServer({ port: PORTS.tailCap, corsOrigin: pages.origin, args: ["--max-tails-per-log", "1"] });
  const log = "capped";
  const refused = async () => {
    const text = await (await fetch(`${sync.url}/metrics`)).text();
    return text
      .split("\n")
      .filter((l) => l.startsWith("logfold_live_tails_refused_total"))
      .reduce((n, l) => n + Number(l.split(" ").at(-1)), 0);
  };
  try {
    await withDevices(["cap-a", "cap-b"], async (a, b) => {
      await open(await tab(a), "first", { url: sync.url, log, kind: "notes" });
      await until("the first device's tail open", async () => (await (await fetch(`${sync.url}/metrics`)).text()).match(/^logfold_live_tails (\d+)/m)?.[1], (n) => n === "1", LONG);
      await open(await tab(b), "second", { url: sync.url, log, kind: "notes" });
      // When the second device's tail is refused: the first two refusals, 100 ms apart at most.
      const times = [];
      let seen = await refused();
      for (const deadline = Date.now() + 20_000; times.length < 2 && Date.now() < deadline; await sleep(100)) {
        const n = await refused();
        if (n > seen) times.push(Date.now());
        seen = n;
      }
      assert.equal(times.length, 2, "the tail was refused, then asked again");
      // Without Retry-After the backoff starts at 0.5-1.5 s.
      assert.ok(times[1] - times[0] >= 4_500, `asked again after ${times[1] - times[0]} ms`);
    });
  } finally {
    await sync.stop();
  }
});

// ---- a server that is not the log it was --------------------------------------------------

test("a server whose database was wiped or replaced: DIVERGED, nothing pushed into it, never a silent settled; another sync.log is refused", opts, async () => {
  const log = "diverged";
  let sync = await startSyncServer({ port: PORTS.diverged, corsOrigin: pages.origin });
  const cfg = { url: sync.url, log, kind: "notes" };
  const note = (i) => ({ stream: `n-${i}`, type: "Created", data: { title: `note ${i}` } });
  try {
    await withDevices(["diverged"], async (dev) => {
      const p = await tab(dev);
      await open(p, "notes", cfg);
      await appendAll(p, "notes", [1, 2, 3, 4, 5].map(note), 1);
      await synced(p, "notes", 5);
      await serverAt(sync, log, 5);

      // The database is wiped: a new, empty one behind the same URL.
      await sync.stop();
      sync = await startSyncServer({ port: PORTS.diverged, corsOrigin: pages.origin });
      await appendAll(p, "notes", [note(6)], 1);
      const settled = ev(p, () => S.logs.notes.sync.settled({ timeout: 60_000 }).then(() => "settled", (e) => [e.code, e.message]), undefined, LONG);
      await ev(p, () => S.logs.notes.sync.now(), undefined, LONG);
      const [code, message] = await settled;
      assert.equal(code, "DIVERGED", message);
      assert.match(message, /ends at 0, but 5 events are confirmed/);
      const s = await status(p, "notes");
      assert.equal(s.state, "error", JSON.stringify(s));
      assert.equal(s.lastError.code, "DIVERGED");
      assert.equal(s.pending, 1, "the new event stays pending");
      assert.equal(await sync.head(log), 0, "nothing was pushed into the other log");

      // Another database that does hold a log of that name (with more events): its identity
      // is not the one recorded.
      await sync.stop();
      sync = await startSyncServer({ port: PORTS.diverged, corsOrigin: pages.origin });
      const foreign = Array.from({ length: 8 }, (_, i) => ({ id: `0190c2a4-5e1f-7c3b-9a10-${String(i).padStart(12, "0")}`, stream: "x", type: "Created", data: { title: "foreign" }, meta: null, time: 1 }));
      const seeded = await fetch(`${sync.url}/v1/logs/${log}/push`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ protocol: 1, batches: [{ client: "elsewhere", epoch: 1, batch: 1, expected: {}, events: foreign }] }),
      });
      assert.equal(seeded.status, 200, await seeded.text());
      await ev(p, () => S.logs.notes.sync.resume());
      const s2 = await until("DIVERGED by identity", () => status(p, "notes"), (x) => x.lastError?.code === "DIVERGED" && /another identity/.test(x.lastError.message), 60_000, 100);
      assert.equal(s2.pending, 1, JSON.stringify(s2));
      assert.equal(await sync.head(log), 8, "still only the foreign events");
      const tables = await ev(p, () => S.tables("notes"));
      assert.deepEqual(Object.keys(tables.notes).sort(), ["n-1", "n-2", "n-3", "n-4", "n-5", "n-6"], "the tables show this log, not the foreign one");

      // The same local log opened to sync with another server log: refused.
      await reload(p);
      const refused = await ev(p, ([url]) => window.Logfold.open({ name: "notes", sync: { url, log: "another-log" } }).then(() => null, (e) => [e.code, e.details?.argument, e.message]), [sync.url]);
      assert.deepEqual(refused?.slice(0, 2), ["INVALID_ARGUMENT", "sync.log"], JSON.stringify(refused));
      assert.match(refused[2], /syncs with server log "diverged"/);
      assert.deepEqual(await uncaught(p), []);
    });
  } finally {
    await sync.stop();
  }
});

// ---- history written without sync ----------------------------------------------------------

test("a tab that has the log open without sync when another tab syncs it: its next append is CLOSED (synced), nothing written; reopened, it converges", opts, async () => {
  const sync = await startSyncServer({ port: PORTS.tabSynced, corsOrigin: pages.origin });
  const log = "tab-synced";
  const notes = { notes: { key: "stream", on: { Created: { set: { title: "data.title", edits: 0 } }, Edited: { set: { title: "data.title" }, count: "edits" } } } };
  const note = (i) => ({ stream: `n-${i}`, type: "Created", data: { title: `note ${i}` } });
  try {
    await withDevices(["tab-synced"], async (dev) => {
      const plain = await tab(dev);
      const syncing = await tab(dev);
      await ev(plain, async ([projections, events]) => {
        window.A = await window.Logfold.open({ name: "tab-synced", projections, onClose: (r) => (window.closedWith = r) });
        await window.A.append(events);
      }, [notes, [note(1), note(2)]]);
      await open(syncing, log, { url: sync.url, log, kind: "notes" });
      await synced(syncing, log, 2);

      const refused = await ev(plain, (e) => window.A.append(e).then(() => "appended", (err) => [err.code, err.details?.reason, window.closedWith]), note(3));
      assert.deepEqual(refused, ["CLOSED", "synced", "synced"]);
      await sleep(1500);
      assert.equal(await sync.head(log), 2, "nothing of the refused append reached the server");
      assert.equal((await view(syncing, log)).events.length, 2, "nor the log");

      // Opened again (without sync options: the log stays synced), its append goes to the
      // outbox, the leader tab pushes it, and both tabs show the same log and table.
      const appended = await ev(plain, async ([projections, e]) => {
        window.A = await window.Logfold.open({ name: "tab-synced", projections });
        const stored = await window.A.append(e);
        return stored.id;
      }, [notes, note(3)]);
      await serverAt(sync, log, 3);
      await synced(syncing, log, 3);
      const server = (await sync.events(log)).events;
      assert.deepEqual(server.map((e) => e.stream), ["n-1", "n-2", "n-3"]);
      assert.equal(server[2].id, appended);
      const seen = await until("the plain tab at 3 confirmed", () => ev(plain, async () => {
        const events = await window.A.read();
        return { events: events.map((e) => [e.seq, e.offset, e.id]), notes: [...window.A.table("notes").scan()].map((r) => [r.key, r.row.title]) };
      }), (v) => v.events.length === 3 && v.events.every((e) => e[1] === e[0]));
      assert.deepEqual(seen.events.map((e) => e[2]), server.map((e) => e.id));
      const b = await ev(syncing, (n) => [...S.logs[n].table("notes").scan()].map((r) => [r.key, r.row.title]), log);
      assert.deepEqual(seen.notes, b, "both tabs fold the same table");
      assert.deepEqual(await uncaught(plain), []);
    });
  } finally {
    await sync.stop();
  }
});

test("a tab's tables never lose its pending events for a moment while the leader tab confirms them", opts, async () => {
  const sync = await startSyncServer({ port: PORTS.frames, corsOrigin: pages.origin });
  try {
    await withDevices(["frames"], async (dev) => {
      const p = await tab(dev);
      const r = await ev(p, async ({ url }) => {
        const cfg = { url, log: "frames" };
        const leader = await Logfold.open({ name: "frames", projections: T.ledger(), sync: cfg });
        await leader.append({ stream: "acct-1", type: "Opened", data: { account: "acct-1", owner: "x" } });
        await leader.sync.settled({ timeout: 30_000 });
        const other = await Logfold.open({ name: "frames", projections: T.ledger(), sync: cfg });
        // Sampled between every two tasks (a MessageChannel loop is not clamped as timers
        // are): what a render of this tab could show at any frame.
        let floor = 0;
        let polling = true;
        const low = [];
        const samples = { n: 0 };
        const ch = new MessageChannel();
        ch.port1.onmessage = () => {
          const balance = other.table("accounts").get("acct-1")?.balance ?? 0;
          const total = other.state("total");
          samples.n++;
          if (balance < floor || total < floor) low.push({ balance, total, floor });
          if (polling) ch.port2.postMessage(0);
        };
        ch.port2.postMessage(0);
        for (let i = 1; i <= 30; i++) {
          await other.append({ stream: "acct-1", type: "Deposited", data: { account: "acct-1", amount: 1 } });
          floor = i;
          // Each confirmed before the next, so every one is a rebuild in this tab.
          await other.sync.settled({ timeout: 30_000 });
        }
        polling = false;
        return { low: low.slice(0, 5), lows: low.length, samples: samples.n, balance: other.table("accounts").get("acct-1").balance, leader: [leader.sync.status.leader, other.sync.status.leader] };
      }, { url: sync.url });
      assert.deepEqual(r.leader, [true, false]);
      assert.equal(r.balance, 30);
      assert.ok(r.samples > 100, `${r.samples} samples`);
      assert.equal(r.lows, 0, `the tab showed its pending deposits undone: ${JSON.stringify(r.low)}`);
    });
  } finally {
    await sync.stop();
  }
});

test("a tab without sync that appended just before another tab moved the log to sync leaves no false CORRUPT", opts, async () => {
  await withDevices(["stale-mark"], async (dev) => {
    const p = await tab(dev);
    const r = await ev(p, async (events) => {
      // The server is out of reach: the history stays in the outbox.
      const sync = { url: "http://127.0.0.1:47359", log: "stale-mark" };
      // An older build without sync, still open: its appends mark the head in localStorage,
      // the last of a run a second later.
      const plain = await Logfold.open({ name: "marked", projections: T.ledger() });
      await plain.append(events);
      const synced = await Logfold.open({ name: "marked", projections: T.ledger(), sync });
      const migrated = synced.stats().eventsMigrated;
      await new Promise((ok) => setTimeout(ok, 1500));
      await synced.close();
      await plain.close();
      const again = await T.attempt(async () => {
        const log = await Logfold.open({ name: "marked", projections: T.ledger(), sync });
        const out = { head: log.head, pending: log.sync.status.pending, events: (await T.readAll(log)).length };
        await log.close();
        return out;
      });
      return { migrated, again };
    }, await ledgerEvents(p, 30, 41));
    assert.equal(r.migrated, 30);
    assert.equal(r.again.threw, false, JSON.stringify(r.again));
    assert.deepEqual(r.again.value, { head: 0, pending: 30, events: 30 });
  });
});

test("logs used without sync, then opened with it, push their history: two devices converge", opts, async () => {
  const sync = await startSyncServer({ port: PORTS.history, corsOrigin: pages.origin });
  const log = "history";
  const cfg = { url: sync.url, log };
  try {
    await withDevices(["hist-a", "hist-b"], async (a, b) => {
      const pa = await tab(a);
      const pb = await tab(b);
      const local = (p, events) =>
        ev(p, async (events) => {
          const l = await Logfold.open({ name: "ledger", projections: T.ledger() });
          const out = await l.append(events);
          await l.close();
          return JSON.parse(JSON.stringify(out));
        }, events);
      const evA = await ledgerEvents(pa, 50, 31);
      const evB = (await ledgerEvents(pb, 60, 32)).slice(20);
      const histA = await local(pa, evA);
      const histB = await local(pb, evB);

      // Opened with sync while offline: the history is the outbox (provisional, pending).
      await a.context.setOffline(true);
      await b.context.setOffline(true);
      for (const [p, hist, n] of [[pa, histA, 50], [pb, histB, 40]]) {
        await open(p, "ledger", cfg);
        const v = await view(p, "ledger");
        assert.deepEqual(v.events.map((e) => e.id), hist.map((e) => e.id), "the history, in order, with its ids");
        assert.ok(v.events.every((e) => e.offset === null), "now pending");
        assert.equal(v.status.pending, n);
        assert.equal(v.stats.eventsMigrated, n);
        assert.deepEqual(v.tables, await model(p, hist));
      }
      await a.context.setOffline(false);
      await b.context.setOffline(false);
      await serverAt(sync, log, 90);
      await synced(pa, "ledger", 90);
      await synced(pb, "ledger", 90);
      const server = (await sync.events(log)).events;
      assertExactlyOnce(server, [...histA, ...histB].map((e) => e.id), "the two histories");
      const [va, vb] = [await view(pa, "ledger"), await view(pb, "ledger")];
      assertConfirmedLike(va.events, server, "device A");
      assertConfirmedLike(vb.events, server, "device B");
      const want = await model(pa, server);
      assert.deepEqual(va.tables, want);
      assert.deepEqual(vb.tables, want);

      // Reopened (with sync) after a reload: nothing is migrated or pushed again.
      await reload(pa);
      await open(pa, "ledger", cfg);
      await sleep(2000);
      const again = await view(pa, "ledger");
      assert.equal(again.stats.eventsMigrated, 0);
      assertConfirmedLike(again.events, server, "device A after a reload");
      assert.equal(await sync.head(log), 90);
    });
  } finally {
    await sync.stop();
  }
});

// ---- pause, resume, now ---------------------------------------------------------------------

test("pause() in any tab keeps appends pending in all, across a reload; resume() in any tab pushes them; now() ends the backoff at once", opts, async () => {
  const sync = await startSyncServer({ port: PORTS.control, corsOrigin: pages.origin });
  const log = "control";
  const cfg = { url: sync.url, log, live: false };
  try {
    await withDevices(["control"], async (dev) => {
      const t1 = await tab(dev);
      const t2 = await tab(dev);
      await open(t1, "ledger", cfg);
      await open(t2, "ledger", cfg);
      const [leader, other] = await oneLeader(t1, t2, "ledger");
      const events = await ledgerEvents(leader, 9, 41);
      const ids = [];

      // Paused in the tab that does not lead: the leader stops too, for every tab.
      const paused = await ev(other, () => { S.logs.ledger.sync.pause(); return S.status("ledger"); });
      assert.equal(paused.state, "paused");
      await until("the leader paused by the other tab", () => status(leader, "ledger"), (s) => s.state === "paused", 10_000, 100);
      ids.push(...(await appendAll(leader, "ledger", events.slice(0, 3), 1)).map((e) => e.id));
      ids.push(...(await appendAll(other, "ledger", events.slice(3, 4), 1)).map((e) => e.id));
      // A reloaded tab opens paused.
      await reload(other);
      assert.equal((await open(other, "ledger", cfg)).state, "paused");
      await sleep(5000);
      assert.equal(await sync.head(log), 0, "nothing pushed while paused");
      assert.equal((await status(leader, "ledger")).pending, 4);
      assert.equal((await status(other, "ledger")).leader, false, "a paused leader is not replaced");
      await ev(other, () => S.logs.ledger.sync.resume());
      await serverAt(sync, log, 4);
      await synced(leader, "ledger", 4);
      await synced(other, "ledger", 4);

      // The server goes down long enough for the backoff to grow; once it is back, now()
      // pushes in the round it waits for.
      await sync.kill();
      ids.push(...(await appendAll(leader, "ledger", events.slice(4, 6), 1)).map((e) => e.id));
      await until("several failed rounds", () => status(leader, "ledger"), (s) => s.lastError?.code === "NETWORK", 60_000);
      await sleep(8000);
      await sync.restart();
      const after = await ev(leader, async () => JSON.parse(JSON.stringify(await S.logs.ledger.sync.now())), undefined, LONG);
      assert.equal(await sync.head(log), 6, `now() resolved after a round that pushed: ${JSON.stringify(after)}`);
      assert.equal(after.pending, 0, JSON.stringify(after));
      assert.equal(after.lastError, null, JSON.stringify(after));

      // now() in the other tab asks the leader.
      ids.push(...(await appendAll(other, "ledger", events.slice(6, 8), 1)).map((e) => e.id));
      await ev(other, () => S.logs.ledger.sync.now(), undefined, LONG);
      await serverAt(sync, log, 8);

      // settled() right after an append resolves between rounds: the push confirms the outbox
      // before the round's pull has looked for newer events, while the state says "syncing".
      const settled = await ev(leader, async (e) => {
        const stored = await S.logs.ledger.append(e);
        return { id: stored.id, status: JSON.parse(JSON.stringify(await S.logs.ledger.sync.settled({ timeout: 60_000 }))) };
      }, events[8], LONG);
      ids.push(settled.id);
      assert.equal(settled.status.state, "online", JSON.stringify(settled.status));
      assert.deepEqual([settled.status.pending, settled.status.confirmed, settled.status.serverHead], [0, 9, 9]);
      assertExactlyOnce((await sync.events(log)).events, ids, "at the end");
    });
  } finally {
    await sync.stop();
  }
});

// ---- requests and transactions the sync loop spares ----------------------------------------

/** Counts, in the page, fetches per path end and readwrite transactions over the outbox. */
function countRequests() {
  const c = (window.counted = { fetch: {}, writes: 0 });
  if (window.counting) return true;
  window.counting = true;
  const fetch = window.fetch;
  window.fetch = function (url, init) {
    const end = String(url).split("?")[0].split("/").pop();
    window.counted.fetch[end] = (window.counted.fetch[end] ?? 0) + 1;
    return fetch.call(this, url, init);
  };
  const transaction = IDBDatabase.prototype.transaction;
  IDBDatabase.prototype.transaction = function (stores, mode, options) {
    if (mode === "readwrite" && [].concat(stores).includes("outbox")) window.counted.writes++;
    return transaction.call(this, stores, mode, options);
  };
  return c === window.counted;
}

test("offline, appends wait for the backoff instead of each trying the server; online, this tab's own pushes coming back on the live tail cost no transaction", opts, async () => {
  const sync = await startSyncServer({ port: PORTS.quiet, corsOrigin: pages.origin });
  const log = "quiet";
  const cfg = { url: sync.url, log };
  try {
    await withDevices(["quiet"], async (dev) => {
      const page = await tab(dev);
      await open(page, "ledger", cfg);
      await synced(page, "ledger", 0);
      const events = await ledgerEvents(page, 70, 83);

      // Online, with the live tail running: each append is one transaction, each push's
      // answer one more; the tail's copy of the pushed events and a pull after each push
      // would be two more per push.
      await sleep(1000);
      await ev(page, countRequests);
      const ids = (await appendAll(page, "ledger", events.slice(0, 30), 1)).map((e) => e.id);
      await synced(page, "ledger", 30);
      await sleep(2000); // the live tail's messages arrive
      const online = await ev(page, () => window.counted);
      const pushes = online.fetch.push ?? 0;
      assert.ok(pushes >= 1, JSON.stringify(online));
      assert.ok(online.writes <= 30 + pushes + 1, `transactions: 30 appends, ${pushes} push answers and no more than one other: ${JSON.stringify(online)}`);
      assert.ok((online.fetch.events ?? 0) <= 1, `no pull after each push: ${JSON.stringify(online)}`);

      // Offline: the appends go to the outbox without a request each.
      await sync.kill();
      await until("the tab to see the server gone", () => status(page, "ledger"), (s) => s.lastError?.code === "NETWORK", 60_000);
      await ev(page, countRequests);
      ids.push(...(await appendAll(page, "ledger", events.slice(30), 1)).map((e) => e.id));
      const offline = await ev(page, () => window.counted);
      const tries = Object.values(offline.fetch).reduce((a, b) => a + b, 0);
      assert.ok(tries <= 6, `40 offline appends, ${tries} requests: ${JSON.stringify(offline)}`);
      assert.equal((await status(page, "ledger")).pending, 40);

      await sync.restart();
      await ev(page, () => S.logs.ledger.sync.now(), undefined, LONG);
      await serverAt(sync, log, 70);
      await synced(page, "ledger", 70);
      assertExactlyOnce((await sync.events(log)).events, ids, "after the outage");
    });
  } finally {
    await sync.stop();
  }
});

test("two tabs appending to one synced log at once, paused then online: every event once, in one order both tabs and the server agree on", opts, async () => {
  const sync = await startSyncServer({ port: PORTS.twoWriters, corsOrigin: pages.origin });
  const log = "two-writers";
  const cfg = { url: sync.url, log };
  try {
    await withDevices(["two-writers"], async (dev) => {
      const t1 = await tab(dev);
      const t2 = await tab(dev);
      await open(t1, "ledger", cfg);
      await open(t2, "ledger", cfg);
      await oneLeader(t1, t2, "ledger");
      const events = await ledgerEvents(t1, 240, 97);
      // Each tab's memory of the outbox goes stale with every append of the other: a commit
      // placed from it must notice, write nothing, and place again from what is stored.
      const both = async (from) => {
        const [a, b] = await Promise.all([
          appendAll(t1, "ledger", events.slice(from, from + 60), 1),
          appendAll(t2, "ledger", events.slice(from + 60, from + 120), 1),
        ]);
        return [...a, ...b].map((e) => e.id);
      };
      await ev(t1, () => S.logs.ledger.sync.pause());
      const ids = await both(0);
      for (const t of [t1, t2]) {
        await until("both tabs to see 120 pending", () => status(t, "ledger"), (s) => s.pending === 120, 30_000);
        const v = await view(t, "ledger");
        assert.deepEqual(v.events.map((e) => e.seq), Array.from({ length: 120 }, (_, i) => i + 1), "provisional seqs dense");
        assert.deepEqual([...v.events.map((e) => e.id)].sort(), [...ids].sort(), "every appended event in the outbox once");
      }
      await ev(t1, () => S.logs.ledger.sync.resume());
      ids.push(...(await both(120)));
      await serverAt(sync, log, 240);
      await synced(t1, "ledger", 240);
      await synced(t2, "ledger", 240);
      const server = (await sync.events(log)).events;
      assertExactlyOnce(server, ids, "two writers");
      for (const t of [t1, t2]) {
        const v = await view(t, "ledger");
        assertConfirmedLike(v.events, server, "each tab");
        assert.deepEqual(v.tables, await model(t, server));
      }
    });
  } finally {
    await sync.stop();
  }
});

// ---- the browser killed mid-sync ------------------------------------------------------------

test("the browser SIGKILLed mid-sync and relaunched: its outbox survives and the server gets each event once", opts, async () => {
  const sync = await startSyncServer({ port: PORTS.browserKill, corsOrigin: pages.origin });
  const log = "browser-kill";
  const cfg = { url: sync.url, log };
  const total = 3000;
  const profile = await profileDir("sync-bkill");
  let dev = await launch(profile);
  try {
    const p = await tab(dev);
    const acked = new Set(); // ids whose append resolved, as the page reported them
    p.on("console", (m) => {
      const t = m.text();
      if (t.startsWith("acked ")) for (const id of t.slice(6).split(",")) acked.add(id);
    });
    await open(p, "ledger", cfg);
    await until("the tab leads", () => status(p, "ledger"), (s) => s.leader);
    await ev(p, (n) => {
      const events = T.ledgerEvents(n, 51);
      (async () => {
        for (let i = 0; i < events.length; i += 20) {
          const stored = await S.logs.ledger.append(events.slice(i, i + 20));
          console.log(`acked ${stored.map((e) => e.id).join(",")}`);
          await new Promise((r) => setTimeout(r, 10));
        }
      })();
      return true;
    }, total);
    const head = await until("the device mid-sync", () => sync.head(log), (h) => h > 0, 60_000, 20);
    await dev.kill();
    assert.ok(head < total, `killed mid-sync (server head ${head} of ${total})`);
    assert.ok(acked.size > 0);

    dev = await launch(await profileDir("sync-bkill", { fresh: false }));
    const q = await tab(dev);
    await open(q, "ledger", cfg);
    const local = await until("the relaunched tab to push its outbox", () => view(q, "ledger"), (v) => v.status.pending === 0 && v.events.length > 0 && v.status.confirmed === v.events.length, LONG);
    await serverAt(sync, log, local.events.length);
    await sleep(1000);
    const server = (await sync.events(log)).events;
    const ids = server.map((e) => e.id);
    assert.equal(new Set(ids).size, ids.length, "no event twice on the server");
    const missing = [...acked].filter((id) => !ids.includes(id));
    assert.deepEqual(missing, [], "every acknowledged append reached the server");
    assert.ok(server.length >= head, "the server lost nothing");
    const v = await view(q, "ledger");
    assertConfirmedLike(v.events, server, "the relaunched device");
    assert.deepEqual(v.tables, await model(q, server));
    assert.deepEqual(v.rejections, []);
  } finally {
    await dev.close();
    await sync.stop();
  }
});

// ---- a network that stops answering ---------------------------------------------------------

test("a black hole on the network: the hung push and the silent live tail are given up after sync.timeout; once it answers, the outbox is pushed and a new tail carries events", opts, async () => {
  // Keep-alive comments every second, so a tail that hears none for 3 s is dead.
  const sync = await startSyncServer({ port: PORTS.hang, corsOrigin: pages.origin, args: ["--keepalive", "1"] });
  const proxy = await startChaosProxy({ port: PORTS.hangProxy, target: PORTS.hang });
  const log = "hang";
  try {
    await withDevices(["hang-a", "hang-b"], async (a, b) => {
      const pa = await tab(a);
      const pb = await tab(b);
      const refused = await ev(pa, ([url, log]) => Promise.all([0, 99, -1, "3000", Infinity, null].map((timeout) =>
        window.Logfold.open({ name: "hang-bad", sync: { url, log, timeout } }).then(() => null, (e) => [e.code, e.details?.argument]))), [proxy.url, log]);
      assert.deepEqual(refused, Array(6).fill(["INVALID_ARGUMENT", "sync.timeout"]));
      await open(pa, "ledger", { url: proxy.url, log, timeout: 3000 });
      await open(pb, "ledger", { url: sync.url, log });
      const events = await ledgerEvents(pa, 7, 91);
      const ids = (await appendAll(pa, "ledger", events.slice(0, 2), 1)).map((e) => e.id);
      await synced(pa, "ledger", 2);
      await synced(pb, "ledger", 2);

      // Every connection from A now stays open and silent, the live tail's too.
      proxy.setHung(true);
      await ev(pa, countRequests);
      ids.push(...(await appendAll(pa, "ledger", events.slice(2, 4), 1)).map((e) => e.id));
      const stuck = await until("A gives up the hung push", () => status(pa, "ledger"), (s) => s.lastError?.code === "NETWORK" && s.state === "offline", LONG);
      assert.match(stuck.lastError.message, /no answer for \d+ ms/, JSON.stringify(stuck));
      assert.equal(stuck.pending, 2);
      // Silent for 3 s (three of the server's 1 s keep-alives): replaced well before the 45 s
      // a client that ignored the server's logfold-keepalive header would wait.
      await until("A replaces its silent live tail", () => ev(pa, () => window.counted.fetch.live ?? 0), (n) => n >= 1, 20_000);
      assert.ok(proxy.counts().swallowed > 0, JSON.stringify(proxy.counts()));
      assert.equal(await sync.head(log), 2, "nothing reached the server through the black hole");

      // The network answers again; the swallowed connections stay dead.
      proxy.setHung(false);
      await serverAt(sync, log, 4);
      await synced(pa, "ledger", 4);
      ids.push(...(await appendAll(pb, "ledger", events.slice(4, 5), 1)).map((e) => e.id));
      await synced(pa, "ledger", 5);
      await sleep(2000);
      // A's new tail is connected: B's next event reaches A on it, with no pull and no new tail.
      await ev(pa, countRequests);
      ids.push(...(await appendAll(pb, "ledger", events.slice(5), 1)).map((e) => e.id));
      await synced(pa, "ledger", 7);
      const counted = await ev(pa, () => window.counted);
      assert.deepEqual([counted.fetch.events ?? 0, counted.fetch.live ?? 0], [0, 0], JSON.stringify(counted));

      const server = (await sync.events(log)).events;
      assertExactlyOnce(server, ids, "after the black hole");
      assertConfirmedLike((await view(pa, "ledger")).events, server, "device A");
      assert.deepEqual(await uncaught(pa), []);
    });
  } finally {
    await proxy.close();
    await sync.stop();
  }
});

test("a big push of non-ASCII text on a slow uplink gets the time its bytes take, not its characters", opts, async () => {
  const sync = await startSyncServer({ port: PORTS.uplink, corsOrigin: pages.origin });
  const proxy = await startChaosProxy({ port: PORTS.uplinkProxy, target: PORTS.uplink });
  const log = "uplink";
  try {
    await withDevices(["uplink"], async (a) => {
      const pa = await tab(a);
      await open(pa, "notes", { url: proxy.url, log, kind: "notes", timeout: 1000 });
      // 40 titles of 2,000 CJK characters: about 86,000 characters of JSON in one push, and
      // 246,000 bytes, which take about 5 s at 48 kB/s. A grace counted in characters (2.7 s
      // at 32 per ms, plus the 1 s timeout) gives the push up every time; one counted in bytes
      // (7.7 s) lets it through.
      proxy.setUplink(48_000);
      const title = "日志折叠".repeat(500);
      const events = Array.from({ length: 40 }, (_, i) => ({ stream: `note-${i}`, type: "Created", data: { title } }));
      const ids = (await appendAll(pa, "notes", events, 40)).map((e) => e.id);
      const end = await until("notes: pushed, or the push given up", () => status(pa, "notes"), (st) => (st.pending === 0 && st.confirmed === 40) || st.lastError?.code === "NETWORK");
      assert.equal(end.lastError, null, `the push was given up: ${JSON.stringify(end)}`);
      assert.deepEqual([end.pending, end.confirmed], [0, 40]);
      const server = (await sync.events(log)).events;
      assertExactlyOnce(server, ids, "after the slow push");
      assert.ok(server.every((e) => e.data.title === title));
    });
  } finally {
    await proxy.close();
    await sync.stop();
  }
});

// ---- chaos between the browsers and the server -----------------------------------------------

test("chaos on the network (delays, cuts mid-request and mid-response, refusals, duplicated requests) while two devices append; clean again, both settle on the server's log exactly", opts, async () => {
  const sync = await startSyncServer({ port: PORTS.chaos, corsOrigin: pages.origin });
  const proxy = await startChaosProxy({ port: PORTS.chaosProxy, target: PORTS.chaos, seed: 7 });
  const log = "chaos";
  const cfg = { url: proxy.url, log };
  try {
    await withDevices(["chaos-a", "chaos-b"], async (a, b) => {
      const pa = await tab(a);
      const pb = await tab(b);
      await open(pa, "ledger", cfg);
      await open(pb, "ledger", cfg);
      const opened = [0, 1, 2, 3].map((i) => ({ stream: `acct-${i}`, type: "Opened", data: { account: `acct-${i}`, owner: `owner ${i}` } }));
      const first = await appendAll(pa, "ledger", opened, 4);
      await synced(pa, "ledger", 4);
      await synced(pb, "ledger", 4);

      proxy.setChaos(true);
      const [ra, rb] = await Promise.all([
        ev(pa, ([n, ms, seed]) => S.appendFor(n, ms, seed), ["ledger", 20_000, 11], LONG),
        ev(pb, ([n, ms, seed]) => S.appendFor(n, ms, seed), ["ledger", 20_000, 12], LONG),
      ]);
      proxy.setChaos(false);
      const drawn = proxy.counts();
      for (const f of ["refuse", "delay", "cutRequest", "cutResponse", "duplicate"]) assert.ok(drawn[f] > 0, `the proxy drew ${f}: ${JSON.stringify(drawn)}`);
      assert.ok(ra.batches.length > 20 && rb.batches.length > 20, `both appended: ${ra.batches.length}, ${rb.batches.length}`);

      // Clean again: both settle on the server's head, which no longer moves.
      const settled = async () => {
        const head = await sync.head(log);
        const [sa, sb] = [await status(pa, "ledger"), await status(pb, "ledger")];
        return { head, sa, sb };
      };
      await ev(pa, () => S.logs.ledger.sync.now());
      await ev(pb, () => S.logs.ledger.sync.now());
      const done = await until("both devices settled on the server's head", settled, ({ head, sa, sb }) =>
        [sa, sb].every((s) => s.pending === 0 && s.confirmed === head), LONG);
      await sleep(1000);
      assert.equal(await sync.head(log), done.head, "the server's head stayed");

      const server = (await sync.events(log)).events;
      const ids = server.map((e) => e.id);
      assert.equal(new Set(ids).size, ids.length, "no event twice on the server");
      server.forEach((e, i) => assert.equal(e.offset, i + 1, "server offsets dense"));
      const onServer = new Set(ids);
      const [va, vb] = [await view(pa, "ledger"), await view(pb, "ledger")];
      assertConfirmedLike(va.events, server, "device A");
      assertConfirmedLike(vb.events, server, "device B");
      const want = await model(pa, server);
      assert.deepEqual(va.tables, want, "A's tables are the fold of the server's log");
      assert.deepEqual(vb.tables, want, "B's tables are the fold of the server's log");

      // Every batch is on the server whole, or rejected on its own device (and heard there).
      let accepted = first.length;
      for (const [name, r, v, other] of [["A", ra, va, vb], ["B", rb, vb, va]]) {
        const rejected = new Map(v.rejections.map((x) => [x.events.map((e) => e.id).join(), x]));
        for (const batch of r.batches) {
          const stored = batch.filter((id) => onServer.has(id)).length;
          if (stored === batch.length) {
            accepted += stored;
            assert.ok(!rejected.has(batch.join()), `${name}: a batch on the server is also rejected`);
          } else {
            assert.equal(stored, 0, `${name}: a batch is partly on the server`);
            const rej = rejected.get(batch.join());
            assert.ok(rej, `${name}: a batch neither on the server nor rejected: ${batch}`);
            assert.ok(["conflict", "depends"].includes(rej.reason), `${name}: rejected as ${rej.reason}`);
            assert.ok(v.heard.some((h) => h.id === rej.id), `${name}: onRejected heard rejection ${rej.id}`);
          }
        }
        assert.equal(rejected.size, r.batches.filter((b) => !onServer.has(b[0])).length, `${name}: no other rejections`);
        const theirs = new Set(other.rejections.flatMap((x) => x.events.map((e) => e.id)));
        assert.ok(r.batches.flat().every((id) => !theirs.has(id)), `${name}'s rejections reached only ${name}`);
      }
      assert.equal(accepted, server.length, "the server holds only what the devices appended");
      console.log(`chaos: proxy ${JSON.stringify(drawn)}; appended ${ra.batches.length} + ${rb.batches.length} batches (refused at append ${ra.refused} + ${rb.refused}); rejected ${va.rejections.length} + ${vb.rejections.length}; server ${server.length} events`);
      assert.deepEqual(await uncaught(pa), []);
      assert.deepEqual(await uncaught(pb), []);
    });
  } finally {
    await proxy.close();
    await sync.stop();
  }
});
