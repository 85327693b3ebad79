// logfold's core promises in every browser engine, through each engine's WebDriver: Chromium
// (chromedriver), Firefox ESR (geckodriver) and WebKitGTK (WebKitWebDriver + MiniBrowser, the
// engine of Safari). The same page as tests/e2e (tests/e2e/page) and the real logfold-server.
//
// LOGFOLD_ENGINES=firefox,webkit picks engines (default: all three); LOGFOLD_KILLS=n kills each
// bare browser n times per durability in the crash tests (default 1). WebDriver has no network
// emulation and no quota or crash hooks (tests/e2e uses Chromium's DevTools protocol for those):
// here "offline" is the sync server taken down and started again on the same port and database.
// WebKitGTK's WebDriver sessions keep no data across sessions: its restart test runs a bare
// MiniBrowser (bare.mjs), as are the crash tests (a SIGKILLed browser, without WebDriver).
import { describe, test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { launch, startPages, selectedEngines, pkgBuilt, PORTS, TEST_TIMEOUT } from "./drivers.mjs";
import { startSyncServer, serverBuilt } from "../e2e/sync-server.mjs";
import { restart as bareRestart, crash as bareCrash } from "./bare.mjs";

const opts = { timeout: TEST_TIMEOUT };
// Kills per durability and engine in the crash tests (scripts/test-engines runs more).
const KILLS = Math.max(1, Number(process.env.LOGFOLD_KILLS) || 1);
const engines = selectedEngines();
let pages;

before(async () => {
  assert.ok(pkgBuilt(), "pkg/ is not built: bash scripts/build");
  pages = await startPages(PORTS.page);
});
after(async () => {
  await pages?.close();
});

for (const engine of engines) {
  describe(engine, () => {
    let b;
    before(async () => {
      b = await launch(engine);
      await b.goto(pages.url);
      console.log(`# ${engine}: ${b.browserName} ${b.version}`);
    });
    after(async () => {
      await b?.close();
    });
    afterEach(async (t) => {
      if (!b) return;
      const problems = await b.run(() => (window.problems ?? []).splice(0)).catch((e) => [`could not read the page's problems: ${e.message}`]);
      // No engine makes logfold warn or fail in the background here; a test that expects it takes them first.
      assert.deepEqual(problems, [], `${t.name}: the page reported problems`);
    });

    test(`${engine}: append returns positions; read, events and version give them back`, opts, async () => {
      const r = await b.run(async () => {
        await Logfold.destroy("core");
        const log = await Logfold.open({ name: "core" });
        const one = await log.append({ stream: "acct-1", type: "Opened", data: { owner: "Ada", tags: ["a", 1, null, true] }, meta: { user: "u1" } });
        const many = await log.append([
          { stream: "acct-1", type: "Deposited", data: { amount: 1250 } },
          { stream: "acct-2", type: "Opened", data: { owner: "Bob" } },
        ]);
        const together = await Promise.all(Array.from({ length: 50 }, (_, i) => log.append({ stream: `s${i % 5}`, type: "T", data: i })));
        const all = await T.readAll(log, 7);
        const iterated = [];
        for await (const e of log.events({ after: 50 })) iterated.push(e.seq);
        const out = {
          one, many, head: log.head, seqs: together.map((e) => e.seq).sort((x, y) => x - y),
          count: all.length, first: all[0], third: all[2], iterated,
          v1: await log.version("acct-1"), v2: await log.version("acct-2"), v0: await log.version("nobody"), s3: await log.version("s3"),
          transactions: log.stats().transactions,
        };
        await log.close();
        return out;
      });
      assert.equal(r.one.seq, 1);
      assert.equal(r.one.version, 1);
      assert.deepEqual(r.one.data, { owner: "Ada", tags: ["a", 1, null, true] });
      assert.deepEqual(r.one.meta, { user: "u1" });
      assert.deepEqual(r.many.map((e) => [e.stream, e.version, e.seq]), [["acct-1", 2, 2], ["acct-2", 1, 3]]);
      assert.equal(r.head, 53);
      assert.deepEqual(r.seqs, Array.from({ length: 50 }, (_, i) => i + 4), "concurrent appends get distinct positions 4..53");
      assert.ok(r.transactions < 53, `group commit shares transactions (${r.transactions} for 52 appends)`);
      assert.equal(r.count, 53);
      assert.deepEqual([r.first.id, r.first.stream, r.first.type, r.first.data], [r.one.id, "acct-1", "Opened", r.one.data]);
      assert.deepEqual(r.third.data, { owner: "Bob" });
      assert.deepEqual(r.iterated, [51, 52, 53]);
      assert.deepEqual([r.v1, r.v2, r.v0, r.s3], [2, 1, 0, 10]);
    });

    test(`${engine}: after a reload the events and the tables are still there (replayed, then from the snapshot)`, opts, async () => {
      await b.run(async () => {
        await Logfold.destroy("reload");
        const log = await Logfold.open({ name: "reload", projections: T.ledger() });
        await log.append(T.ledgerEvents(300, 7));
        // No close: the page goes away as a user's reload takes it.
      });
      const expected = await b.run(() => T.canon(T.model(T.ledgerEvents(300, 7))));
      await b.reload();
      const first = await b.run(async () => {
        const log = await Logfold.open({ name: "reload", projections: T.ledger() });
        const out = { head: log.head, events: (await T.readAll(log)).length, accounts: Object.fromEntries(log.table("accounts").scan().map((r) => [r.key, r.row])), total: log.state("total"), stats: log.stats() };
        await log.close(); // writes the snapshots
        return out;
      });
      await b.reload();
      const second = await b.run(async () => {
        const log = await Logfold.open({ name: "reload", projections: T.ledger() });
        const out = { head: log.head, accounts: Object.fromEntries(log.table("accounts").scan().map((r) => [r.key, r.row])), total: log.state("total"), stats: log.stats() };
        await log.close();
        return out;
      });
      assert.equal(first.head, 300);
      assert.equal(first.events, 300);
      assert.equal(await b.run((v) => T.canon(v), { accounts: first.accounts, total: first.total }), expected, "the tables equal a plain JS fold of the events");
      assert.equal(Object.keys(first.accounts).length, 20);
      assert.deepEqual(second.accounts, first.accounts);
      assert.equal(second.total, first.total);
      assert.equal(second.head, 300);
      assert.ok(second.stats.snapshotsLoaded >= 1, `the second open starts from the snapshot close wrote: ${JSON.stringify(second.stats)}`);
      assert.equal(second.stats.eventsReplayed, 0, "nothing to replay after the snapshot");
    });

    test(`${engine}: after the browser quits and starts again on its profile, the log is there, a 900 KiB event intact`, opts, async () => {
      const digest = `(s) => { let h = 0x811c9dc5; for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193); return [s.length, h >>> 0]; }`;
      const wrote = await b.run(async (digest) => {
        const hash = eval(digest);
        await Logfold.destroy("restart");
        const log = await Logfold.open({ name: "restart" });
        const big = T.noise(900 * 1024);
        await log.append(Array.from({ length: 100 }, (_, i) => ({ stream: `s${i % 3}`, type: "Small", data: { i } })));
        const e = await log.append({ stream: "big", type: "Big", data: { text: big } });
        await log.close();
        return { head: log.head, seq: e.seq, hash: hash(big) };
      }, digest);
      await b.restart();
      await b.goto(pages.url);
      const read = await b.run(async (digest) => {
        const hash = eval(digest);
        const log = await Logfold.open({ name: "restart" });
        const all = await T.readAll(log);
        const big = all.find((e) => e.type === "Big");
        const out = { head: log.head, count: all.length, hash: big ? hash(big.data.text) : null, small: all.filter((e) => e.type === "Small").map((e) => e.data.i) };
        await log.close();
        return out;
      }, digest);
      assert.deepEqual(wrote.seq, 101);
      if (engine === "webkit") {
        // WebKitGTK's WebDriver sessions use an ephemeral data store: a new session starts empty.
        // The restart is tested on a bare MiniBrowser instead (tests/engines/bare.mjs).
        assert.equal(read.head, 0, "a new WebKit WebDriver session starts with empty storage");
        const bare = await bareRestart("webkit");
        assert.equal(bare.wrote.error, undefined, bare.wrote.error);
        assert.equal(bare.read.error, undefined, bare.read.error);
        assert.deepEqual([bare.wrote.head, bare.read.head, bare.read.count], [101, 101, 101], "the log survived MiniBrowser's restart");
        assert.deepEqual(bare.read.hash, bare.wrote.hash, "the large event reads back byte for byte");
        return;
      }
      assert.equal(read.head, 101, "the log survived the browser's restart");
      assert.equal(read.count, 101);
      assert.deepEqual(read.hash, wrote.hash, "the large event reads back byte for byte");
      assert.deepEqual(read.small, Array.from({ length: 100 }, (_, i) => i));
    });

    for (const durability of ["strict", "relaxed"]) {
      test(`${engine}: the browser SIGKILLed mid-append (${durability}): every acknowledged event is there after the restart`, { timeout: TEST_TIMEOUT * KILLS, skip: engine === "chromium" && "tests/e2e/durability.test.mjs kills Chromium" }, async () => {
        for (let kill = 1; kill <= KILLS; kill++) {
          const { acked, check } = await bareCrash(engine, { durability });
          console.log(`# ${engine} ${durability} kill ${kill}/${KILLS}: killed after ${acked} acknowledged; the restart found ${check.head}`);
          assert.equal(check.error, undefined, `the log opens after the kill: ${check.error}`);
          assert.ok(acked >= 200, `the kill came after ${acked} acknowledged positions`);
          assert.ok(check.head >= acked, `no acknowledged event is lost: ${acked} acknowledged, ${check.head} there`);
          assert.equal(check.head % 10, 0, "batches are whole: none half-stored");
          assert.deepEqual([check.count, check.dense, check.intact, check.versions], [check.head, true, true, true], "positions 1..head, each event intact, stream versions right");
        }
      });
    }

    test(`${engine}: tables: get, scan, filter, count, a reducer, subscribe and tablesAt`, opts, async () => {
      const r = await b.run(async () => {
        await Logfold.destroy("tables");
        const log = await Logfold.open({ name: "tables", projections: T.ledger() });
        const changed = [];
        const off = log.subscribe("accounts", ({ changes }) => changed.push(...changes.map((c) => c.key)));
        await log.append([
          { stream: "acct-1", type: "Opened", data: { account: "acct-1", owner: "Ada" } },
          { stream: "acct-2", type: "Opened", data: { account: "acct-2", owner: "Bob" } },
          { stream: "acct-1", type: "Deposited", data: { account: "acct-1", amount: 1250 } },
        ]);
        await log.append({ stream: "acct-1", type: "Transferred", data: { from: "acct-1", to: "acct-2", amount: 250 } });
        await new Promise((ok) => setTimeout(ok, 0)); // subscribers are called in a microtask
        const t = log.table("accounts");
        const past = await log.tablesAt(3);
        const out = {
          a1: t.get("acct-1"), missing: t.get("acct-9") ?? "none",
          second: t.scan({ prefix: "acct-", limit: 10 })[1].key, reversed: t.scan({ reverse: true }).map((x) => x.key),
          bob: t.filter({ owner: "Bob" }).map((x) => x.row.balance), count: t.count(), total: log.state("total"),
          changed, pastBalance: past.table("accounts").get("acct-2").balance, pastTotal: past.state("total"),
        };
        off();
        await log.close();
        return out;
      });
      assert.deepEqual(r.a1, { owner: "Ada", balance: 1000, movements: 2 });
      assert.equal(r.missing, "none");
      assert.equal(r.second, "acct-2");
      assert.deepEqual(r.reversed, ["acct-2", "acct-1"]);
      assert.deepEqual(r.bob, [250]);
      assert.equal(r.count, 2);
      assert.equal(r.total, 1250);
      assert.deepEqual(r.changed, ["acct-1", "acct-2", "acct-1", "acct-2"]);
      assert.equal(r.pastBalance, 0);
      assert.equal(r.pastTotal, 1250);
    });

    test(`${engine}: two tabs on one log: each folds the other's appends (BroadcastChannel)`, opts, async () => {
      const first = await b.windowHandle();
      await b.run(async () => {
        await Logfold.destroy("tabs");
        T.logs.tabs = await Logfold.open({ name: "tabs", projections: T.ledger() });
        window.seen = [];
        T.logs.tabs.subscribe("accounts", ({ changes }) => window.seen.push(...changes.map((c) => c.key)));
      });
      const second = await b.newWindow(pages.url);
      try {
        await b.run(async () => {
          T.logs.tabs = await Logfold.open({ name: "tabs", projections: T.ledger() });
          await T.logs.tabs.append({ stream: "acct-1", type: "Opened", data: { account: "acct-1", owner: "Ada" } });
        });
        await b.use(first);
        const inFirst = await b.run(async () => {
          const t0 = Date.now();
          while (T.logs.tabs.table("accounts").count() < 1 && Date.now() - t0 < 10_000) await new Promise((ok) => setTimeout(ok, 20));
          const row = T.logs.tabs.table("accounts").get("acct-1");
          const seen = [...window.seen];
          await T.logs.tabs.append({ stream: "acct-2", type: "Opened", data: { account: "acct-2", owner: "Bob" } });
          await T.logs.tabs.append({ stream: "acct-1", type: "Deposited", data: { account: "acct-1", amount: 70 } });
          return { row, seen, head: T.logs.tabs.head };
        });
        await b.use(second);
        const inSecond = await b.run(async () => {
          const log = T.logs.tabs;
          const t0 = Date.now();
          while (log.head < 3 && Date.now() - t0 < 10_000) await new Promise((ok) => setTimeout(ok, 20));
          const out = { head: log.head, rows: log.table("accounts").scan().map((r) => [r.key, r.row]), total: log.state("total"), seqs: (await T.readAll(log)).map((e) => e.seq) };
          await log.close();
          return out;
        });
        assert.deepEqual(inFirst.row, { owner: "Ada", balance: 0, movements: 0 }, "the first tab folded the second's append");
        assert.deepEqual(inFirst.seen, ["acct-1"], "and told its subscriber");
        assert.equal(inFirst.head, 3);
        assert.equal(inSecond.head, 3, "the second tab folded the first's appends");
        assert.deepEqual(inSecond.rows, [["acct-1", { owner: "Ada", balance: 70, movements: 1 }], ["acct-2", { owner: "Bob", balance: 0, movements: 0 }]]);
        assert.equal(inSecond.total, 70);
        assert.deepEqual(inSecond.seqs, [1, 2, 3]);
      } finally {
        await b.driver.close(); // the second window
        await b.use(first);
        await b.run(async () => { await T.logs.tabs?.close(); });
      }
    });

    test(`${engine}: a log opened in a dedicated worker and in the page: each folds the other's appends`, opts, async () => {
      const r = await b.run(async () => {
        await Logfold.destroy("worker");
        const projections = { names: { on: { Named: { set: { name: "data.name" } } } } };
        const log = await Logfold.open({ name: "worker", projections });
        const source = `
          const { Logfold } = await import(${JSON.stringify(location.origin + "/pkg/index.js")});
          const log = await Logfold.open({ name: "worker", projections: ${JSON.stringify(projections)} });
          await log.append([{ stream: "w1", type: "Named", data: { name: "from the worker" } }, { stream: "w2", type: "Named", data: { name: "again" } }]);
          postMessage({ appended: log.head, locks: Boolean(navigator.locks), channel: typeof BroadcastChannel === "function" });
          onmessage = async () => {
            const t0 = Date.now();
            while (log.head < 3 && Date.now() - t0 < 10000) await new Promise((ok) => setTimeout(ok, 20));
            postMessage({ head: log.head, page: log.table("names").get("p1") ?? null });
            await log.close();
          };`;
        const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
        const worker = new Worker(url, { type: "module" });
        const next = () => new Promise((ok, fail) => {
          worker.onmessage = (m) => ok(m.data);
          worker.onerror = (e) => fail(new Error(`worker: ${e.message}`));
        });
        try {
          const first = await T.within(20_000, next(), "the worker's appends");
          const t0 = Date.now();
          while (log.table("names").count() < 2 && Date.now() - t0 < 10_000) await new Promise((ok) => setTimeout(ok, 20));
          const inPage = log.table("names").scan().map((x) => [x.key, x.row.name]);
          await log.append({ stream: "p1", type: "Named", data: { name: "from the page" } });
          const answer = next();
          worker.postMessage("report");
          const second = await T.within(20_000, answer, "the worker's report");
          return { first, inPage, second };
        } finally {
          worker.terminate();
          URL.revokeObjectURL(url);
          await log.close();
        }
      });
      assert.equal(r.first.appended, 2);
      assert.deepEqual(r.inPage, [["w1", "from the worker"], ["w2", "again"]], "the page folded the worker's appends");
      assert.deepEqual(r.second, { head: 3, page: { name: "from the page" } }, "the worker folded the page's append");
      assert.equal(r.first.channel, true, "BroadcastChannel in a worker");
    });

    test(`${engine}: sync with logfold-server: push, offline (server down), back, and a second device pulls it all`, opts, async () => {
      assert.ok(serverBuilt(), "no logfold-server binary: cargo build --profile server -p logfold-server --bin logfold-server");
      const server = await startSyncServer({ port: PORTS.sync, corsOrigin: pages.origin });
      const remote = `ledger-${engine}`;
      const first = await b.windowHandle();
      let second = null;
      try {
        const online = await b.run(async ({ url, remote }) => {
          for (const n of ["dev-a", "dev-b"]) await Logfold.destroy(n);
          const log = (T.logs["dev-a"] = await Logfold.open({ name: "dev-a", projections: T.ledger(), sync: { url, log: remote } }));
          await log.append(T.ledgerEvents(40, 3));
          const status = await log.sync.settled({ timeout: 20_000 });
          return { status, leader: log.sync.status.leader };
        }, { url: server.url, remote });
        assert.equal(online.status.pending, 0);
        assert.equal(online.status.confirmed, 40);
        assert.equal(online.leader, true, "the only tab leads");
        assert.equal(await server.head(remote), 40, "the server has the 40 events");

        await server.kill();
        const offline = await b.run(async () => {
          const log = T.logs["dev-a"];
          await log.append(T.ledgerEvents(60, 3).slice(40));
          const status = await log.sync.now();
          return { status, head: log.head, tables: T.canon(T.tables(log)), model: T.canon(T.model(T.ledgerEvents(60, 3))) };
        });
        assert.equal(offline.status.pending, 20, "the appends made while the server is down wait in the outbox");
        assert.ok(["offline", "error"].includes(offline.status.state), `state while the server is down: ${JSON.stringify(offline.status)}`);
        assert.equal(offline.status.lastError?.code, "NETWORK");
        assert.equal(offline.head, 40, "a synced log's head is its confirmed head");
        assert.equal(offline.tables, offline.model, "the tables include the pending events at once");

        // A second tab on the same synced log: Web Locks keep one leader (without them, the newest tab leads).
        second = await b.newWindow(pages.url);
        const secondTab = await b.run(async ({ url, remote }) => {
          const log = (T.logs["dev-a"] = await Logfold.open({ name: "dev-a", projections: T.ledger(), sync: { url, log: remote } }));
          await new Promise((ok) => setTimeout(ok, 500));
          return { leader: log.sync.status.leader, locks: Boolean(navigator.locks), pending: log.sync.status.pending };
        }, { url: server.url, remote });
        assert.equal(secondTab.pending, 20);
        await b.use(first);
        const firstLeads = await b.run(() => T.logs["dev-a"].sync.status.leader);
        if (secondTab.locks) assert.deepEqual([firstLeads, secondTab.leader], [true, false], "with Web Locks the first tab keeps leading");
        else assert.equal(firstLeads !== secondTab.leader, true, "exactly one tab leads");

        await server.restart();
        const back = await b.run(async () => {
          const log = T.logs["dev-a"];
          await log.sync.now();
          const status = await log.sync.settled({ timeout: 20_000 });
          return { status, events: (await T.readAll(log)).map((e) => [e.id, e.offset]) };
        });
        assert.equal(back.status.pending, 0);
        assert.equal(back.status.confirmed, 60);
        assert.equal(back.status.state, "online");
        const onServer = await server.events(remote);
        assert.equal(onServer.head, 60);
        assert.deepEqual(onServer.events.map((e) => e.id), back.events.map(([id]) => id), "the server holds the browser's events in its order");
        assert.ok(back.events.every(([, offset], i) => offset === i + 1), "every event confirmed at its server offset");

        await b.use(second);
        const secondAfter = await b.run(async () => {
          const log = T.logs["dev-a"];
          const t0 = Date.now();
          while ((log.sync.status.pending > 0 || log.sync.status.state !== "online") && Date.now() - t0 < 10_000) await new Promise((ok) => setTimeout(ok, 50));
          const out = { pending: log.sync.status.pending, confirmed: log.sync.status.confirmed, state: log.sync.status.state };
          await log.close();
          return out;
        });
        assert.deepEqual(secondAfter, { pending: 0, confirmed: 60, state: "online" }, "the other tab hears the leader's status");
        await b.driver.close();
        second = null;
        await b.use(first);

        // Another device (its own local log) pulls the whole server log and folds the same tables.
        const device = await b.run(async ({ url, remote }) => {
          const a = T.logs["dev-a"];
          const other = await Logfold.open({ name: "dev-b", projections: T.ledger(), sync: { url, log: remote } });
          const status = await other.sync.settled({ timeout: 20_000 });
          const rows = (log) => JSON.stringify(log.table("accounts").scan());
          const out = { status, same: rows(a) === rows(other), total: [a.state("total"), other.state("total")], ids: (await T.readAll(other)).map((e) => e.id) };
          await other.close();
          await a.close();
          return out;
        }, { url: server.url, remote });
        assert.equal(device.status.confirmed, 60);
        assert.equal(device.same, true, "both devices fold the same accounts");
        assert.equal(device.total[0], device.total[1]);
        assert.deepEqual(device.ids, back.events.map(([id]) => id));
      } finally {
        if (second) {
          await b.use(second).then(() => b.driver.close()).catch(() => {});
        }
        await b.use(first).catch(() => {});
        await server.stop();
      }
    });

    test(`${engine}: errors are LogfoldErrors with a code and details, and a refused call writes nothing`, opts, async () => {
      const r = await b.run(async () => {
        await Logfold.destroy("errors");
        const log = await Logfold.open({ name: "errors" });
        await log.append({ stream: "a", type: "T", data: 1 });
        const out = {
          badEvent: await T.attempt(() => log.append([{ stream: "a", type: "T" }, { stream: "a", type: "T", data: { f: () => 1 } }])),
          noType: await T.attempt(() => log.append({ stream: "a", data: 1 })),
          bigint: await T.attempt(() => log.append({ stream: "a", type: "T", data: { n: [1n] } })),
          conflict: await T.attempt(() => log.append({ stream: "a", type: "T" }, { expectedVersion: "none" })),
          argument: await T.attempt(() => log.read({ limit: -1 })),
          projection: await T.attempt(() => Logfold.open({ name: "errors-p", projections: { t: { on: { A: { multiply: { n: "data.n" } } } } } })),
          head: log.head,
          events: (await log.read()).length,
        };
        await log.close();
        out.closed = await T.attempt(() => log.append({ stream: "a", type: "T" }));
        return out;
      });
      for (const [what, e] of Object.entries(r).filter(([, v]) => v && typeof v === "object" && "threw" in v)) {
        assert.equal(e.threw, true, `${what} threw`);
        assert.equal(e.isLogfoldError, true, `${what} is a LogfoldError: ${JSON.stringify(e)}`);
        assert.equal(e.isError, true, `${what} is an Error`);
        assert.equal(e.name, "LogfoldError");
      }
      assert.equal(r.badEvent.code, "INVALID_EVENT");
      assert.deepEqual(r.badEvent.details, { index: 1, field: "data.f", reason: "is a function, not plain JSON" });
      assert.equal(r.noType.code, "INVALID_EVENT");
      assert.equal(r.noType.details.field, "type");
      assert.equal(r.bigint.code, "INVALID_EVENT");
      assert.equal(r.bigint.details.field, "data.n[0]");
      assert.equal(r.conflict.code, "CONFLICT");
      assert.deepEqual(r.conflict.details, { stream: "a", expected: "none", actual: 1 });
      assert.equal(r.argument.code, "INVALID_ARGUMENT");
      assert.equal(r.argument.details.argument, "limit");
      assert.equal(r.projection.code, "INVALID_PROJECTION");
      assert.equal(r.projection.details.projection, "t");
      assert.match(r.projection.details.path, /^projections\.t\.on\.A/);
      assert.equal(r.closed.code, "CLOSED");
      assert.equal(r.head, 1, "the refused appends wrote nothing");
      assert.equal(r.events, 1);
    });

    test(`${engine}: plain data made in another realm (an iframe) is plain JSON; its Map and Date are not`, opts, async () => {
      const r = await b.run(async () => {
        const frame = document.createElement("iframe");
        document.body.append(frame);
        await new Promise((ok) => (frame.contentDocument?.readyState === "complete" ? ok() : frame.addEventListener("load", ok, { once: true })));
        const other = frame.contentWindow;
        await Logfold.destroy("realms");
        const log = await Logfold.open({ name: "realms" });
        const data = other.eval("({ owner: 'Ada', list: [1, { deep: true }], none: Object.create(null) })");
        const out = {
          crossRealm: Object.getPrototypeOf(data) !== Object.prototype,
          plain: await T.attempt(() => log.append({ stream: "a", type: "T", data, meta: other.eval("({ user: 'u' })") })),
          map: await T.attempt(() => log.append({ stream: "a", type: "T", data: { m: other.eval("new Map()") } })),
          date: await T.attempt(() => log.append({ stream: "a", type: "T", data: other.eval("new Date(0)") })),
          stored: (await log.read()).map((e) => e.data),
        };
        await log.close();
        frame.remove();
        return out;
      });
      assert.equal(r.crossRealm, true, "the iframe's objects have its Object.prototype");
      assert.equal(r.plain.threw, false, `a plain object from an iframe is accepted: ${JSON.stringify(r.plain)}`);
      assert.deepEqual(r.stored, [{ owner: "Ada", list: [1, { deep: true }], none: {} }]);
      assert.equal(r.map.code, "INVALID_EVENT");
      assert.deepEqual(r.map.details, { index: 0, field: "data.m", reason: "is a Map, not plain JSON" });
      assert.equal(r.date.code, "INVALID_EVENT");
      assert.equal(r.date.details.reason, "is a Date, not plain JSON");
    });

    test(`${engine}: what the engine lacks degrades as documented (storage(), persist(), Web Locks, durability)`, opts, async () => {
      const r = await b.run(async () => {
        await Logfold.destroy("features");
        const log = await Logfold.open({ name: "features", durability: "relaxed" });
        await log.append({ stream: "a", type: "T" });
        const storage = await log.storage();
        // Firefox asks the user (a permission prompt) and resolves only on their answer: headless, never.
        const asked = log.persist();
        const persist = await T.attempt(() => T.within(3_000, asked, "persist()"));
        if (persist.threw && /did not settle/.test(persist.message)) {
          persist.pending = true;
          persist.appendMeanwhile = (await log.append({ stream: "a", type: "T" })).seq;
          persist.storageMeanwhile = (await log.storage()).unsynced;
        }
        await log.close();
        // Without Web Locks, a synced log still opens and leads (the newest tab leads; the epoch fences the others).
        const locks = Object.getOwnPropertyDescriptor(Navigator.prototype, "locks");
        let lockless = null;
        if (locks) {
          Object.defineProperty(Navigator.prototype, "locks", { configurable: true, get: () => undefined });
          try {
            await Logfold.destroy("lockless");
            const l = await Logfold.open({ name: "lockless", sync: { url: "http://127.0.0.1:47389", log: "lockless" } });
            await new Promise((ok) => setTimeout(ok, 200));
            lockless = { leader: l.sync.status.leader, sawLocks: Boolean(navigator.locks) };
            await l.close();
          } finally {
            Object.defineProperty(Navigator.prototype, "locks", locks);
          }
        }
        return {
          features: {
            webLocks: Boolean(navigator.locks),
            broadcastChannel: typeof BroadcastChannel === "function",
            storageManager: Boolean(navigator.storage),
            estimate: Boolean(navigator.storage?.estimate),
            persistApi: Boolean(navigator.storage?.persist),
            durability: "durability" in IDBTransaction.prototype,
            databases: typeof indexedDB.databases === "function",
          },
          storage, persist, lockless,
        };
      });
      console.log(`# ${engine} features: ${JSON.stringify(r.features)}; storage() ${JSON.stringify(r.storage)}; persist() ${JSON.stringify(r.persist)}`);
      assert.equal(r.storage.unsynced, 1, "storage() counts the events only this browser has");
      assert.equal(typeof r.storage.persisted, "boolean");
      if (r.features.estimate) {
        assert.equal(typeof r.storage.usage, "number");
        assert.equal(typeof r.storage.quota, "number");
      } else {
        assert.deepEqual([r.storage.usage, r.storage.quota, r.storage.persisted], [null, null, false], "no StorageManager: usage and quota are null, not persisted");
      }
      if (engine === "firefox") {
        assert.equal(r.persist.pending, true, `Firefox: persist() waits for the user's answer to its prompt: ${JSON.stringify(r.persist)}`);
        assert.deepEqual([r.persist.appendMeanwhile, r.persist.storageMeanwhile], [2, 2], "the log works while persist() waits");
      } else {
        assert.equal(r.persist.threw, false, `persist() resolves: ${JSON.stringify(r.persist)}`);
        assert.equal(typeof r.persist.value, "boolean");
      }
      if (!r.features.persistApi) assert.equal(r.persist.value, false, "no persist(): it resolves false");
      if (r.lockless) assert.deepEqual(r.lockless, { leader: true, sawLocks: false }, "without Web Locks the tab leads by itself");
    });
  });
}
