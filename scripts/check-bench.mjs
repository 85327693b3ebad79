// node scripts/check-bench.mjs bench/results/latest.json
// Checks the shape of a bench results file (not its speeds): exits 1 with the reasons if it is wrong.
import { readFile } from "node:fs/promises";

// Every case logfold must have a row for; the bench keeps these names in --quick too.
const LOGFOLD_CASES = [
  "append.batch1",
  "append.batch100",
  "append.batch1000",
  "append.batch10000",
  "append.concurrent10000",
  "append.sequential500",
  "append.create500",
  "append.synced500",
  "read.100000",
  "open.verify100000",
  "open.tail100000",
  "size.wasm",
  "tables.replay",
  "tables.reducer",
  "tables.reducerTotal",
  "tables.coldOpen",
  "tables.memory",
  "tables.tabLatency",
  "sync.initial",
  "sync.push",
  "sync.latency",
  "sync.boot",
];
// Rows that must be there besides logfold's: [case, system, metric or undefined].
const ROWS = [
  ["size.wasm", "logfold", "wasm_bytes"],
  ["size.wasm", "logfold", "wasm_gzip_bytes"],
  ["tables.memory", "logfold", "js_heap_bytes"],
  ["tables.memory", "logfold", "wasm_memory_bytes"],
  ["tables.fold", "native", undefined],
  ["tables.fold", "js", undefined],
  ["sync.initial", "dexie", undefined],
  ["sync.push", "dexie", undefined],
  ["sync.push", "fetch", undefined],
  ["sync.latency", "fetch", undefined],
  ["sync.boot", "logfold", "open_ms"],
  ["sync.boot", "logfold", "usable_ms"],
  ["sync.boot", "logfold-full", "open_ms"],
  ["sync.boot", "logfold-full", "usable_ms"],
  ["sync.boot", "dexie", "usable_ms"],
];
// Cases whose rows give a throughput, and cases whose rows give latencies.
const RATES = ["sync.initial", "sync.push"];
const LATENCIES = ["append.create500", "append.synced500", "sync.latency"];
// Cases whose rows are times in ms (metric rows), each with its count of events and trials.
const TIMES = ["sync.boot"];
const NUMBERS = ["events_per_s", "p50_ms", "p99_ms", "value", "events", "trials"];
// A p50 can be 0 (below the 0.1 ms timer resolution of a page that is not cross-origin
// isolated, as a BroadcastChannel hop is on a fast machine); its p99 then carries the figure.
const FIGURES = ["events_per_s", "p50_ms", "p99_ms", "value"];

function check(json) {
  const problems = [];
  if (json === null || typeof json !== "object" || Array.isArray(json)) return ["not a JSON object"];
  if (typeof json.chromium !== "string" || !json.chromium) problems.push("`chromium` is not a non-empty string");
  if ("quick" in json && typeof json.quick !== "boolean") problems.push("`quick` is not a boolean");
  if (!Array.isArray(json.results) || json.results.length === 0) {
    problems.push("`results` is not a non-empty array");
    return problems;
  }
  json.results.forEach((row, i) => {
    const at = `results[${i}]`;
    if (row === null || typeof row !== "object") return problems.push(`${at} is not an object`);
    if (typeof row.case !== "string" || !row.case) problems.push(`${at}.case is not a non-empty string`);
    if (typeof row.system !== "string" || !row.system) problems.push(`${at}.system is not a non-empty string`);
    for (const key of NUMBERS) {
      if (key in row && !(typeof row[key] === "number" && Number.isFinite(row[key]) && row[key] >= 0)) {
        problems.push(`${at}.${key} is not a finite number >= 0: ${JSON.stringify(row[key])}`);
      }
    }
    const positive = (x) => typeof x === "number" && Number.isFinite(x) && x > 0;
    if (!FIGURES.some((key) => positive(row[key]))) {
      problems.push(`${at} (${row.case} ${row.system}) has no finite positive ${FIGURES.join(", ")}`);
    }
    if ("metric" in row && (typeof row.metric !== "string" || typeof row.unit !== "string")) {
      problems.push(`${at} has a metric without string metric and unit`);
    }
    if (RATES.includes(row.case) && !(positive(row.events_per_s) && positive(row.events) && positive(row.trials))) {
      problems.push(`${at} (${row.case} ${row.system}) needs positive events_per_s, events and trials`);
    }
    if (TIMES.includes(row.case) &&
        !(row.unit === "ms" && typeof row.metric === "string" && positive(row.value) && positive(row.events) && positive(row.trials))) {
      problems.push(`${at} (${row.case} ${row.system}) needs a metric in unit ms with positive value, events and trials`);
    }
    if (LATENCIES.includes(row.case) &&
        !(positive(row.p50_ms) && positive(row.p99_ms) && row.p99_ms >= row.p50_ms && positive(row.events))) {
      problems.push(`${at} (${row.case} ${row.system}) needs positive p50_ms <= p99_ms and events`);
    }
  });
  const logfold = new Set(json.results.filter((r) => r?.system === "logfold").map((r) => r.case));
  for (const name of LOGFOLD_CASES) {
    if (!logfold.has(name)) problems.push(`no logfold result for ${name}`);
  }
  for (const [name, system, metric] of ROWS) {
    if (!json.results.some((r) => r?.case === name && r.system === system && r.metric === metric)) {
      problems.push(`no ${system} ${name} row${metric ? ` with metric ${metric}` : ""}`);
    }
  }
  return problems;
}

const file = process.argv[2];
if (!file) {
  console.error("usage: node scripts/check-bench.mjs <results.json>");
  process.exit(2);
}
let problems;
try {
  problems = check(JSON.parse(await readFile(file, "utf8")));
} catch (e) {
  problems = [`cannot read ${file}: ${e.message}`];
}
if (problems.length) {
  console.error(`${file}: ${problems.length} problem(s)`);
  for (const p of problems) console.error(`  - ${p}`);
  process.exit(1);
}
console.log(`${file}: ok`);
