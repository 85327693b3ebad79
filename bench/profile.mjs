// node bench/profile.mjs <bench function> [json arg] [--system logfold] [--top 25] [--relaxed] [--sync]
// Runs one bench function (see window.bench in bench.js) for one system under Chromium's
// sampling profiler (DevTools protocol) and prints the functions with the most self time,
// wasm ones by their names. A warm-up run comes first, unprofiled. --sync starts the sync server
// (built by the bench: target/server/logfold-server, SQLite in memory) and passes its URL as `url`.
// Example: node bench/profile.mjs appendSequential '{"total":2000}' --sync
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { chromium } from "playwright-core";
import { serve } from "../scripts/serve.mjs";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const argv = process.argv.slice(2);
const option = (name, fallback) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : fallback;
};
const [fn, rawArg = "{}"] = argv.filter((a, i) => !a.startsWith("--") && !argv[i - 1]?.startsWith("--"));
if (!fn) {
  console.error("usage: node bench/profile.mjs <bench function> [json arg] [--system logfold] [--top 25]");
  process.exit(2);
}
const system = option("--system", "logfold");
const top = Number(option("--top", 25));
const durability = argv.includes("--relaxed") ? "relaxed" : "strict";

const server = await serve({
  mounts: { "/pkg/": join(ROOT, "pkg"), "/dexie/": join(ROOT, "node_modules/dexie/dist"), "/": join(ROOT, "bench") },
  port: 0,
});
const origin = `http://127.0.0.1:${server.address().port}`;
const SYNC_URL = "http://127.0.0.1:47339";
let syncServer = null;
if (argv.includes("--sync")) {
  const bin = resolve(ROOT, process.env.CARGO_TARGET_DIR ?? "target", "server/logfold-server");
  syncServer = spawn(bin, ["--listen", new URL(SYNC_URL).host, "--database", ":memory:", "--cors-origin", origin],
    { stdio: ["ignore", "pipe", "inherit"] });
  for (;;) {
    const [d] = await once(syncServer.stdout, "data");
    if (String(d).includes("listening on")) break;
  }
}
const profileDir = await mkdtemp(join(tmpdir(), "logfold-profile-"));
const context = await chromium.launchPersistentContext(profileDir, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
});
try {
  const page = context.pages()[0] ?? (await context.newPage());
  await page.goto(`${origin}/?durability=${durability}`);
  await page.evaluate(() => window.bench.loadLogfold());
  const arg = { ...JSON.parse(rawArg), ...(syncServer ? { url: SYNC_URL } : {}) };
  const run = () => page.evaluate(([f, s, a]) => window.bench[f](s, a), [fn, system, arg]);
  await run();
  const cdp = await context.newCDPSession(page);
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: 100 });
  await cdp.send("Profiler.start");
  const result = await run();
  const { profile } = await cdp.send("Profiler.stop");
  report(profile, result);
} finally {
  await context.close();
  server.close();
  syncServer?.kill();
  await rm(profileDir, { recursive: true, force: true });
}

function report(profile, result) {
  const self = new Map();
  const total = profile.samples.length;
  for (const node of profile.nodes) {
    const f = node.callFrame;
    const name = f.functionName || "(anonymous)";
    const where = f.url ? `${f.url.replace(/^.*\//, "")}:${f.lineNumber + 1}` : "";
    const k = where && !name.startsWith("$") ? `${name} ${where}` : name;
    self.set(k, (self.get(k) ?? 0) + (node.hitCount ?? 0));
  }
  const rows = [...self].sort((a, b) => b[1] - a[1]).slice(0, top);
  console.log(`${fn}(${system}): ${JSON.stringify(summary(result))}`);
  console.log(`${total} samples at 100 µs; self time by function:`);
  for (const [name, hits] of rows) console.log(`${((100 * hits) / total).toFixed(1).padStart(5)}%  ${name}`);
}

function summary(result) {
  if (!result || typeof result !== "object") return result;
  const { latencies, ...rest } = result;
  if (latencies) {
    const sorted = [...latencies].sort((a, b) => a - b);
    rest.p50 = sorted[Math.floor(sorted.length * 0.5)];
    rest.p99 = sorted[Math.floor(sorted.length * 0.99)];
  }
  return rest;
}
