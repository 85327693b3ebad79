// node bench/engines.mjs [--quick] [--engine firefox|webkit|chromium,...]
// The bench's main cases (appends, reads, open, table replay, reducer) in other engines, through
// each engine's WebDriver (tests/engines/drivers.mjs): logfold beside Dexie and raw IndexedDB in
// the same bench page (bench/index.html), strict durability. bench/run.mjs is the full bench in
// Chromium (playwright); this is its cross-engine subset. Writes bench/results/engines.json and
// prints a table. Figures only: it asserts no speed, and exits non-zero only when a case could not run.
// WebKitGTK's WebDriver sessions use an ephemeral data store, so its IndexedDB figures are of an
// in-memory store: not comparable with the others' on-disk ones.
import { writeFile } from "node:fs/promises";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { launch, withTimeout, ROOT, PKG_DIR, PORTS } from "../tests/engines/drivers.mjs";
import { serve } from "../scripts/serve.mjs";

const argv = process.argv.slice(2);
const quick = argv.includes("--quick");
const option = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const engines = (option("--engine") ?? "firefox").split(",");
const SYSTEMS = ["logfold", "dexie", "idb"];
const N = quick
  ? { trials: 3, batch1: 100, batch100: 1000, batch1000: 2000, batch10000: 10000, concurrent: 2000, concurrentPerRecord: 300, sequential: 100, read: 20000, tables: 100_000 }
  : { trials: 5, batch1: 500, batch100: 5000, batch1000: 10000, batch10000: 20000, concurrent: 10000, concurrentPerRecord: 1000, sequential: 500, read: 100000, tables: 300_000 };
const CALL_TIMEOUT_MS = 180_000;

const CASES = [
  { name: "append.batch1", fn: "appendBatches", arg: { batch: 1, total: N.batch1 } },
  { name: "append.batch100", fn: "appendBatches", arg: { batch: 100, total: N.batch100 } },
  { name: "append.batch1000", fn: "appendBatches", arg: { batch: 1000, total: N.batch1000 } },
  { name: "append.batch10000", fn: "appendBatches", arg: { batch: 10000, total: N.batch10000 } },
  { name: "append.concurrent", fn: "appendConcurrent", arg: { total: N.concurrent }, perRecordArg: { total: N.concurrentPerRecord } },
  { name: "append.sequential", fn: "appendSequential", arg: { total: N.sequential }, latency: true },
  { name: "read", fn: "readAll", arg: { total: N.read }, setup: "readSetup", keep: true },
  { name: "open.verify", fn: "reopen", arg: { total: N.read }, systems: ["logfold"], metric: "open_ms", teardown: "readTeardown" },
  { name: "tables.replay", fn: "tablesReplay", arg: { total: N.tables }, setup: "tablesSetup", teardown: "tablesTeardown", trials: 2, warmup: 0 },
  { name: "tables.reducer", fn: "tablesReducer", arg: { total: N.tables }, systems: ["logfold", "dexie"], setup: "tablesSetup", teardown: "tablesTeardown", trials: 2, warmup: 0 },
];

const started = Date.now();
const log = (line) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${line}`);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const percentile = (xs, p) => [...xs].sort((a, b) => a - b)[Math.max(0, Math.ceil(p * xs.length) - 1)];

async function call(b, fn, system, arg) {
  const out = await b.run(([fn, system, arg]) => window.bench[fn](system, arg), [fn, system, arg], CALL_TIMEOUT_MS);
  if (out?.error) throw new Error(out.error);
  return out;
}

async function measure(b, c, system) {
  const arg = system !== "logfold" && c.perRecordArg ? c.perRecordArg : c.arg;
  const wanted = c.trials ?? N.trials;
  const trials = [];
  for (let i = -(c.warmup ?? 1); i < wanted; i++) {
    const out = await call(b, c.fn, system, arg);
    if (i < 0) continue;
    trials.push(c.latency ? { p50: percentile(out.latencies, 0.5), p99: percentile(out.latencies, 0.99) } : { ms: out.ms, rate: (out.events / out.ms) * 1000 });
  }
  const row = { case: c.name, system, events: arg.total, trials: trials.length };
  if (c.latency) Object.assign(row, { p50_ms: median(trials.map((t) => t.p50)), p99_ms: median(trials.map((t) => t.p99)) });
  else if (c.metric) Object.assign(row, { metric: c.metric, value: Math.round(median(trials.map((t) => t.ms)) * 10) / 10, unit: "ms" });
  else row.events_per_s = Math.round(median(trials.map((t) => t.rate)));
  return row;
}

function figure(r) {
  if (!r) return "—";
  const n = r.events.toLocaleString("en");
  if (r.events_per_s !== undefined) return `${r.events_per_s.toLocaleString("en")}/s (n=${n})`;
  if (r.p50_ms !== undefined) return `p50 ${r.p50_ms.toFixed(2)} / p99 ${r.p99_ms.toFixed(2)} ms`;
  return `${r.value} ms (n=${n})`;
}

async function runEngine(engine, url, results, errors) {
  const b = await launch(engine, { port: PORTS.benchDriver });
  try {
    await b.driver.get(url);
    await withTimeout((async () => { while (!(await b.run(() => Boolean(window.bench)))) await new Promise((ok) => setTimeout(ok, 100)); })(), 30_000, "window.bench");
    const loaded = await b.run(() => window.bench.loadLogfold());
    if (!loaded.ok) throw new Error(`logfold could not be loaded: ${loaded.error}`);
    const version = `${b.browserName} ${b.version}`;
    log(`${engine}: ${version}`);
    for (const c of CASES) {
      for (const system of c.systems ?? SYSTEMS) {
        try {
          if (c.setup) await call(b, c.setup, system, c.arg);
          const row = await measure(b, c, system);
          row.engine = engine;
          row.browser = version;
          results.push(row);
          log(`${engine} ${c.name} ${system}: ${figure(row)}`);
        } catch (e) {
          errors.push({ engine, case: c.name, system, error: e.message.split("\n")[0] });
          log(`${engine} ${c.name} ${system} FAILED: ${e.message.split("\n")[0]}`);
        } finally {
          if (c.teardown) await call(b, c.teardown, system, {}).catch(() => {});
          else if (c.setup && !c.keep) await call(b, "readTeardown", system, {}).catch(() => {});
        }
      }
      if (c.keep) {
        // open.verify reopens logfold's read log; the others' are done.
        for (const s of SYSTEMS.filter((s) => s !== "logfold")) await call(b, "readTeardown", s, {}).catch(() => {});
      }
    }
  } finally {
    await b.close();
  }
}

async function main() {
  const server = await serve({
    mounts: { "/pkg/": PKG_DIR, "/dexie/": join(ROOT, "node_modules/dexie/dist"), "/": join(ROOT, "bench") },
    port: PORTS.benchPage,
  });
  const url = `http://127.0.0.1:${PORTS.benchPage}/?streams=100&durability=strict`;
  const results = [];
  const errors = [];
  const load = loadavg().map((x) => x.toFixed(2));
  try {
    for (const engine of engines) {
      try {
        await runEngine(engine, url, results, errors);
      } catch (e) {
        errors.push({ engine, case: "*", system: "*", error: e.message.split("\n")[0] });
        log(`${engine} FAILED: ${e.message}`);
      }
    }
  } finally {
    server.closeAllConnections?.();
    await new Promise((ok) => server.close(ok));
  }
  const file = join(ROOT, "bench/results/engines.json");
  await writeFile(file, JSON.stringify({ quick, durability: "strict", engines, loadavg: { start: load, end: loadavg().map((x) => x.toFixed(2)) }, results, errors }, null, 2) + "\n");
  for (const engine of engines) {
    const rows = [["case", "logfold", "dexie", "idb"]];
    for (const c of CASES) {
      const pick = (s) => results.find((r) => r.engine === engine && r.case === c.name && r.system === s);
      rows.push([c.name, figure(pick("logfold")), figure(pick("dexie")), figure(pick("idb"))]);
    }
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    console.log(`\n${engine} (${results.find((r) => r.engine === engine)?.browser ?? "?"}), strict durability, median of trials after a warm-up:`);
    if (engine === "webkit") console.log("(WebKitGTK under WebDriver keeps IndexedDB in memory, an ephemeral session: not comparable with on-disk figures)");
    for (const r of rows) console.log(r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join("  "));
  }
  console.log(`\nload average at start ${load.join(" ")} on ${cpus().length} cores; wrote ${file} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  for (const e of errors) console.log(`ERROR ${e.engine} ${e.case} ${e.system}: ${e.error}`);
  return errors.length ? 1 : 0;
}

main().then((code) => process.exit(code), (e) => { console.error(e); process.exit(1); });
