// Damage in the browser (issue 15, part 2): each IndexedDB store of a log is damaged with raw
// IndexedDB calls while the log is closed (a flipped byte, a truncated value, a deleted record,
// a value of the wrong type), then the log is opened again. Each case checks what the README
// promises: the typed error and its details, or that the damage is harmlessly rebuilt; that
// `Logfold.repair` keeps exactly the prefix it reports; that a synced log pulls its lost
// confirmed events back from the real logfold-server; and that nothing wrong is read or pushed.
// A summary (`# damage` lines) counts cases and outcomes for the README's Reliability table.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, profileDir, launch, ev, pkgBuilt } from "./harness.mjs";
import { startSyncServer, serverBuilt, SERVER_BIN } from "./sync-server.mjs";

const PAGE_PORT = 47360;
const SYNC_PORT = 47361;
const DEAD_PORT = 47369; // nothing listens here: a synced log opened on it is offline
const opts = { timeout: 120_000 };

let pages, sync, browser, page;
const outcomes = []; // [store, damage, outcome] per finished case

before(async () => {
  assert.ok(pkgBuilt(), "pkg/ is not built: bash scripts/build");
  assert.ok(serverBuilt(), `no server binary at ${SERVER_BIN}`);
  pages = await startServer(PAGE_PORT);
  sync = await startSyncServer({ port: SYNC_PORT, corsOrigin: pages.origin });
  browser = await launch(await profileDir("damage"));
  page = await browser.newPage(pages.url);
  await ev(page, installDamage);
});

after(async () => {
  const counts = {};
  for (const [, , outcome] of outcomes) counts[outcome] = (counts[outcome] ?? 0) + 1;
  // The TAP reporter prints these as "# damage …" lines.
  console.log(`damage: ${outcomes.length} cases`);
  for (const [store, damage, outcome] of outcomes) console.log(`damage | ${store} | ${damage} | ${outcome}`);
  for (const [outcome, n] of Object.entries(counts)) console.log(`damage total | ${outcome} | ${n}`);
  await browser?.close();
  await sync?.stop();
  await pages?.close();
});

/** Page code: raw damage to one record, and what a reopened log shows. */
function installDamage() {
  if (window.D) return true;
  window.__warns = [];
  const warn = console.warn.bind(console);
  console.warn = (...a) => {
    window.__warns.push(a.map(String).join(" "));
    warn(...a);
  };
  const done = (tx) => new Promise((ok, fail) => { tx.oncomplete = ok; tx.onabort = () => fail(tx.error || new Error("aborted")); });
  const D = (window.D = {
    /** The value `v` damaged by `kind` (flip, truncate, wrongType), keeping what else it can. */
    damaged(v, kind) {
      if (v instanceof ArrayBuffer) {
        const bytes = new Uint8Array(v.slice(0));
        if (kind === "flip") {
          bytes[bytes.length >> 1] ^= 0xff;
          return bytes.buffer;
        }
        if (kind === "truncate") return bytes.slice(0, bytes.length >> 1).buffer;
        return "not bytes";
      }
      if (typeof v === "number") {
        if (kind === "flip") return v ^ 0xff;
        if (kind === "wrongType") return String(v); // the likeliest confusion: "30" for 30
      }
      if (typeof v === "string") {
        const i = v.length >> 1;
        if (kind === "flip") return v.slice(0, i) + String.fromCharCode(v.charCodeAt(i) ^ 0xff) + v.slice(i + 1);
        if (kind === "truncate") return v.slice(0, i);
        if (kind === "wrongType") return 12345;
      }
      if (v && typeof v === "object") {
        // A reducer snapshot { seq, state }: its state's low byte, or its last field gone.
        if (kind === "flip" && typeof v.state === "number") return { ...v, state: v.state ^ 0xff };
        if (kind === "truncate") {
          const out = { ...v };
          delete out[Object.keys(out).at(-1)];
          return out;
        }
        if (kind === "wrongType") return "not a snapshot";
      }
      throw new Error(`no ${kind} damage for ${Object.prototype.toString.call(v)}`);
    },
    /** Damages record `key` of `store` in log `name`'s database (the log must be closed). */
    async damage(name, store, key, kind) {
      const db = await T.rawOpen(name);
      try {
        const tx = db.transaction([store], "readwrite");
        const s = tx.objectStore(store);
        const v = await T.req(s.get(key));
        if (v === undefined) throw new Error(`no ${store} record ${JSON.stringify(key)}`);
        if (kind === "delete") s.delete(key);
        else s.put(D.damaged(v, kind), key);
        await done(tx);
        return true;
      } finally {
        db.close();
      }
    },
    async keys(name, store) {
      const db = await T.rawOpen(name);
      try {
        return await T.req(db.transaction([store], "readonly").objectStore(store).getAllKeys());
      } finally {
        db.close();
      }
    },
    /** What a log opened with `options` shows, or its open's error; closes it. */
    async view(name, options = {}, { settle = false, append = true } = {}) {
      window.__warns = [];
      let log;
      try {
        log = await Logfold.open({ name, projections: T.ledger(), verify: "full", ...options });
      } catch (e) {
        return { error: T.describe(e) };
      }
      try {
        if (settle) await log.sync.settled({ timeout: 30_000 });
        const events = await T.readAll(log);
        const versions = {};
        for (const s of ["acct-0", "acct-1", "acct-2", "acct-3"]) versions[s] = await log.version(s);
        const out = {
          events,
          versions,
          tables: T.tables(log),
          stats: log.stats(),
          head: log.head,
          rejections: log.sync ? await log.rejections() : [],
          status: log.sync ? JSON.parse(JSON.stringify(log.sync.status)) : null,
        };
        if (append) {
          // An append after the damage: its position and version must follow what is there.
          const next = await log.append({ stream: "acct-0", type: "Deposited", data: { account: "acct-0", amount: 1 } });
          out.next = { seq: next.seq, version: next.version };
        }
        out.warns = window.__warns.filter((w) => w.includes("logfold"));
        return out;
      } finally {
        await log.close();
      }
    },
  });
  return true;
}

const ACCOUNTS = ["acct-0", "acct-1", "acct-2", "acct-3"];
const versionsOf = (events) => Object.fromEntries(ACCOUNTS.map((s) => [s, events.filter((e) => e.stream === s).length]));
const model = (events) => ev(page, (events) => T.model(events), events);

/** Seeds unsynced log `name`: 30 ledger events in 6 appends (several segments) and snapshots. */
async function seed(name) {
  return ev(page, async (name) => {
    const log = await Logfold.open({ name, projections: T.ledger() });
    const events = T.ledgerEvents(30, 7, 4);
    for (let i = 0; i < 30; i += 5) await log.append(events.slice(i, i + 5));
    await log.snapshot();
    const stored = await T.readAll(log);
    await log.close();
    return { events: stored, segments: await D.keys(name, "segments"), snapshots: await D.keys(name, "snapshots") };
  }, name);
}

/** The log reads back as exactly `events` (folded into equal tables, right versions, next append after them). */
async function assertLog(v, events, what) {
  assert.ok(!v.error, `${what}: open failed: ${JSON.stringify(v.error)}`);
  assert.deepEqual(v.events, events, `${what}: the events read back`);
  assert.equal(v.head, events.length, `${what}: head`);
  assert.equal(T_canon(v.tables), T_canon(await model(events)), `${what}: tables equal the events folded by a plain model`);
  assert.deepEqual(v.versions, versionsOf(events), `${what}: stream versions`);
  if (v.next) assert.deepEqual(v.next, { seq: events.length + 1, version: versionsOf(events)["acct-0"] + 1 }, `${what}: the next append`);
}

function T_canon(x) {
  const sort = (v) => (Array.isArray(v) ? v.map(sort) : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort(v[k])])) : v);
  return JSON.stringify(sort(x));
}

function assertCorrupt(err, from, to, what) {
  assert.ok(err, `${what}: open succeeded on a damaged log`);
  assert.equal(err.code, "CORRUPT", `${what}: ${JSON.stringify(err)}`);
  assert.equal(err.isLogfoldError, true, `${what}: a LogfoldError`);
  assert.deepEqual({ from: err.details.from, to: err.details.to }, { from, to }, `${what}: positions: ${JSON.stringify(err.details)}`);
  assert.equal(typeof err.details.reason, "string");
}

/** CORRUPT for positions from..to, repair drops exactly from..head and the prefix reads back intact. */
async function corruptThenRepair(name, orig, from, to, what) {
  const raw = await ev(page, (name) => T.raw(name), name);
  const v = await ev(page, (name) => D.view(name), name);
  assertCorrupt(v.error, from, to, what);
  assert.deepEqual(await ev(page, (name) => T.raw(name), name), raw, `${what}: a refused open wrote nothing`);
  const rep = await ev(page, (name) => Logfold.repair(name), name);
  const head = orig.length;
  assert.deepEqual(rep, { head: from - 1, dropped: { from, to: Math.max(head, to) }, records: [] }, `${what}: the repair report`);
  const w = await ev(page, (name) => D.view(name), name);
  await assertLog(w, orig.slice(0, from - 1), `${what}, after repair`);
  return w;
}

// ---- an unsynced log ----------------------------------------------------------------------------

const KINDS = ["flip", "truncate", "delete", "wrongType"];

for (const kind of KINDS) {
  for (const which of ["middle", "last"]) {
    test(`segments: ${kind} in the ${which} segment → CORRUPT with its positions; repair keeps the prefix before it`, opts, async () => {
      const name = `seg-${kind}-${which}`;
      const { events, segments } = await seed(name);
      assert.ok(segments.length >= 4, `several segments: ${segments}`);
      const i = which === "last" ? segments.length - 1 : segments.length >> 1;
      const key = segments[i];
      const prev = segments[i - 1];
      await ev(page, (a) => D.damage(a.name, "segments", a.key, a.kind), { name, key, kind });
      // A deleted segment leaves a gap up to the next one's key (or the head).
      const to = kind === "delete" ? (segments[i + 1] ?? events.length) : key;
      const w = await corruptThenRepair(name, events, prev + 1, to, name);
      assert.ok(w.stats.snapshotsDiscarded >= 1, `snapshots past the repaired head are not used: ${JSON.stringify(w.stats)}`);
      outcomes.push(["segments", `${kind} (${which})`, "CORRUPT, repair keeps prefix"]);
    });
  }
}

// Without projections open reads from the stream versions' checkpoint, which a repair may leave
// past the new head: that open must rebuild the versions, not call the repaired log damaged.
test("a log without projections: damage in its last segment, repair, then open with verify: \"full\" works and the versions follow the prefix", opts, async () => {
  const r = await ev(page, async (name) => {
    const batch = (i) => Array.from({ length: 5 }, (_, j) => ({ stream: `s-${j}`, type: "Noted", data: { i } }));
    let log = await Logfold.open({ name });
    for (let i = 0; i < 6; i++) await log.append(batch(i));
    await log.close(); // the checkpoint is at the head, 30
    const segments = await D.keys(name, "segments");
    await D.damage(name, "segments", segments.at(-1), "flip");
    const refused = await T.attempt(() => Logfold.open({ name, verify: "full" }));
    const report = await Logfold.repair(name);
    const reopened = await T.attempt(async () => {
      log = await Logfold.open({ name, verify: "full" });
      const out = { head: log.head, version: await log.version("s-0"), next: (await log.append(batch(6)))[0] };
      await log.close();
      return { ...out, next: { seq: out.next.seq, version: out.next.version } };
    });
    return { segments, refused, report, reopened };
  }, "noproj-repair");
  const keep = r.segments.at(-2);
  assert.equal(r.refused.code, "CORRUPT", JSON.stringify(r.refused));
  assert.deepEqual(r.report, { head: keep, dropped: { from: keep + 1, to: 30 }, records: [] });
  assert.equal(r.reopened.threw, false, `the repaired log opens: ${JSON.stringify(r.reopened)}`);
  assert.deepEqual(r.reopened.value, { head: keep, version: keep / 5, next: { seq: keep + 1, version: keep / 5 + 1 } });
  outcomes.push(["segments (no projections)", "flip (last)", "CORRUPT, repair keeps prefix"]);
});

// By default open reads from the oldest snapshot or checkpoint it needs (here the last segment)
// and checks the segments before after it returns: damage there comes through log.verified.
for (const kind of KINDS) {
  test(`segments: ${kind} in the middle segment, opened without verify: "full" → open works from the snapshot, log.verified and onCorrupt report CORRUPT`, opts, async () => {
    const name = `seg-bg-${kind}`;
    const { events, segments } = await seed(name);
    const i = segments.length >> 1;
    await ev(page, (a) => D.damage(a.name, "segments", a.key, a.kind), { name, key: segments[i], kind });
    const r = await ev(page, async (name) => {
      const seen = [];
      const log = await Logfold.open({ name, projections: T.ledger(), onCorrupt: (e) => seen.push(e.code) });
      try {
        const tables = T.tables(log);
        const head = log.head;
        const verified = await log.verified;
        const tail = await T.attempt(() => log.read({ after: head - 1 }));
        const early = await T.attempt(() => log.read());
        return { tables, head, verified: { code: verified?.code, details: verified?.details }, seen, replayed: log.stats().eventsReplayed, tail: tail.value?.length, early: early.code };
      } finally {
        await log.close();
      }
    }, name);
    const to = kind === "delete" ? segments[i + 1] : segments[i];
    assert.equal(r.head, events.length);
    assert.equal(T_canon(r.tables), T_canon(await model(events)), "the tables, from the snapshot");
    assert.equal(r.replayed, 0, "nothing folded: the snapshot is at the head");
    assert.equal(r.verified.code, "CORRUPT", JSON.stringify(r));
    assert.deepEqual([r.verified.details.from, r.verified.details.to], [segments[i - 1] + 1, to]);
    assert.deepEqual(r.seen, ["CORRUPT"]);
    assert.equal(r.tail, 1, "the tail reads");
    assert.equal(r.early, "CORRUPT", "a read of the damaged part is refused");
    outcomes.push(["segments", `${kind} (middle), background check`, "open works, CORRUPT via log.verified"]);
  });
}

for (const [key, kind, expect] of [
  ["head", "flip", "corrupt"],
  ["head", "delete", "corrupt"],
  ["head", "wrongType", "corrupt"],
  ["format", "flip", "unsupported"],
  ["format", "delete", "harmless"],
  ["format", "wrongType", "unsupported"],
  ["clientId", "flip", "harmless"],
  ["clientId", "delete", "harmless"],
  ["clientId", "wrongType", "harmless"],
  // The stream versions' checkpoint and digest: the streams store is rebuilt from the segments.
  // A checkpoint missing or unreadable is taken as the head (as logs from before it had), which
  // the seed's checkpoint is: the digest matches. A missing digest is a log from before it: the
  // store is taken as it is.
  ["streamsThrough", "flip", "rebuilt"],
  ["streamsThrough", "delete", "harmless"],
  ["streamsThrough", "wrongType", "harmless"],
  ["streamsCheck", "flip", "rebuilt"],
  ["streamsCheck", "delete", "harmless"],
  ["streamsCheck", "wrongType", "rebuilt"],
]) {
  test(`meta.${key}: ${kind} → ${expect}`, opts, async () => {
    const name = `meta-${key}-${kind}`;
    const { events } = await seed(name);
    await ev(page, (a) => D.damage(a.name, "meta", a.key, a.kind), { name, key, kind });
    if (expect === "harmless" || expect === "rebuilt") {
      const v = await ev(page, (name) => D.view(name), name);
      await assertLog(v, events, name);
      assert.equal(v.stats.streamsRebuilt, expect === "rebuilt" ? 1 : 0, `${name}: streams store rebuilt at open`);
      outcomes.push(["meta", `${key} ${kind}`, expect === "rebuilt" ? "streams rebuilt, harmless" : "harmless"]);
    } else if (expect === "unsupported") {
      const v = await ev(page, (name) => D.view(name), name);
      assert.equal(v.error?.code, "UNSUPPORTED_FORMAT", `${name}: ${JSON.stringify(v.error)}`);
      assert.equal(typeof v.error.details.format, "number");
      outcomes.push(["meta", `${key} ${kind}`, "UNSUPPORTED_FORMAT"]);
    } else {
      // A head that disagrees with the segments: CORRUPT past the last segment; repair keeps all events.
      const v = await ev(page, (name) => D.view(name), name);
      assert.equal(v.error?.code, "CORRUPT", `${name}: ${JSON.stringify(v.error)}`);
      assert.equal(v.error.details.from, events.length + 1, JSON.stringify(v.error.details));
      const rep = await ev(page, (name) => Logfold.repair(name), name);
      assert.equal(rep.head, events.length, JSON.stringify(rep));
      await assertLog(await ev(page, (name) => D.view(name), name), events, `${name} after repair`);
      outcomes.push(["meta", `${key} ${kind}`, "CORRUPT, repair keeps all"]);
    }
  });
}

for (const target of ["table", "reducer"]) {
  for (const kind of KINDS) {
    test(`snapshots: ${kind} of the ${target} snapshot → not used, rebuilt from the log`, opts, async () => {
      const name = `snap-${target}-${kind}`;
      const { events, snapshots } = await seed(name);
      const key = snapshots.find((k) => k.startsWith(`${target}:`));
      assert.ok(key, `a ${target} snapshot: ${snapshots}`);
      await ev(page, (a) => D.damage(a.name, "snapshots", a.key, a.kind), { name, key, kind });
      const v = await ev(page, (name) => D.view(name), name);
      await assertLog(v, events, name);
      assert.equal(v.stats.projectionsRebuilt, 1, `${name}: one projection folded from the start: ${JSON.stringify(v.stats)}`);
      assert.equal(v.stats.snapshotsLoaded, 1, `${name}: the other snapshot is used`);
      if (kind !== "delete") assert.equal(v.stats.snapshotsDiscarded, 1, `${name}: discarded: ${JSON.stringify(v.stats)}`);
      if (kind !== "delete") assert.ok(v.warns.some((w) => w.includes("not used")), `${name}: a warning: ${v.warns}`);
      outcomes.push(["snapshots", `${target} ${kind}`, "discarded, rebuilt"]);
    });
  }
}

// ---- a synced log -------------------------------------------------------------------------------

/**
 * Device A of server log `log`: 20 events of its own in 4 appends, confirmed; one from device B,
 * pulled; one batch the server rejected (an expectation B's event broke); one pending batch,
 * appended offline. Resolves to A's stored keys and the server log.
 */
async function syncedSeed(id) {
  const a = { A: `sa-${id}`, B: `sb-${id}`, log: `srv-${id}`, url: sync.url, dead: `http://127.0.0.1:${DEAD_PORT}` };
  const seeded = await ev(page, async ({ A, B, log, url, dead }) => {
    const open = (name, u) => Logfold.open({ name, projections: T.ledger(), sync: { url: u, log } });
    const events = T.ledgerEvents(20, 3, 4);
    let a = await open(A, url);
    for (let i = 0; i < 20; i += 5) await a.append(events.slice(i, i + 5));
    await a.sync.settled({ timeout: 30_000 });
    const v = await a.version("acct-0");
    await a.close();
    const b = await open(B, url);
    await b.sync.settled({ timeout: 30_000 });
    await b.append({ stream: "acct-0", type: "Deposited", data: { account: "acct-0", amount: 5 } });
    await b.sync.settled({ timeout: 30_000 });
    await b.close();
    a = await open(A, dead);
    await a.append({ stream: "acct-0", type: "Withdrawn", data: { account: "acct-0", amount: 3 } }, { expectedVersion: v });
    await a.close();
    a = await open(A, url);
    await a.sync.settled({ timeout: 30_000 });
    const rejections = await a.rejections();
    await a.close();
    a = await open(A, dead);
    const pending = await a.append({ stream: "acct-1", type: "Deposited", data: { account: "acct-1", amount: 7 } });
    const local = await T.readAll(a);
    await a.close();
    return { rejections, pending, local, segments: await D.keys(A, "segments"), outbox: await D.keys(A, "outbox"), rejectionKeys: await D.keys(A, "rejections") };
  }, a);
  assert.equal(seeded.rejections.length, 1, JSON.stringify(seeded.rejections));
  assert.equal(seeded.rejections[0].reason, "conflict");
  assert.equal(seeded.outbox.length, 1);
  assert.equal(seeded.local.length, 22);
  assert.equal(await sync.head(a.log), 21);
  return { ...a, ...seeded };
}

const wire = (e) => ({ id: e.id, stream: e.stream, type: e.type, data: e.data, offset: e.offset });
const openA = (s, opt = {}) => ev(page, (a) => D.view(a.A, { sync: { url: a.url, log: a.log } }, a.opt), { A: s.A, url: s.url, log: s.log, opt });

/** A synced log that opened: its events and tables equal the server's, pending batch pushed once. */
async function assertLikeServer(s, v, what) {
  assert.ok(!v.error, `${what}: open failed: ${JSON.stringify(v.error)}`);
  const server = await sync.events(s.log);
  assert.equal(server.head, 22, `${what}: the server holds its 21 events and the pending one, once`);
  assert.deepEqual(v.events.map(wire), server.events.map(wire), `${what}: the events equal the server's`);
  assert.equal(T_canon(v.tables), T_canon(await model(server.events)), `${what}: tables equal the server's events folded`);
  assert.deepEqual(v.versions, versionsOf(server.events), `${what}: stream versions`);
  assert.equal(server.events.filter((e) => e.id === s.pending.id).length, 1, `${what}: the pending event pushed once`);
}

for (const kind of KINDS) {
  test(`synced segments: ${kind} in a confirmed segment → CORRUPT; repair, then the lost events come back from the server`, opts, async () => {
    const s = await syncedSeed(`seg-${kind}`);
    const i = s.segments.length >> 1;
    const key = s.segments[i];
    const prev = s.segments[i - 1];
    await ev(page, (a) => D.damage(a.A, "segments", a.key, a.kind), { A: s.A, key, kind });
    const v = await openA(s, { append: false });
    // A deleted segment leaves a gap up to the next one's key (or the head).
    assertCorrupt(v.error, prev + 1, kind === "delete" ? (s.segments[i + 1] ?? 21) : key, s.A);
    const rep = await ev(page, (name) => Logfold.repair(name), s.A);
    assert.deepEqual(rep, { head: prev, dropped: { from: prev + 1, to: 21 }, records: [] }, `${s.A}: repair report`);
    const w = await openA(s, { settle: true, append: false });
    await assertLikeServer(s, w, s.A);
    assert.equal(w.rejections.length, 1, `${s.A}: the rejection is kept`);
    assert.ok(w.stats.eventsPulled >= 21 - prev, `${s.A}: the dropped events were pulled: ${JSON.stringify(w.stats)}`);
    outcomes.push(["segments (synced)", kind, "CORRUPT, repair, pulled back"]);
  });
}


/**
 * Open fails with CORRUPT naming the record (`details.store`, `details.key`, no positions), and
 * for a while after nothing reaches the server; repair drops it (`records` says so) and the log
 * opens again with its confirmed events and syncs.
 */
async function corruptRecord(s, store, key, dropped) {
  const v = await openA(s, { append: false });
  assert.equal(v.error?.code, "CORRUPT", `${s.A}: ${JSON.stringify(v.error ?? v.status)}`);
  assert.equal(v.error.isLogfoldError, true);
  assert.deepEqual({ store: v.error.details.store, key: v.error.details.key, from: v.error.details.from, to: v.error.details.to }, { store, key, from: 0, to: 0 }, `${s.A}: the details name the record`);
  await new Promise((r) => setTimeout(r, 1500));
  const server = await sync.events(s.log);
  assert.equal(server.head, 21, `${s.A}: nothing pushed`);
  const rep = await ev(page, (name) => Logfold.repair(name), s.A);
  assert.deepEqual(rep, { head: 21, dropped: null, records: [dropped] }, `${s.A}: the repair report`);
  const again = await openA(s, { settle: true, append: false });
  assert.ok(!again.error, `${s.A}: after repair the log opens: ${JSON.stringify(again.error)}`);
  assert.deepEqual(again.events.slice(0, 21), s.local.slice(0, 21), `${s.A}: the confirmed events are kept`);
  return `CORRUPT (${store} ${key}), nothing pushed; repair drops ${dropped}, the log opens`;
}

for (const store of ["outbox", "rejections"]) {
  for (const kind of ["flip", "truncate", "wrongType"]) {
    test(`synced ${store}: ${kind} of its record → CORRUPT at open, nothing pushed`, opts, async () => {
      const s = await syncedSeed(`${store}-${kind}`);
      const key = (store === "outbox" ? s.outbox : s.rejectionKeys)[0];
      await ev(page, (a) => D.damage(a.A, a.store, a.key, a.kind), { A: s.A, store, key, kind });
      outcomes.push([`${store} (synced)`, kind, await corruptRecord(s, store, key, `${store} ${key}`)]);
    });
  }
}

test("synced outbox: the pending batch's record deleted → CORRUPT at open (meta.outboxCheck), nothing pushed; repair reports it lost", opts, async () => {
  const s = await syncedSeed("outbox-delete");
  await ev(page, (a) => D.damage(a.A, "outbox", a.key, "delete"), { A: s.A, key: s.outbox[0] });
  outcomes.push(["outbox (synced)", "delete", await corruptRecord(s, "outbox", 0, "outbox: 1 missing")]);
  const v = await openA(s, { settle: true, append: false });
  assert.deepEqual(v.events, s.local.slice(0, 21), "the confirmed events are intact; the lost batch is gone");
  assert.equal(v.status.pending, 0);
});

test("synced rejections: the record deleted → the notice is gone; the log and the server are intact", opts, async () => {
  const s = await syncedSeed("rejections-delete");
  await ev(page, (a) => D.damage(a.A, "rejections", a.key, "delete"), { A: s.A, key: s.rejectionKeys[0] });
  const v = await openA(s, { settle: true, append: false });
  await assertLikeServer(s, v, s.A);
  assert.deepEqual(v.rejections, []);
  outcomes.push(["rejections (synced)", "delete", "notice lost; log intact, syncs"]);
});

// A missing outboxCheck is taken for a log from before it: not checked until the outbox changes.
for (const [key, kind] of [["synced", "delete"], ["clientId", "delete"], ["syncLog", "delete"], ["ackedThrough", "delete"], ["epoch", "delete"], ["outboxRev", "delete"], ["outboxCheck", "delete"]]) {
  test(`synced meta.${key}: ${kind} → harmless: the log syncs and equals the server's`, opts, async () => {
    const s = await syncedSeed(`meta-${key}-${kind}`);
    await ev(page, (a) => D.damage(a.A, "meta", a.key, a.kind), { A: s.A, key, kind });
    const v = await openA(s, { settle: true, append: false });
    await assertLikeServer(s, v, s.A);
    assert.equal(v.rejections.length, 1, "the rejection is kept");
    outcomes.push(["meta (synced)", `${key} ${kind}`, "harmless, syncs"]);
  });
}

test("synced meta.nextBatch: delete → CORRUPT at open (the outbox's batch numbers no longer fit), nothing pushed", opts, async () => {
  const s = await syncedSeed("meta-nextBatch-delete");
  await ev(page, (a) => D.damage(a.A, "meta", "nextBatch", "delete"), { A: s.A });
  outcomes.push(["meta (synced)", "nextBatch delete", await corruptRecord(s, "outbox", 0, "meta nextBatch")]);
});

test("synced meta.head: flip → CORRUPT past the segments; repair keeps every event; sync goes on", opts, async () => {
  const s = await syncedSeed("meta-head-flip");
  await ev(page, (a) => D.damage(a.A, "meta", "head", "flip"), { A: s.A });
  const v = await openA(s, { append: false });
  assertCorrupt(v.error, 22, 21 ^ 0xff, s.A);
  assert.deepEqual(await ev(page, (name) => Logfold.repair(name), s.A), { head: 21, dropped: { from: 22, to: 21 ^ 0xff }, records: [] });
  await assertLikeServer(s, await openA(s, { settle: true, append: false }), s.A);
  outcomes.push(["meta (synced)", "head flip", "CORRUPT, repair keeps all, syncs"]);
});

test("synced meta.serverLog: flip → DIVERGED (another server log's identity), nothing pushed", opts, async () => {
  const s = await syncedSeed("meta-serverLog-flip");
  await ev(page, (a) => D.damage(a.A, "meta", "serverLog", "flip"), { A: s.A });
  const r = await ev(page, async (a) => {
    const log = await Logfold.open({ name: a.A, projections: T.ledger(), sync: { url: a.url, log: a.log } });
    try {
      return { settled: await T.attempt(() => log.sync.settled({ timeout: 20_000 })), pending: log.sync.status.pending };
    } finally {
      await log.close();
    }
  }, { A: s.A, url: s.url, log: s.log });
  assert.equal(r.settled.code, "DIVERGED", JSON.stringify(r.settled));
  assert.equal(r.pending, 1, "the pending batch is kept");
  assert.equal(await sync.head(s.log), 21, "nothing pushed");
  outcomes.push(["meta (synced)", "serverLog flip", "DIVERGED, nothing pushed"]);
});

// ---- streams ---------------------------------------------------------------------------------
// The streams store is a cache of stream versions as of meta.streamsThrough, checked at open
// against its digest meta.streamsCheck; a damaged record makes open rebuild it from the segments.
test("streams: two tabs appending, checkpointing and compacting keep the digest true (no rebuild)", opts, async () => {
  const r = await ev(page, async (name) => {
    const a = await Logfold.open({ name, projections: T.ledger() });
    const b = await Logfold.open({ name, projections: T.ledger() });
    const fresh = a.stats().streamsRebuilt + b.stats().streamsRebuilt;
    const events = T.ledgerEvents(60, 11, 9);
    for (let i = 0; i < 60; i += 6) {
      await (i % 12 ? a : b).append(events.slice(i, i + 6));
      if (i % 18 === 0) await (i % 12 ? b : a).compact();
    }
    await a.close();
    await b.close();
    const c = await Logfold.open({ name, projections: T.ledger() });
    const versions = {};
    for (let i = 0; i < 9; i++) versions[`acct-${i}`] = await c.version(`acct-${i}`);
    const out = { fresh, rebuilt: c.stats().streamsRebuilt, versions, stored: await T.readAll(c) };
    await c.close();
    return out;
  }, "streams-digest-kept");
  const expected = {};
  for (const e of r.stored) expected[e.stream] = (expected[e.stream] ?? 0) + 1;
  for (let i = 0; i < 9; i++) expected[`acct-${i}`] ??= 0;
  assert.equal(r.stored.length, 60);
  assert.deepEqual(r.versions, expected);
  assert.equal(r.fresh, 0, "a new log's empty streams store matches its digest");
  assert.equal(r.rebuilt, 0, "an undamaged streams store matches its digest");
});

test("streams: a log that becomes synced keeps a true digest (no rebuild at its opens)", opts, async () => {
  const r = await ev(page, async ({ name, dead }) => {
    const opened = [];
    let log = await Logfold.open({ name, projections: T.ledger() });
    await log.append(T.ledgerEvents(12, 5, 3));
    opened.push(log.stats());
    await log.close();
    for (let i = 0; i < 2; i++) {
      log = await Logfold.open({ name, projections: T.ledger(), sync: { url: dead, log: "never" } });
      opened.push(log.stats());
      await log.close();
    }
    return opened.map((s) => [s.eventsMigrated, s.streamsRebuilt]);
  }, { name: "streams-digest-synced", dead: `http://127.0.0.1:${DEAD_PORT}` });
  assert.deepEqual(r, [[0, 0], [12, 0], [0, 0]], "[events migrated, streams rebuilt] at each open");
});

for (const kind of ["flip", "delete", "wrongType"]) {
  test(`streams: ${kind} of a stream's version → rebuilt at open, the right version is used`, opts, async () => {
    const name = `find-streams-${kind}`;
    const { events } = await seed(name);
    await ev(page, (a) => D.damage(a.name, "streams", "acct-0", a.kind), { name, kind });
    // Before anything else is appended: does an expectation of "no events" pass on a stream of 8?
    const none = await ev(page, async (name) => {
      const log = await Logfold.open({ name });
      try {
        const r = await T.attempt(() => log.append({ stream: "acct-0", type: "Deposited", data: { account: "acct-0", amount: 1 } }, { expectedVersion: "none" }));
        return { ...r, rebuilt: log.stats().streamsRebuilt };
      } finally {
        await log.close();
      }
    }, name);
    assert.equal(none.code, "CONFLICT", `an expectation of no events on a stream with events: ${JSON.stringify(none)}`);
    assert.equal(none.rebuilt, 1, "the streams store was rebuilt at open");
    const v = await ev(page, (name) => D.view(name), name);
    assert.equal(v.stats.streamsRebuilt, 0, "once rebuilt, the next open finds it intact");
    await assertLog(v, events, name);
    outcomes.push(["streams", kind, "rebuilt at open, harmless"]);
  });
}

