// State tables end to end: the bank ledger folded by logfold (a declarative table in wasm and a
// JS reducer) against the same ledger folded by plain JS in the page (T.model), plus scans,
// subscriptions, snapshots across reloads, rebuilds, time travel, faults, and two tabs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, profileDir, launch, ev, TEST_TIMEOUT } from "./harness.mjs";

const PORT = 47315;
let server, browser, page;

before(async () => {
  server = await startServer(PORT);
  browser = await launch(await profileDir("tables"));
  page = await browser.newPage(server.url);
});
after(async () => {
  await browser?.close();
  await server?.close();
});

const opts = { timeout: TEST_TIMEOUT };

test("the ledger's tables equal a plain JS fold of the same events, and are current when append resolves", opts, async () => {
  const r = await ev(page, async () => {
    const log = await Logfold.open({ name: "ledger", projections: T.ledger() });
    const events = T.ledgerEvents(3000, 7);
    const checks = [];
    for (let i = 0; i < events.length; i += 250) {
      const batch = events.slice(i, i + 250);
      await log.append(batch);
      // No waiting: the tables hold the batch as soon as append resolves.
      checks.push(T.canon(T.tables(log)) === T.canon(T.model(events.slice(0, i + batch.length))));
    }
    const single = await log.append({ stream: "acct-3", type: "Deposited", data: { account: "acct-3", amount: 5 } });
    const afterSingle = log.table("accounts").get("acct-3");
    const out = { checks, got: T.tables(log), want: T.model([...events, single]), afterSingle, count: log.table("accounts").count(), errors: log.projectionErrors("accounts") };
    await log.close();
    return out;
  });
  assert.deepEqual(r.checks, Array(12).fill(true));
  assert.deepEqual(r.got, r.want);
  assert.deepEqual(r.afterSingle, r.want.accounts["acct-3"]);
  assert.equal(r.count, 20);
  assert.deepEqual(r.errors, { count: 0, errors: [] });
  assert.ok(r.want.total !== 0 && Object.values(r.want.accounts).some((a) => a.movements > 10), "the fixture moves money");
});

test("scans order numbers before strings and honour from, to, prefix, limit, reverse and where", opts, async () => {
  const r = await ev(page, async () => {
    const log = await Logfold.open({
      name: "scan",
      projections: { items: { key: "data.k", on: { Put: { set: { v: "data.v", color: "data.color" } }, Drop: { delete: true } } } },
    });
    const keys = ["b", 10, "a", -2.5, "ab", "abc", 3, "b2", "c"];
    await log.append(keys.map((k, i) => ({ stream: "s", type: "Put", data: { k, v: i, color: i % 2 ? "red" : "blue" } })));
    await log.append({ stream: "s", type: "Drop", data: { k: "b2" } });
    const t = log.table("items");
    const ks = (rows) => rows.map((x) => x.key);
    return {
      all: ks(t.scan()),
      reverse: ks(t.scan({ reverse: true })),
      range: ks(t.scan({ from: 3, to: "ab" })),
      prefix: ks(t.scan({ prefix: "ab" })),
      prefixReverse: ks(t.scan({ prefix: "a", reverse: true })),
      limit: ks(t.scan({ limit: 2, from: "a" })),
      where: t.filter({ color: "red" }),
      whereLimit: ks(t.scan({ where: { color: "blue" }, limit: 2, reverse: true })),
      count: t.count(),
      getNum: t.get(10),
      getMissing: t.get("zz") ?? null,
      badKey: T.describe((() => { try { t.get({}); } catch (e) { return e; } })()),
      badWhere: T.describe((() => { try { t.filter({ nope: 1 }); } catch (e) { return e; } })()),
      notTable: T.describe((() => { try { log.table("nothing"); } catch (e) { return e; } })()),
    };
  });
  assert.deepEqual(r.all, [-2.5, 3, 10, "a", "ab", "abc", "b", "c"]);
  assert.deepEqual(r.reverse, [...r.all].reverse());
  assert.deepEqual(r.range, [3, 10, "a"]);
  assert.deepEqual(r.prefix, ["ab", "abc"]);
  assert.deepEqual(r.prefixReverse, ["abc", "ab", "a"]);
  assert.deepEqual(r.limit, ["a", "ab"]);
  assert.deepEqual(r.where, [
    { key: 10, row: { v: 1, color: "red" } },
    { key: -2.5, row: { v: 3, color: "red" } },
    { key: "abc", row: { v: 5, color: "red" } },
  ].sort((x, y) => (typeof x.key === typeof y.key ? (x.key < y.key ? -1 : 1) : typeof x.key === "number" ? -1 : 1)));
  assert.deepEqual(r.whereLimit, ["c", "b"]);
  assert.equal(r.count, 8);
  assert.deepEqual(r.getNum, { v: 1, color: "red" });
  assert.equal(r.getMissing, null);
  assert.equal(r.badKey.code, "INVALID_ARGUMENT");
  assert.equal(r.badWhere.code, "INVALID_ARGUMENT");
  assert.match(r.badWhere.message, /nope/);
  assert.equal(r.notTable.code, "INVALID_ARGUMENT");
});

test("a missing field or a type mismatch leaves the row as it was and is listed in projectionErrors", opts, async () => {
  const r = await ev(page, async () => {
    const log = await Logfold.open({ name: "faults", projections: T.ledger() });
    await log.append([
      { stream: "a", type: "Opened", data: { account: "a", owner: "Ann" } },
      { stream: "a", type: "Deposited", data: { account: "a", amount: 100 } },
      { stream: "a", type: "Deposited", data: { account: "a" } },
      { stream: "a", type: "Deposited", data: { account: "a", amount: "lots" } },
      { stream: "a", type: "Withdrawn", data: { account: ["a"], amount: 1 } },
    ]);
    return { row: log.table("accounts").get("a"), errors: log.projectionErrors("accounts"), total: T.describe((() => { try { return log.state("total"); } catch (e) { return e; } })()) };
  });
  assert.deepEqual(r.row, { owner: "Ann", balance: 100, movements: 1 });
  assert.equal(r.errors.count, 3);
  assert.deepEqual(r.errors.errors.map((e) => [e.seq, e.type]), [[3, "Deposited"], [4, "Deposited"], [5, "Withdrawn"]]);
  assert.match(r.errors.errors[0].message, /data\.amount is missing/);
  assert.match(r.errors.errors[1].message, /not a number/);
  // The JS reducer adds "lots" to a number: JS does what JS does; that is the app's reducer.
  assert.equal(r.total.isLogfoldError, false);
});

test("subscribers hear each committed append once, with the changed rows or the new state", opts, async () => {
  const r = await ev(page, async () => {
    const log = await Logfold.open({ name: "subs", projections: T.ledger() });
    const heard = [];
    const states = [];
    const off = log.subscribe("accounts", (c) => heard.push(c));
    const offTotal = log.subscribe("total", (c) => states.push(c));
    await log.append([
      { stream: "a", type: "Opened", data: { account: "a", owner: "Ann" } },
      { stream: "b", type: "Opened", data: { account: "b", owner: "Bob" } },
    ]);
    await log.append({ stream: "a", type: "Deposited", data: { account: "a", amount: 70 } });
    await log.append({ stream: "a", type: "Transferred", data: { from: "a", to: "b", amount: 20 } });
    await new Promise((r) => setTimeout(r, 50));
    off();
    await log.append({ stream: "a", type: "Deposited", data: { account: "a", amount: 1 } });
    await new Promise((r) => setTimeout(r, 50));
    offTotal();
    return { heard, states };
  });
  assert.deepEqual(r.heard, [
    { seq: 2, changes: [{ key: "a", row: { owner: "Ann", balance: 0, movements: 0 } }, { key: "b", row: { owner: "Bob", balance: 0, movements: 0 } }] },
    { seq: 3, changes: [{ key: "a", row: { owner: "Ann", balance: 70, movements: 1 } }] },
    { seq: 4, changes: [{ key: "a", row: { owner: "Ann", balance: 50, movements: 2 } }, { key: "b", row: { owner: "Bob", balance: 20, movements: 1 } }] },
  ]);
  // The transfer does not change the total, so the reducer's subscriber is not called for it.
  assert.deepEqual(r.states, [{ seq: 3, state: 70 }, { seq: 5, state: 71 }]);
});

test("snapshots survive a reload: open loads them and replays only the tail", opts, async () => {
  const events = await ev(page, () => T.ledgerEvents(2000, 11));
  const first = await ev(page, async (events) => {
    const log = await Logfold.open({ name: "snap", projections: T.ledger(), snapshotEvery: 1000 });
    await log.append(events.slice(0, 1500));
    const before = log.stats().snapshotsWritten;
    await log.snapshot(); // at 1500 (close writes none after it)
    const written = log.stats().snapshotsWritten - before;
    await log.close();
    return { keys: await T.snapshotKeys("snap"), written };
  }, events);
  assert.equal(first.written, 2, "one table and one reducer snapshot written");
  assert.equal(first.keys.length, 2);
  assert.ok(first.keys.some((k) => k.startsWith("table:accounts:")) && first.keys.includes("reducer:total:1"), first.keys.join());

  // The page goes away without close(): what was appended since the snapshot is the tail.
  await ev(page, async (events) => {
    const log = await Logfold.open({ name: "snap", projections: T.ledger(), snapshotEvery: 1_000_000 });
    await log.append(events.slice(1500));
  }, events);
  await page.reload();
  await ev(page, () => window.ready);
  const r = await ev(page, async (events) => {
    const log = await Logfold.open({ name: "snap", projections: T.ledger() });
    return { stats: log.stats(), got: T.tables(log), want: T.model(events) };
  }, events);
  assert.deepEqual(r.got, r.want);
  assert.equal(r.stats.snapshotsLoaded, 2);
  assert.equal(r.stats.projectionsRebuilt, 0);
  assert.equal(r.stats.eventsReplayed, 500, "only the tail after the snapshot is folded");
});

test("a changed definition rebuilds from the log with progress; the old snapshot stays for the old version", opts, async () => {
  const r = await ev(page, async () => {
    const events = T.ledgerEvents(5000, 3);
    const a = await Logfold.open({ name: "redef", projections: T.ledger() });
    await a.append(events);
    await a.close();
    const changed = T.ledger();
    changed.accounts.on.Opened = { set: { owner: "data.owner", balance: 0, movements: 0, kind: "checking" } };
    const progress = [];
    const b = await Logfold.open({ name: "redef", projections: changed, onProgress: (p) => progress.push(p) });
    const out = { stats: b.stats(), progress, row: b.table("accounts").get("acct-1"), want: T.model(events).accounts["acct-1"] };
    await b.close();
    out.keys = await T.snapshotKeys("redef");
    return out;
  });
  assert.equal(r.stats.projectionsRebuilt, 1, "the table whose definition changed");
  assert.equal(r.stats.snapshotsLoaded, 1, "the reducer, unchanged, starts from its snapshot");
  assert.equal(r.stats.eventsReplayed, 5000);
  assert.deepEqual(r.row, { ...r.want, kind: "checking" });
  assert.ok(r.progress.length >= 1);
  assert.deepEqual(r.progress.at(-1), { done: 5000, total: 5000 });
  assert.equal(r.keys.filter((k) => k.startsWith("table:accounts:")).length, 2, "both definitions keep their snapshot");
});

test("a damaged snapshot is discarded, said so, and the table rebuilt from the log", opts, async () => {
  const r = await ev(page, async () => {
    const events = T.ledgerEvents(800, 5);
    const a = await Logfold.open({ name: "damaged", projections: T.ledger() });
    await a.append(events);
    await a.close();
    const key = (await T.snapshotKeys("damaged")).find((k) => k.startsWith("table:"));
    await T.flipSnapshot("damaged", key);
    const warnings = [];
    const warn = console.warn;
    console.warn = (...args) => warnings.push(args.join(" "));
    try {
      const b = await Logfold.open({ name: "damaged", projections: T.ledger() });
      return { stats: b.stats(), got: T.tables(b), want: T.model(events), warnings };
    } finally {
      console.warn = warn;
    }
  });
  assert.deepEqual(r.got, r.want);
  assert.equal(r.stats.snapshotsDiscarded, 1);
  assert.equal(r.stats.projectionsRebuilt, 1);
  assert.ok(r.warnings.some((w) => /snapshot table:accounts:\S+ not used: damaged snapshot/.test(w)), r.warnings.join("\n"));
});

test("two app versions in two tabs keep their own reducer snapshots", opts, async () => {
  const other = await browser.newPage(server.url);
  try {
    const v2 = () => ({ ...T.ledger(), total: { version: 2, init: 0, apply: (n) => n + 1 } });
    await ev(page, async () => {
      T.logs.v1 = await Logfold.open({ name: "versions", projections: T.ledger() });
      await T.logs.v1.append(T.ledgerEvents(300, 9));
    });
    await ev(other, async (v2) => {
      T.logs.v2 = await Logfold.open({ name: "versions", projections: eval(`(${v2})`)() });
      await T.logs.v2.snapshot();
    }, String(v2));
    await ev(page, () => T.logs.v1.close());
    await ev(other, () => T.logs.v2.close());
    const one = await ev(page, async () => {
      const log = await Logfold.open({ name: "versions", projections: T.ledger() });
      const out = { stats: log.stats(), total: log.state("total"), want: T.model(T.ledgerEvents(300, 9)).total };
      await log.close();
      return out;
    });
    const two = await ev(other, async (v2) => {
      const log = await Logfold.open({ name: "versions", projections: eval(`(${v2})`)() });
      const out = { stats: log.stats(), total: log.state("total"), keys: await T.snapshotKeys("versions") };
      await log.close();
      return out;
    }, String(v2));
    assert.equal(one.stats.snapshotsLoaded, 2);
    assert.equal(one.total, one.want);
    assert.equal(two.stats.snapshotsLoaded, 2);
    assert.equal(two.total, 300);
    assert.ok(two.keys.includes("reducer:total:1") && two.keys.includes("reducer:total:2"), two.keys.join());
  } finally {
    await other.close();
  }
});

test("tablesAt folds the log up to any position, from a snapshot below it when there is one", opts, async () => {
  const r = await ev(page, async () => {
    const events = T.ledgerEvents(1200, 21);
    const log = await Logfold.open({ name: "travel", projections: T.ledger() });
    await log.append(events.slice(0, 600));
    await log.snapshot();
    await log.append(events.slice(600));
    const out = {};
    for (const seq of [0, 1, 450, 600, 601, 1000, 1200]) {
      const past = await log.tablesAt(seq);
      const accounts = {};
      for (const { key, row } of past.table("accounts").scan()) accounts[key] = row;
      out[seq] = { ok: T.canon({ accounts, total: past.state("total") }) === T.canon(T.model(events.slice(0, seq))), seq: past.seq };
    }
    out.now = T.canon(T.tables(log)) === T.canon(T.model(events));
    out.past = T.describe(await log.tablesAt(5000).catch((e) => e));
    return out;
  });
  for (const seq of [0, 1, 450, 600, 601, 1000, 1200]) assert.deepEqual(r[seq], { ok: true, seq }, `tablesAt(${seq})`);
  assert.equal(r.now, true, "the live tables are untouched");
  assert.equal(r.past.code, "INVALID_ARGUMENT");
});

test("invalid definitions fail open with INVALID_PROJECTION naming the path", opts, async () => {
  const r = await ev(page, async () => {
    const attempt = (projections) => T.attempt(() => Logfold.open({ name: "invalid", projections }));
    return {
      op: await attempt({ accounts: { key: "data.account", on: { Deposited: { ad: { balance: "data.amount" } } } } }),
      list: await attempt({ accounts: { on: { A: [{ set: { x: 1 } }, { delete: false }] } } }),
      fn: await attempt({ accounts: { on: { A: { set: { x: () => 1 } } } } }),
      reducer: await attempt({ total: { version: 1, init: 0, apply: "nope" } }),
      version: await attempt({ total: { version: -1, init: 0, apply: (s) => s } }),
      exists: await T.dbExists("invalid"),
    };
  });
  for (const k of ["op", "list", "fn", "reducer", "version"]) assert.equal(r[k].code, "INVALID_PROJECTION", k);
  assert.equal(r.op.details.path, "projections.accounts.on.Deposited.ad");
  assert.equal(r.list.details.path, "projections.accounts.on.A[1].delete");
  assert.equal(r.fn.details.path, "projections.accounts.on.A.set.x");
  assert.equal(r.reducer.details.path, "projections.total.apply");
  assert.equal(r.version.details.path, "projections.total.version");
  assert.equal(r.op.details.projection, "accounts");
});

test("a reducer that throws is marked failed with the event's seq; the log and other projections go on", opts, async () => {
  const r = await ev(page, async () => {
    const projections = {
      ...T.ledger(),
      fragile: { version: 1, init: 0, apply: (n, e) => { if (e.data.amount === 13) throw new Error("unlucky"); return n + 1; } },
    };
    const errors = [];
    const error = console.error;
    console.error = (...a) => errors.push(a.join(" "));
    try {
      const log = await Logfold.open({ name: "throws", projections });
      await log.append([
        { stream: "a", type: "Opened", data: { account: "a", owner: "A" } },
        { stream: "a", type: "Deposited", data: { account: "a", amount: 13 } },
      ]);
      const later = await log.append({ stream: "a", type: "Deposited", data: { account: "a", amount: 2 } });
      return {
        later: later.seq,
        fragile: T.describe((() => { try { return log.state("fragile"); } catch (e) { return e; } })()),
        errors: log.projectionErrors("fragile"),
        total: log.state("total"),
        row: log.table("accounts").get("a"),
        logged: errors.some((e) => e.includes("fragile") && e.includes("position 2")),
      };
    } finally {
      console.error = error;
    }
  });
  assert.equal(r.later, 3);
  assert.equal(r.fragile.code, "PROJECTION_FAILED");
  assert.equal(r.fragile.details.seq, 2);
  assert.match(r.fragile.message, /unlucky/);
  assert.equal(r.errors.failed, true);
  assert.deepEqual(r.errors.errors.map((e) => e.seq), [2]);
  assert.equal(r.total, 15);
  assert.deepEqual(r.row, { owner: "A", balance: 15, movements: 2 });
  assert.equal(r.logged, true);
});

test("two tabs: appends reach the other tab's tables and subscribers, and both end identical", opts, async () => {
  const other = await browser.newPage(server.url);
  try {
    const open = () => T.log("tabs", { projections: T.ledger() }).then(() => true);
    await ev(page, open);
    await ev(other, open);
    await ev(other, () => {
      T.heard = [];
      T.logs.tabs.subscribe("accounts", (c) => T.heard.push(...c.changes.map((x) => x.key)));
    });
    await ev(page, () => T.logs.tabs.append({ stream: "z", type: "Opened", data: { account: "z", owner: "Zoe" } }));
    const seen = await ev(other, () => T.until(() => T.logs.tabs.table("accounts").get("z"), 20_000, "the other tab's append"));
    assert.deepEqual(seen, { owner: "Zoe", balance: 0, movements: 0 });
    assert.deepEqual(await ev(other, () => T.until(() => T.heard.length > 0 && T.heard)), ["z"]);

    // 1,000 events from each tab at once, in batches of 50 (so their commits interleave).
    const burst = (seed) => Promise.all(
      Array.from({ length: 20 }, (_, i) => T.logs.tabs.append(T.ledgerEvents(70, seed * 100 + i).slice(20))),
    ).then((rs) => rs.flat().map((e) => e.seq));
    const [a, b] = await Promise.all([ev(page, burst, 1), ev(other, burst, 2)]);
    const all = [...a, ...b];
    assert.equal(all.length, 2000);
    assert.equal(new Set(all).size, 2000, "distinct seqs");
    const state = async (p) => ev(p, async () => {
      await T.until(() => T.logs.tabs.head >= 2001 && T.logs.tabs.state("total") !== undefined, 20_000, "head 2001");
      await T.until(async () => { await T.logs.tabs.refresh(); return T.logs.tabs.table("accounts").count() > 0; });
      return { tables: T.tables(T.logs.tabs), want: T.model(await T.readAll(T.logs.tabs)), head: T.logs.tabs.head };
    });
    const [x, y] = await Promise.all([state(page), state(other)]);
    assert.equal(x.head, 2001);
    assert.deepEqual(x.tables, x.want);
    assert.deepEqual(y.tables, y.want);
    assert.deepEqual(x.tables, y.tables);
  } finally {
    await ev(other, () => T.logs.tabs?.close()).catch(() => {});
    await other.close();
  }
});

test("a frozen tab catches up with appends made meanwhile once it is resumed", opts, async () => {
  const other = await browser.newPage(server.url);
  try {
    const open = () => T.log("frozen", { projections: T.ledger() }).then(() => true);
    await ev(page, open);
    await ev(other, open);
    const cdp = await browser.context.newCDPSession(other);
    await cdp.send("Page.setWebLifecycleState", { state: "frozen" });
    // Headless Chromium 156 accepts that and keeps the visible page running, so its scripts are
    // stopped too: the channel's messages wait, as a frozen tab's would.
    await cdp.send("Debugger.enable");
    await cdp.send("Debugger.pause");
    await ev(page, () => T.logs.frozen.append(T.ledgerEvents(300, 77)));
    await cdp.send("Debugger.resume");
    await cdp.send("Debugger.disable");
    await cdp.send("Page.setWebLifecycleState", { state: "active" });
    const r = await ev(other, async () => {
      await T.until(() => T.logs.frozen.head === 300, 20_000, "the frozen tab's catch-up");
      return { got: T.canon(T.tables(T.logs.frozen)), want: T.canon(T.model(T.ledgerEvents(300, 77))) };
    });
    assert.equal(r.got, r.want);
  } finally {
    await ev(other, () => T.logs.frozen?.close()).catch(() => {});
    await other.close();
  }
});

test("a log destroyed in one tab and reopened at once in another opens empty, not CORRUPT", opts, async () => {
  const other = await browser.newPage(server.url);
  try {
    await ev(page, async () => {
      const log = await Logfold.open({ name: "destroyed", onClose: () => {} });
      await log.append(T.ledgerEvents(200, 3));
    });
    await ev(other, () => Logfold.destroy("destroyed"));
    // Chromium hands one tab's localStorage change to another a moment later. Played here
    // deterministically: the head mark of the destroyed log is still there when open reads
    // it, and goes a few milliseconds later, as the other tab's removal arrives.
    const r = await ev(page, () => T.attempt(async () => {
      localStorage.setItem("logfold:head:destroyed", "200");
      setTimeout(() => localStorage.removeItem("logfold:head:destroyed"), 20);
      const log = await Logfold.open({ name: "destroyed" });
      const head = log.head;
      await log.close();
      return head;
    }));
    assert.deepEqual(r, { threw: false, value: 0 });
  } finally {
    await other.close();
  }
});
