// npm run bench [-- --quick] [--only case,case] [--streams N] [--relaxed] [--pkg DIR]
// Runs bench/index.html in headless Chromium: logfold vs Dexie vs raw IndexedDB, one page, one run,
// same events, same durability. Writes bench/results/latest.json and prints a table.
// A benchmark, not a test: it asserts no speed. It exits non-zero only when a case could not run.
import { execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { cpus, homedir, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { chromium } from "playwright-core";
import { serve } from "../scripts/serve.mjs";
import { ledgerEvents, pushAll, serverHead, wireEvents } from "./fixtures.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SYSTEMS = ["logfold", "dexie", "idb"];

const argv = process.argv.slice(2);
const quick = argv.includes("--quick");
const only = option("--only")?.split(",");
const pkgDir = resolve(ROOT, option("--pkg") ?? "pkg");
const streams = Number(option("--streams") ?? 100);
// Every system gets the same durability; strict unless --relaxed.
const DURABILITY = argv.includes("--relaxed") ? "relaxed" : "strict";
if (!Number.isInteger(streams) || streams < 1) {
  console.error("--streams wants a whole number >= 1");
  process.exit(2);
}

function option(name) {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

// Sizes: the full run stays within a few minutes on 2 cores; --quick within 2 minutes.
// Raw IndexedDB and Dexie manage ~5-12k events/s in batches and only ~250-1,000 transactions/s
// strict, so their concurrent single appends use fewer events (`perRecord`): their rate is set by
// the cost of one transaction and does not grow with the count.
// The tables.* cases fold a ledger of `tables` events (filled once per run) and take `tablesTrials`
// trials and no warm-up: a trial of a million events takes seconds per system, long enough to warm
// up the JIT within it.
const N = quick
  ? { warmup: 1, trials: 3, batch1: 100, batch100: 1000, batch1000: 2000, batch10000: 10000,
      concurrent: 2000, concurrentPerRecord: 300, sequential: 100, read: 20000,
      tables: 200_000, tablesTrials: 3, tabLatency: 50, sync: 20_000, syncTrials: 3, syncLatency: 50,
      boot: 100_000, bootTail: 10_000, bootTrials: 3, bootPeerTrials: 1 }
  : { warmup: 1, trials: 5, batch1: 500, batch100: 5000, batch1000: 10000, batch10000: 20000,
      concurrent: 10000, concurrentPerRecord: 1000, sequential: 500, read: 100000,
      tables: 1_000_000, tablesTrials: 3, tabLatency: 200, sync: 100_000, syncTrials: 3, syncLatency: 200,
      boot: 1_000_000, bootTail: 10_000, bootTrials: 3, bootPeerTrials: 1 };

const CASES = [
  { name: "append.batch1", fn: "appendBatches", arg: { batch: 1, total: N.batch1 } },
  { name: "append.batch100", fn: "appendBatches", arg: { batch: 100, total: N.batch100 } },
  { name: "append.batch1000", fn: "appendBatches", arg: { batch: 1000, total: N.batch1000 } },
  { name: "append.batch10000", fn: "appendBatches", arg: { batch: 10000, total: N.batch10000 } },
  { name: "append.concurrent10000", fn: "appendConcurrent", arg: { total: N.concurrent },
    perRecordArg: { total: N.concurrentPerRecord } },
  { name: "append.sequential500", fn: "appendSequential", arg: { total: N.sequential }, latency: true },
  // The same where each append starts a new stream (an app creating records): logfold has no
  // version of it in memory, and must know there is none to read.
  { name: "append.create500", fn: "appendSequential", arg: { total: N.sequential, create: true }, latency: true },
  // The same on a log synced with the sync server, online: appends go to the outbox while the
  // leader pushes them. The peers are the plain ones: an app's outbox of its own would add to theirs.
  { name: "append.synced500", fn: "appendSequential", arg: { total: N.sequential }, latency: true, sync: true },
  { name: "read.100000", fn: "readAll", arg: { total: N.read }, setup: "readSetup" },
  // Reopen the log read.100000 filled (and fill one themselves when run alone): verifying every
  // segment first, then the default open, which reads what it needs and checks the rest after.
  { name: "open.verify100000", fn: "reopen", arg: { total: N.read, verify: "full" }, systems: ["logfold"],
    setup: "readSetup", reuses: "read.100000", metric: "open_ms" },
  { name: "open.tail100000", fn: "reopen", arg: { total: N.read, verify: "background" }, systems: ["logfold"],
    setup: "readSetup", reuses: "open.verify100000", metric: "open_ms" },
  // The tables.* cases share one ledger log and one peer database (group "tables"): tablesSetup
  // fills them only when they do not hold the events yet; the last case of the group deletes them.
  { name: "tables.replay", fn: "tablesReplay", arg: { total: N.tables }, setup: "tablesSetup",
    group: "tables", trials: N.tablesTrials, warmup: 0 },
  { name: "tables.reducer", fn: "tablesReducer", arg: { total: N.tables }, systems: ["logfold", "dexie"],
    setup: "tablesSetup", group: "tables", trials: N.tablesTrials, warmup: 0 },
  { name: "tables.reducerTotal", fn: "tablesReducerTotal", arg: { total: N.tables }, systems: ["logfold", "dexie"],
    setup: "tablesSetup", group: "tables", trials: N.tablesTrials, warmup: 0 },
  { name: "tables.coldOpen", fn: "coldOpen", arg: { total: N.tables }, systems: ["logfold"],
    setup: "coldOpenSetup", group: "tables", metric: "open_ms" },
  // In a page of its own, so the heap and the wasm memory hold only this fold; one measurement.
  { name: "tables.memory", fn: "tablesMemory", arg: { total: N.tables }, systems: ["logfold", "dexie"],
    setup: "tablesSetup", group: "tables", newPage: true, memory: true },
  // "native" runs crates/core/examples/ledger_fold after the browser has closed (see nativeFold).
  { name: "tables.fold", fn: "foldInMemory", arg: { total: N.tables }, systems: ["js"], trials: N.tablesTrials },
  { name: "tables.tabLatency", fn: "tabLatency", arg: { total: N.tabLatency }, systems: ["logfold", "broadcast"],
    latency: true, twoTabs: true },
  // The sync.* cases run against logfold-server (crates/server), which this runner builds and
  // starts (SQLite in memory). sync.initial's server log is filled once, from node, before it runs.
  // No warm-up trial: Dexie's trials of 100,000 events take half a minute each.
  { name: "sync.initial", fn: "syncInitial", arg: { total: N.sync, log: "bench-initial" },
    systems: ["logfold", "dexie"], sync: true, fill: true, trials: N.syncTrials, warmup: 0 },
  // fillBudgetMs: logfold's outbox is filled (untimed) within the trial's call; past it, it fails.
  { name: "sync.push", fn: "syncPush", arg: { total: N.sync, fillBudgetMs: quick ? 40_000 : 120_000 },
    systems: ["logfold", "dexie", "fetch"], sync: true, trials: N.syncTrials, warmup: 0 },
  // Device A is the bench page (127.0.0.1), device B the same page from http://localhost: another
  // origin, so its own IndexedDB, leader and live tail. Each trial starts with an untimed round.
  { name: "sync.latency", fn: "syncLatency", arg: { total: N.syncLatency }, systems: ["logfold", "fetch"],
    sync: true, latency: true, devices: true, trials: N.syncTrials, warmup: 0 },
  // A new device of a server log of `total` events, then `tail` more: bootSetup fills it from node,
  // has a seeding device share its snapshot set (the server must report it stored) and pushes the
  // tail. logfold boots from the set; logfold-full (snapshots: false) and dexie pull it all, so
  // they take one trial (`trialsBy`): a million events through Dexie take a minute or more.
  // Two figures per trial (`metrics`): open_ms (the table answers) and usable_ms (at the head).
  { name: "sync.boot", fn: "syncBoot",
    arg: { total: N.boot, tail: N.bootTail, log: "bench-boot", waitMs: quick ? 60_000 : 300_000 },
    systems: ["logfold", "logfold-full", "dexie"], sync: true, boot: true, metrics: ["open_ms", "usable_ms"],
    trials: N.bootTrials, trialsBy: { "logfold-full": N.bootPeerTrials, dexie: N.bootPeerTrials },
    timeout: quick ? 90_000 : 360_000 },
].filter((c) => !only || only.includes(c.name));

// Past the soft deadline each case takes one trial and no warm-up, so a slow (busy) machine gives
// fewer trials instead of missing cases; the hard deadline only stops a run that hangs. The
// tables.* cases add up to 2 minutes (quick) or 6 (full).
const TABLES_MS = CASES.some((c) => c.group === "tables") ? (quick ? 120_000 : 6 * 60_000) : 0;
// The sync.* cases take about 1 minute (quick) or 4 (full) on a busy 2-core machine; room for more.
const SYNC_MS = CASES.some((c) => c.sync) ? (quick ? 150_000 : 6 * 60_000) : 0;
// sync.boot: filling the server log and seeding its set, then the trials: about 15 s (quick) or
// 1.5 minutes (full, most of it Dexie's pull of a million events) on a 2-core machine; room for more.
const BOOT_MS = CASES.some((c) => c.boot) ? (quick ? 40_000 : 5 * 60_000) : 0;
const SOFT_DEADLINE_MS = (quick ? 75_000 : 8 * 60_000) + TABLES_MS + SYNC_MS + BOOT_MS;
const DEADLINE_MS = (quick ? 110_000 : 12 * 60_000) + TABLES_MS + SYNC_MS + BOOT_MS;
const CALL_TIMEOUT_MS = quick ? 60_000 : 180_000;
// Filling a million events through Dexie takes minutes.
const SETUP_TIMEOUT_MS = quick ? 120_000 : 600_000;

// Reset once the sync server is built (building it is not part of the run's deadlines).
let started = Date.now();
const loadStart = loadavg().map((x) => Number(x.toFixed(2)));
const results = [];
const errors = [];
let context;
let page;
// The second tab of tables.tabLatency.
let listenerPage = null;
// Device B of sync.latency: the bench page from another origin.
let deviceB = null;
// The sync server: { child, url } once started.
let syncServer = null;
// acct-0's balance after tables.fold's JS fold: native must agree (the same events).
let jsAcct0;

class Timeout extends Error {}
// An error the page caught and reported: the page itself is fine.
class PageError extends Error {}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, fail) => {
    timer = setTimeout(() => fail(new Timeout(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function log(line) {
  const t = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
  console.log(`[${t}s] ${line}`);
}

/** Calls window.bench[fn](system, arg) in the page; page-side errors come back as { error }. */
async function call(fn, system, arg, { on = page, timeout = CALL_TIMEOUT_MS } = {}) {
  const left = DEADLINE_MS - (Date.now() - started);
  if (left <= 0) throw new Timeout(`run deadline of ${DEADLINE_MS / 1000} s reached`);
  const out = await withTimeout(
    on.evaluate(([fn, system, arg]) => window.bench[fn](system, arg), [fn, system, arg]),
    Math.min(timeout, left),
    `${fn}(${system})`,
  );
  if (out?.error) throw new PageError(out.error);
  return out;
}

/** Loads the bench page into `tab` or a new tab (closing the old one) and imports logfold. */
async function openPage(url, tab) {
  if (page) await withTimeout(page.close(), 10_000, "closing the old page").catch((e) => log(e.message));
  page = tab ?? (await withTimeout(context.newPage(), 30_000, "opening a page"));
  return loadPage(page, url);
}

async function loadPage(p, url) {
  p.on("console", (m) => {
    if (m.type() === "error" || m.text().startsWith("bench:")) log(`page ${m.type()}: ${m.text()}`);
  });
  p.on("pageerror", (e) => log(`page error: ${e.message}`));
  p.on("crash", () => log("page crashed"));
  await withTimeout(p.goto(url), 30_000, "loading the bench page");
  await withTimeout(p.waitForFunction(() => window.bench, null, { timeout: 30_000 }), 35_000,
    "waiting for window.bench");
  const loaded = await withTimeout(p.evaluate(() => window.bench.loadLogfold()), 60_000,
    "importing /pkg/index.js");
  if (!loaded.ok) log(`logfold could not be loaded: ${loaded.error}`);
  return loaded;
}

/** The listening tab of tables.tabLatency: a second page of the same origin and browser. */
async function openListener(url) {
  if (listenerPage) return listenerPage;
  listenerPage = await withTimeout(context.newPage(), 30_000, "opening the second tab");
  const loaded = await loadPage(listenerPage, url);
  if (!loaded.ok) throw new Error(`the second tab could not load logfold: ${loaded.error}`);
  return listenerPage;
}

async function closeListener() {
  if (!listenerPage) return;
  await withTimeout(listenerPage.close(), 10_000, "closing the second tab").catch((e) => log(e.message));
  listenerPage = null;
}

/** Device B of sync.latency: the bench page at `url` (another origin than the bench page's). */
async function openDeviceB(url) {
  if (deviceB) return deviceB;
  deviceB = await withTimeout(context.newPage(), 30_000, "opening device B");
  const loaded = await loadPage(deviceB, url);
  if (!loaded.ok) throw new Error(`device B could not load logfold: ${loaded.error}`);
  return deviceB;
}

async function closeDeviceB() {
  if (!deviceB) return;
  await withTimeout(deviceB.close(), 10_000, "closing device B").catch((e) => log(e.message));
  deviceB = null;
}

/**
 * One trial of sync.latency: device B (another origin) opens the server log and watches for rows,
 * device A appends one event at a time; each round arms B, appends in A (which returns when it
 * started) and waits until B saw the row (when). Round -1 is untimed: it warms the path up.
 */
let deviceTrials = 0;
async function deviceTrial(c, system, base) {
  const name = `bench-latency-${Date.now().toString(36)}-${++deviceTrials}`;
  const arg = { ...base, log: name, name };
  const b = await openDeviceB(c.deviceUrl);
  const t0 = Date.now();
  try {
    await call("latencyOpen", system, { ...arg, listen: true }, { on: b });
    await call("latencyOpen", system, { ...arg, listen: false });
    const latencies = [];
    for (let i = -1; i < arg.total; i++) {
      await call("latencyArm", system, { i }, { on: b });
      const { sent } = await call("latencyAppend", system, { i });
      const { at } = await call("latencyHeard", system, { i }, { on: b });
      if (i >= 0) latencies.push(at - sent);
    }
    return { ms: Date.now() - t0, events: arg.total, latencies };
  } finally {
    await call("latencyClose", system, arg).catch((e) => log(`latencyClose (A): ${e.message}`));
    await call("latencyClose", system, arg, { on: b }).catch((e) => log(`latencyClose (B): ${e.message}`));
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
// Nearest-rank percentile.
const percentile = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil(p * s.length) - 1)];
};
const round = (x, digits) => Number(x.toFixed(digits));
// Where cargo builds: $CARGO_TARGET_DIR if set.
const targetDir = () => resolve(ROOT, process.env.CARGO_TARGET_DIR ?? "target");

/**
 * One trial of tables.tabLatency: the other tab listens while this one appends. A new log name
 * per trial: reopening a just-destroyed log from the other tab can meet that tab's stale copy of
 * the log's head mark in localStorage (shared between tabs, but synced asynchronously) and fail
 * with CORRUPT.
 */
let tabTrials = 0;
async function twoTabTrial(c, system, base) {
  const arg = { ...base, name: `bench-tab-${++tabTrials}` };
  const other = await openListener(c.url);
  await call("tabListen", system, arg, { on: other });
  try {
    return await call(c.fn, system, arg);
  } finally {
    await call("tabStop", system, arg, { on: other }).catch((e) => log(`tabStop: ${e.message}`));
    await call("tabTeardown", system, arg).catch((e) => log(`tabTeardown: ${e.message}`));
  }
}

/** tables.memory: one measurement (sizes barely vary), one row per metric. */
async function measureMemory(c, system) {
  const out = await call(c.fn, system, c.arg);
  const rows = [];
  for (const [metric, value] of Object.entries(out.metrics)) {
    log(`${c.name} ${system}: ${metric} ${(value / 2 ** 20).toFixed(1)} MiB`);
    rows.push({ case: c.name, system, metric, value, unit: "bytes", events: out.events, trials: 1 });
  }
  return rows;
}

/** Warm-up then N.trials timed trials of one case on one system; returns its result row. */
async function measure(c, system) {
  const arg = system !== "logfold" && c.perRecordArg ? c.perRecordArg : c.arg;
  const trials = [];
  const wanted = c.trials ?? N.trials;
  const late = () => Date.now() - started > SOFT_DEADLINE_MS;
  for (let i = late() ? 0 : -(c.warmup ?? N.warmup); i < wanted; i++) {
    if (i > 0 && late()) break;
    const out = c.twoTabs ? await twoTabTrial(c, system, arg)
      : c.devices ? await deviceTrial(c, system, arg)
      : await call(c.fn, system, arg);
    const label = i < 0 ? "warm-up" : `trial ${i + 1}/${wanted}`;
    const stats = !out.stats ? "" : c.sync
      ? ` (${Object.entries(out.stats).map(([k, v]) => `${k} ${v}`).join(", ")}` +
        `${out.note ? `; ${out.note}` : ""}${out.viaPoll ? "; the status poll, not subscribe(), saw the end" : ""})`
      : c.group === "tables"
      ? ` (${out.stats.eventsReplayed} replayed, ${out.stats.snapshotsLoaded} snapshots loaded, ${out.stats.projectionsRebuilt} rebuilt)`
      : ` (${out.stats.transactions} transactions, ${out.stats.segmentsWritten} segments)`;
    if (c.latency) {
      const p50 = percentile(out.latencies, 0.5);
      const p99 = percentile(out.latencies, 0.99);
      log(`${c.name} ${system} ${label}: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms${stats}`);
      if (i >= 0) trials.push({ p50, p99 });
    } else {
      log(`${c.name} ${system} ${label}: ${out.ms.toFixed(1)} ms` +
        (c.metric ? "" : `, ${Math.round((out.events / out.ms) * 1000).toLocaleString("en")} events/s`) + stats);
      if (i >= 0) trials.push({ ms: out.ms, rate: (out.events / out.ms) * 1000 });
      if (out.acct0_balance !== undefined) jsAcct0 = out.acct0_balance;
    }
  }
  const row = { case: c.name, system };
  if (c.latency) {
    row.p50_ms = round(median(trials.map((t) => t.p50)), 3);
    row.p99_ms = round(median(trials.map((t) => t.p99)), 3);
  } else if (c.metric) {
    Object.assign(row, { metric: c.metric, value: round(median(trials.map((t) => t.ms)), 1), unit: "ms" });
  } else {
    row.events_per_s = Math.round(median(trials.map((t) => t.rate)));
  }
  row.events = arg.total;
  row.trials = trials.length;
  return row;
}

/**
 * A case of several figures per trial (`c.metrics`, each in ms; sync.boot): its trials (no
 * warm-up; `c.trialsBy[system]` or `c.trials`), one row per metric the trials returned.
 */
async function measureMetrics(c, system) {
  const wanted = c.trialsBy?.[system] ?? c.trials ?? N.trials;
  const trials = [];
  for (let i = 0; i < wanted; i++) {
    if (i > 0 && Date.now() - started > SOFT_DEADLINE_MS) break;
    const out = await call(c.fn, system, c.arg, { timeout: c.timeout ?? CALL_TIMEOUT_MS });
    const figures = Object.entries(out.metrics).map(([k, v]) => `${k} ${v.toFixed(1)} ms`).join(", ");
    const stats = out.stats ? Object.entries(out.stats).map(([k, v]) => `${k} ${v}`).join(", ") : "";
    const detail = [stats, out.note].filter(Boolean).join("; ");
    log(`${c.name} ${system} trial ${i + 1}/${wanted}: ${figures}${detail ? ` (${detail})` : ""}`);
    trials.push(out);
  }
  return Object.keys(trials[0].metrics).map((metric) => ({
    case: c.name, system, metric, value: round(median(trials.map((t) => t.metrics[metric])), 1), unit: "ms",
    events: trials[0].events, trials: trials.length,
  }));
}

// Whether a later case of `c`'s group, or a later system of `c`, still needs `system`'s database
// (dexie and idb share one).
function groupNeeds(i, system) {
  const c = CASES[i];
  const db = (s) => (s === "idb" ? "dexie" : s);
  const later = (c.systems ?? SYSTEMS).slice((c.systems ?? SYSTEMS).indexOf(system) + 1);
  return later.some((s) => db(s) === db(system)) || CASES.slice(i + 1).some((d) => d.group === c.group &&
    (d.systems ?? SYSTEMS).some((s) => db(s) === db(system)));
}

async function runCases(url) {
  for (const [i, c] of CASES.entries()) {
    const prev = CASES[i - 1];
    const next = CASES[i + 1];
    if (c.sync) {
      if (!syncServer) {
        errors.push({ case: c.name, system: "*", error: "no sync server" });
        continue;
      }
      c.arg.url = syncServer.url;
      c.deviceUrl = url.replace("//127.0.0.1:", "//localhost:");
      if (c.fill || c.boot) {
        try {
          await (c.boot ? bootSetup(c.arg) : fillServer(c.arg));
        } catch (e) {
          errors.push({ case: c.name, system: "*", error: `${c.boot ? "setting up" : "filling"} the server: ${e.message}` });
          log(`${c.name} FAILED to ${c.boot ? "set up" : "fill"} the server: ${e.message}`);
          if (!(e instanceof PageError) && Date.now() - started < DEADLINE_MS) {
            log("opening a new bench page");
            await openPage(url);
          }
          continue;
        }
      }
    }
    for (const system of c.systems ?? SYSTEMS) {
      // A case that reuses the previous case's database fills its own when run alone.
      const setup = c.setup && !(c.reuses && prev?.name === c.reuses);
      try {
        if (setup && c.group) {
          const t = Date.now();
          const out = await call(c.setup, system, c.arg, { timeout: SETUP_TIMEOUT_MS });
          if (out.filled) log(`${c.name} ${system}: filled ${c.arg.total.toLocaleString("en")} events in ${((Date.now() - t) / 1000).toFixed(1)} s`);
        } else if (setup) {
          log(`${c.name} ${system}: filling ${c.arg.total.toLocaleString("en")} events`);
          await call(c.setup, system, c.arg);
        }
        if (c.newPage) {
          // After the setup, so the page holds nothing but what it measures.
          log(`${c.name} ${system}: in a new page`);
          await openPage(url);
        }
        if (c.memory) results.push(...(await measureMemory(c, system)));
        else if (c.metrics) results.push(...(await measureMetrics(c, system)));
        else results.push(await measure({ ...c, url }, system));
      } catch (e) {
        const message = e.message.replace(/^page\.evaluate: /, "");
        errors.push({ case: c.name, system, error: message });
        log(`${c.name} ${system} FAILED: ${message}`);
        if (!(e instanceof PageError)) {
          // A timeout or a crash: the page may be stuck mid-transaction or gone. Go on in a new one.
          if (Date.now() - started >= DEADLINE_MS) return;
          log("opening a new bench page");
          await openPage(url);
          continue;
        }
      }
      if (c.group) {
        if (!groupNeeds(i, system)) {
          await call("tablesTeardown", system, {}).catch((e) => log(`teardown ${system}: ${e.message}`));
        }
        continue;
      }
      const keep = next?.reuses === c.name && (next.systems ?? SYSTEMS).includes(system);
      if (c.setup && !keep) {
        await call("readTeardown", system, {}).catch((e) => log(`teardown ${system}: ${e.message}`));
      }
    }
    if (c.twoTabs) await closeListener();
    if (c.devices) await closeDeviceB();
  }
}

// ---- The sync server ---------------------------------------------------------------------------
const SYNC_PORTS = Array.from({ length: 10 }, (_, i) => 47330 + i);
const CARGO_ENV = { ...process.env, PATH: `${join(homedir(), ".cargo/bin")}:${process.env.PATH}` };
const serverBinary = () => join(targetDir(), "server/logfold-server");

/** `cargo build --profile server -p logfold-server`: nothing to do when it is up to date. */
async function buildServer() {
  log("sync: building logfold-server (cargo build --profile server; not timed)");
  await promisify(execFile)("cargo", ["build", "--profile", "server", "-q", "-p", "logfold-server", "--bin", "logfold-server"],
    { cwd: ROOT, env: CARGO_ENV, timeout: 900_000 });
}

/**
 * Starts logfold-server on the first free port of 47330-47339, SQLite in memory, allowing the bench
 * page's two origins; resolves to { child, url } once it says it listens.
 */
async function startSyncServer(origins) {
  const bin = serverBinary();
  for (const port of SYNC_PORTS) {
    const child = spawn(bin, ["--listen", `127.0.0.1:${port}`, "--database", ":memory:",
      ...origins.flatMap((o) => ["--cors-origin", o])], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    const up = await new Promise((ok) => {
      const timer = setTimeout(() => ok(false), 15_000);
      child.stdout.on("data", (d) => {
        if (String(d).includes("listening on")) { clearTimeout(timer); ok(true); }
      });
      child.stderr.on("data", (d) => { stderr += d; });
      child.on("error", (e) => { stderr += e.message; clearTimeout(timer); ok(false); });
      child.on("exit", () => { clearTimeout(timer); ok(false); });
    });
    if (up) {
      child.stderr.on("data", (d) => String(d).trim().split("\n").forEach((l) => log(`sync server: ${l}`)));
      const url = `http://127.0.0.1:${port}`;
      log(`sync: logfold-server at ${url} (SQLite :memory:), CORS for ${origins.join(", ")}`);
      return { child, url };
    }
    await stopSyncServer({ child });
    if (!/in use/i.test(stderr)) throw new Error(`logfold-server did not start on port ${port}: ${stderr.trim() || "no output"}`);
    log(`sync: port ${port} is in use`);
  }
  throw new Error(`ports ${SYNC_PORTS[0]}-${SYNC_PORTS.at(-1)} are all in use`);
}

async function stopSyncServer(server) {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((ok) => child.once("exit", ok));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

/** sync.initial's server log: `total` ledger events, pushed from node (requests of 10 batches of 1,000). */
async function fillServer({ url, log: name, total }) {
  const head = await serverHead(url, name);
  if (head === total) return;
  if (head !== 0) throw new Error(`server log ${name} holds ${head} events, expected 0 or ${total}`);
  const t = Date.now();
  const next = ledgerEvents();
  const events = wireEvents(next(total));
  const last = await pushAll(url, name, events, { client: "bench-fill" });
  if (last !== total) throw new Error(`the server's head is ${last} after the fill, expected ${total}`);
  log(`sync: filled server log ${name} with ${total.toLocaleString("en")} events from node in ${((Date.now() - t) / 1000).toFixed(1)} s`);
}

/** `logfold_snapshot_uploads_total{result="stored"}` from the server's /metrics. */
async function storedUploads(url) {
  const res = await fetch(`${url}/metrics`);
  if (!res.ok) throw new Error(`/metrics: HTTP ${res.status}`);
  const m = (await res.text()).match(/^logfold_snapshot_uploads_total\{result="stored"\}\s+(\d+)/m);
  return m ? Number(m[1]) : 0;
}

/**
 * sync.boot's server log (untimed, once per run): `total` ledger events pushed from node, then a
 * seeding device in the page (bootSeed) catches up and shares its snapshot set; once the server
 * counts it stored, the seed is closed and deleted and `tail` more events of the same ledger are
 * pushed, so a new device has a tail to pull after the set.
 */
async function bootSetup({ url, log: name, total, tail, waitMs }) {
  const head = await serverHead(url, name);
  if (head !== 0) throw new Error(`server log ${name} holds ${head} events, expected a new log`);
  let t = Date.now();
  const next = ledgerEvents();
  let last = await pushAll(url, name, wireEvents(next(total)), { client: "bench-boot-fill" });
  if (last !== total) throw new Error(`the server's head is ${last} after the fill, expected ${total}`);
  log(`sync.boot: filled server log ${name} with ${total.toLocaleString("en")} events from node in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  t = Date.now();
  const before = await storedUploads(url);
  try {
    const seeded = await call("bootSeed", "logfold", { url, log: name, total, waitMs }, { timeout: SETUP_TIMEOUT_MS });
    log(`sync.boot: the seed caught up in ${(seeded.pullMs / 1000).toFixed(1)} s ` +
      `(${Object.entries(seeded.stats).map(([k, v]) => `${k} ${v}`).join(", ")}) and wrote its snapshots`);
    const until = Date.now() + (quick ? 60_000 : 180_000);
    while ((await storedUploads(url)) <= before) {
      if (Date.now() > until) throw new Error(`the server stored no snapshot set of ${name} within ${((Date.now() - t) / 1000).toFixed(0)} s of the seed's open`);
      await new Promise((ok) => setTimeout(ok, 100));
    }
    log(`sync.boot: the server stored the seed's snapshot set, ${((Date.now() - t) / 1000).toFixed(1)} s after the seed's open`);
  } finally {
    await call("bootSeedClose", "logfold", {}).catch((e) => log(`closing the seed: ${e.message}`));
  }
  t = Date.now();
  last = await pushAll(url, name, wireEvents(next(tail)), { client: "bench-boot-tail" });
  if (last !== total + tail) throw new Error(`the server's head is ${last} after the tail, expected ${total + tail}`);
  log(`sync.boot: pushed a tail of ${tail.toLocaleString("en")} events in ${((Date.now() - t) / 1000).toFixed(1)} s: the server's head is ${last}`);
}

/**
 * tables.fold "native": the same ledger fold in Rust, natively (not wasm), timed by
 * crates/core/examples/ledger_fold. Run after the browser has closed, so nothing competes with it.
 * Builds it first (a minute or two the first time; not counted).
 */
async function nativeFold() {
  const c = { name: "tables.fold", system: "native", total: N.tables };
  const run = promisify(execFile);
  const env = { ...process.env, PATH: `${join(homedir(), ".cargo/bin")}:${process.env.PATH}` };
  try {
    log("tables.fold native: building crates/core/examples/ledger_fold (release)");
    await run("cargo", ["build", "--release", "-q", "-p", "logfold-core", "--example", "ledger_fold"],
      { cwd: ROOT, env, timeout: 600_000 });
    const rates = [];
    for (let i = 0; i < N.tablesTrials; i++) {
      const { stdout } = await run(join(targetDir(), "release/examples/ledger_fold"), [String(c.total)],
        { timeout: 120_000 });
      const out = JSON.parse(stdout.trim().split("\n").pop());
      if (out.errors !== 0 || out.rows !== 10_000) throw new Error(`unexpected fold: ${stdout.trim()}`);
      if (jsAcct0 !== undefined && out.acct0_balance !== jsAcct0) {
        throw new Error(`acct-0 is ${out.acct0_balance} natively but ${jsAcct0} in bench.js: not the same events`);
      }
      log(`tables.fold native trial ${i + 1}/${N.tablesTrials}: ${out.ms} ms, ${out.events_per_s.toLocaleString("en")} events/s`);
      rates.push(out.events_per_s);
    }
    results.push({ case: c.name, system: c.system, events_per_s: Math.round(median(rates)), events: c.total, trials: rates.length });
  } catch (e) {
    errors.push({ case: c.name, system: c.system, error: e.message });
    log(`tables.fold native FAILED: ${e.message}`);
  }
}

async function wasmSize() {
  const file = join(pkgDir, "logfold_bg.wasm");
  try {
    const bytes = await readFile(file);
    const gzip = gzipSync(bytes, { level: 9 }).length;
    // wasm-opt -O strips the name section: if it is there, this is not the optimized release build.
    const names = WebAssembly.Module.customSections(new WebAssembly.Module(bytes), "name");
    if (names.length) {
      log(`note: ${file} has a ${names[0].byteLength}-byte name section: not optimized by wasm-opt?`);
    }
    results.push(
      { case: "size.wasm", system: "logfold", metric: "wasm_bytes", value: bytes.length, unit: "bytes" },
      { case: "size.wasm", system: "logfold", metric: "wasm_gzip_bytes", value: gzip, unit: "bytes" },
    );
  } catch (e) {
    errors.push({ case: "size.wasm", system: "logfold", error: `${file}: ${e.message}` });
  }
}

function figure(row, events) {
  if (!row) return "—";
  if (row.events_per_s !== undefined) {
    const n = row.events !== events ? ` (n=${row.events.toLocaleString("en")})` : "";
    return `${row.events_per_s.toLocaleString("en")}/s${n}`;
  }
  if (row.p50_ms !== undefined) return `p50 ${row.p50_ms.toFixed(2)} / p99 ${row.p99_ms.toFixed(2)} ms`;
  if (row.unit === "bytes" && row.value >= 2 ** 20) return `${(row.value / 2 ** 20).toFixed(1)} MiB`;
  if (row.unit === "bytes") return `${(row.value / 1024).toFixed(1)} KiB`;
  return `${row.value.toLocaleString("en")} ${row.unit}`;
}

// How many times better logfold is than Dexie: higher is better for logfold either way.
function ratio(lf, dx) {
  if (!lf || !dx) return "";
  if (lf.events_per_s && dx.events_per_s) return `${(lf.events_per_s / dx.events_per_s).toFixed(1)}×`;
  if (lf.p50_ms && dx.p50_ms) return `${(dx.p50_ms / lf.p50_ms).toFixed(1)}× (p50)`;
  if (lf.unit === "ms" && dx.unit === "ms" && lf.value && dx.value) return `${(dx.value / lf.value).toFixed(1)}×`;
  return "";
}

function printTable() {
  const rows = [["case", "events", "logfold", "dexie", "idb", "logfold vs dexie"]];
  // Systems other than the three (native, js, broadcast) get a row of their own, in the logfold column.
  const others = [...new Set(results.map((r) => r.system))].filter((s) => !SYSTEMS.includes(s));
  const keys = [...new Set(results.map((r) => `${r.case}\u0000${r.metric ?? ""}`))];
  for (const key of keys) {
    const [name, metric] = key.split("\u0000");
    const pick = (s) => results.find((r) => r.case === name && r.system === s && (r.metric ?? "") === metric);
    const lf = pick("logfold");
    const events = (lf ?? pick("dexie") ?? pick("idb") ?? others.map(pick).find(Boolean))?.events;
    rows.push([
      metric ? `${name} ${metric}` : name,
      events === undefined ? "" : events.toLocaleString("en"),
      figure(lf, events), figure(pick("dexie"), events), figure(pick("idb"), events),
      ratio(lf, pick("dexie")),
    ]);
    for (const s of others) {
      const r = pick(s);
      if (r) rows.push([`  ${s}`, "", figure(r, events), "", "", ""]);
    }
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join("  ");
  console.log("");
  console.log(line(rows[0]));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const r of rows.slice(1)) console.log(line(r));
  console.log("");
}

async function main() {
  const server = await serve({
    mounts: { "/pkg/": pkgDir, "/dexie/": join(ROOT, "node_modules/dexie/dist"), "/": join(ROOT, "bench") },
    port: 0,
  });
  const pagePort = server.address().port;
  const url = `http://127.0.0.1:${pagePort}/?streams=${streams}&durability=${DURABILITY}`;
  // A persistent profile on disk: Playwright's default contexts are off the record, and there
  // IndexedDB lives in memory, which would make every durability setting free.
  const profile = await mkdtemp(join(tmpdir(), "logfold-bench-"));
  let chromiumVersion = "unknown";
  try {
    if (CASES.some((c) => c.sync)) {
      try {
        await buildServer();
        syncServer = await startSyncServer([`http://127.0.0.1:${pagePort}`, `http://localhost:${pagePort}`]);
      } catch (e) {
        errors.push({ case: "sync.*", system: "*", error: `sync server: ${e.message}` });
        log(`sync server: ${e.message}`);
      }
      started = Date.now();
    }
    log(`${quick ? "quick" : "full"} run, ${N.trials} trials after ${N.warmup} warm-up, durability ${DURABILITY}`);
    context = await withTimeout(
      chromium.launchPersistentContext(profile, {
        executablePath: "/usr/bin/chromium",
        headless: true,
        timeout: 60_000,
        // The last two for tables.memory: gc() and unrounded performance.memory.
        args: ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-dev-shm-usage", "--enable-precise-memory-info", "--js-flags=--expose-gc"],
      }),
      70_000, "launching Chromium");
    const blank = context.pages()[0] ?? (await withTimeout(context.newPage(), 30_000, "opening a page"));
    const cdp = await withTimeout(context.newCDPSession(blank), 10_000, "opening CDP");
    const { product } = await withTimeout(cdp.send("Browser.getVersion"), 10_000, "Browser.getVersion");
    chromiumVersion = product.split("/").pop();
    log(`Chromium ${chromiumVersion} at ${url}`);

    const loaded = await openPage(url, blank);
    if (!loaded.ok) errors.push({ case: "*", system: "logfold", error: loaded.error });
    const config = await withTimeout(page.evaluate(() => window.bench.config()), 10_000, "config");
    if (config.durability !== DURABILITY || config.streams !== streams) {
      throw new Error(`the page runs with ${JSON.stringify(config)}, not ${DURABILITY} over ${streams} streams`);
    }
    log(`events: ${config.eventBytes.toFixed(0)} bytes of JSON each (stream, type, data), ` +
      `over ${streams} streams; durability ${DURABILITY}`);

    await runCases(url);
    if (!only || only.includes("size.wasm")) await wasmSize();
  } catch (e) {
    errors.push({ case: "*", system: "*", error: e.message });
    log(`run failed: ${e.message}`);
  } finally {
    await withTimeout(context?.close() ?? Promise.resolve(), 20_000, "closing Chromium")
      .catch((e) => log(e.message));
    if (syncServer) await stopSyncServer(syncServer).catch((e) => log(`stopping the sync server: ${e.message}`));
    server.closeAllConnections();
    await new Promise((ok) => server.close(ok));
    await rm(profile, { recursive: true, force: true }).catch(() => {});
  }
  if (!only || only.includes("tables.fold")) await nativeFold();

  const load = { start: loadStart, end: loadavg().map((x) => round(x, 2)) };
  const out = { chromium: chromiumVersion, quick, durability: DURABILITY, streams, loadavg: load, results, errors };
  const file = join(ROOT, "bench/results/latest.json");
  await writeFile(file, JSON.stringify(out, null, 2) + "\n");
  printTable();
  console.log(`durability: ${DURABILITY} for all systems; median of ${N.trials} trials after a warm-up.`);
  const wanted = (r) => {
    const c = CASES.find((c) => c.name === r.case);
    return c?.memory ? 1 : (c?.trialsBy?.[r.system] ?? c?.trials ?? N.trials);
  };
  const short = results.filter((r) => r.trials !== undefined && r.trials < wanted(r));
  if (short.length) {
    console.log(`past the soft deadline, fewer trials for: ${short.map((r) => `${r.case} ${r.system} (${r.trials})`).join(", ")}`);
  }
  console.log(`load average (1/5/15 min) at start ${load.start.join(" ")}, at end ${load.end.join(" ")}` +
    " on " + `${cpus().length} cores: figures from a busy machine are low and noisy.`);
  console.log(`wrote ${file} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  for (const e of errors) console.log(`ERROR ${e.case} ${e.system}: ${e.error}`);
  return errors.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
