// The package as apps import it (issue #12): pkg/ is packed with `npm pack` and the tarball is
// installed into the small apps of tests/apps/ (one shared node_modules), which are built the
// way their users build them — Vite (dev server and production build), webpack, no bundler at
// all, a dedicated worker, React through logfold/react — and run in headless Chromium against
// the real sync server. Strict TypeScript compiles against the installed types.
//
// Each app test seeds the app's server log from node, lets the app open, append and settle, and
// checks what the page saw against the server: table rows, offsets, subscriptions, and a remote
// append arriving live.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";
import { ROOT, PKG_DIR, profileDir, launch, ev, sleep, pkgBuilt, withTimeout, WAIT } from "./harness.mjs";
import { startSyncServer, serverBuilt, SERVER_BIN } from "./sync-server.mjs";
import { serve } from "../../scripts/serve.mjs";

const APPS = join(ROOT, "tests/apps");
const BIN = join(APPS, "node_modules/.bin");
// 47340–47349 are this file's. The built apps share one static origin; each Vite dev server is
// another origin, so it gets a sync server of its own (each allows one CORS origin).
const PORTS = { sync: 47340, static: 47341, viteDev: 47342, viteDevSync: 47343, vite7Dev: 47344, vite7DevSync: 47345, reactDev: 47346, reactDevSync: 47347, workerDev: 47348, workerDevSync: 47349 };
const STATIC = `http://127.0.0.1:${PORTS.static}`;
const opts = { timeout: 180_000 };

let browser, statics, sync, installed;

/** Runs a command to completion; throws with its output when it fails. */
function run(cmd, args, { cwd = APPS, timeout = 240_000 } = {}) {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", timeout });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const npm = (...args) => run("npm", [...args, "--no-audit", "--no-fund", "--loglevel=error"]);

/**
 * The shared devDependencies (npm ci, only when the lockfile changed), then the tarball of
 * pkg/ as it is now. Returns what npm pack says of the tarball.
 */
function install() {
  const hidden = join(APPS, "node_modules/.package-lock.json");
  const lock = join(APPS, "package-lock.json");
  if (!existsSync(hidden) || statSync(lock).mtimeMs > statSync(hidden).mtimeMs) npm("ci");
  mkdirSync(join(APPS, ".pack"), { recursive: true });
  const [packed] = JSON.parse(run("npm", ["pack", PKG_DIR, "--pack-destination", ".pack", "--json", "--loglevel=error"]));
  // Same name and version as the last one: npm could keep the old files, so remove them first.
  rmSync(join(APPS, "node_modules/logfold"), { recursive: true, force: true });
  npm("install", "--no-save", `./.pack/${packed.filename}`);
  const same = (f) => readFileSync(join(APPS, "node_modules/logfold", f)).equals(readFileSync(join(PKG_DIR, f)));
  assert.ok(same("logfold_bg.wasm") && same("index.js"), "the installed logfold is not the pkg/ just packed");
  return packed;
}

before(async () => {
  assert.ok(pkgBuilt(), "pkg/ is not built: npm run build");
  assert.ok(serverBuilt(), `no server binary at ${SERVER_BIN}: cargo build --profile server -p logfold-server`);
  const t0 = Date.now();
  installed = install();
  console.log(`installed ${installed.filename} (${installed.files.length} files) in ${Date.now() - t0} ms`);
  statics = await serve({ mounts: { "/": APPS }, port: PORTS.static, host: "127.0.0.1" });
  sync = await startSyncServer({ port: PORTS.sync, corsOrigin: STATIC });
  browser = await launch(await profileDir("package"));
});

after(async () => {
  await browser?.close();
  await sync?.stop();
  await new Promise((ok) => (statics ? statics.close(ok) : ok()));
});

// ---- the server side ------------------------------------------------------------------------

// A UUIDv7 text: 48 bits of milliseconds, then random bits with the version and variant set.
function uuid7() {
  const hex = Date.now().toString(16).padStart(12, "0") + [...crypto.getRandomValues(new Uint8Array(10))].map((b) => b.toString(16).padStart(2, "0")).join("");
  const variant = ((parseInt(hex[16], 16) & 3) | 8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-7${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

const batches = new Map(); // the next batch number per server log, for node's own client
/** Pushes `events` as one batch of another device (node) straight to the server. */
async function push(server, log, events) {
  const batch = (batches.get(log) ?? 0) + 1;
  batches.set(log, batch);
  const body = {
    protocol: 1,
    batches: [{
      client: `node-${log}`,
      epoch: 1,
      batch,
      expected: {},
      events: events.map((e) => ({ id: uuid7(), meta: null, time: Date.now(), version: 1, ...e })),
    }],
  };
  const r = await fetch(`${server.url}/v1/logs/${log}/push`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const answer = await r.json();
  assert.equal(answer.results?.[0]?.status, "accepted", `node's push to ${log}: ${JSON.stringify(answer)}`);
}

const seed = (server, log) =>
  push(server, log, [
    { stream: "acct-seed", type: "Opened", data: { owner: "Seed" } },
    { stream: "acct-seed", type: "Deposited", data: { amount: 40 } },
    { stream: "vault", type: "Opened", data: { owner: "Bank" } },
  ]);

/** The accounts table as the server's log folds it: what every page must show once synced. */
function fold(events) {
  const rows = new Map();
  for (const { stream, type, data } of events) {
    if (type === "Opened") rows.set(stream, { owner: data.owner, balance: 0, deposits: 0 });
    if (type === "Deposited") {
      const row = rows.get(stream);
      rows.set(stream, { ...row, balance: row.balance + data.amount, deposits: row.deposits + 1 });
    }
  }
  return [...rows].sort(([a], [b]) => (a < b ? -1 : 1)).map(([key, row]) => ({ key, row }));
}

// ---- the apps -------------------------------------------------------------------------------

/** Polls `fn` until it returns something truthy. */
async function until(fn, what, ms = WAIT) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

const listed = (page) => page.$$eval("#rows li", (items) => items.map((li) => li.textContent));
const asText = (rows) => rows.map(({ key, row }) => `${key} ${row.owner} ${row.balance}`);

/**
 * The ledger scenario of tests/apps/shared/ledger.js in the app at `url`: its own account
 * opened with two deposits, the seed pulled, a remote deposit heard live, one more of its own
 * pushed. `server` is the sync server the app's origin may call.
 */
async function ledgerScenario(url, { server, name }) {
  const log = `${name}-${Date.now()}`; // a fresh server log per run
  const account = `acct-${name}`;
  await seed(server, log);
  const page = await browser.newPage(url, { wait: false });
  try {
    await page.waitForFunction(() => window.app).catch((e) => {
      throw new Error(`${e.message}; page errors: ${page.errors.join(" | ")}`);
    });
    const report = await ev(page, (a) => window.app.start(a), { name: log, url: server.url, serverLog: log, account, owner: name });

    // The page's log is the server's, offset for offset.
    const onServer = await server.events(log);
    assert.equal(onServer.head, 6, "3 seeded events and the app's 3");
    assert.deepEqual(report.events.map((e) => e.id), onServer.events.map((e) => e.id));
    assert.deepEqual(report.events.map((e) => e.offset), [1, 2, 3, 4, 5, 6]);
    for (const e of report.events) assert.equal(e.seq, e.offset);
    assert.equal(report.status.pending, 0);
    assert.equal(report.status.confirmed, 6);

    // The table is the fold of the server's log, and the page rendered it.
    assert.deepEqual(report.rows, fold(onServer.events));
    assert.deepEqual(report.rows.find((r) => r.key === account).row, { owner: name, balance: 350, deposits: 2 });
    assert.equal(report.total, 390);
    await until(async () => (await listed(page)).join() === asText(report.rows).join(), "the rendered rows");
    assert.ok(report.changes.some((c) => c.changes.some((ch) => ch.key === account && ch.row?.balance === 350)), "the subscription heard the deposits");
    assert.ok(report.states.includes("syncing"), `sync states heard: ${report.states}`);

    // Another device deposits: the page pulls it live, the subscription and the page show it.
    await push(server, log, [{ stream: "acct-seed", type: "Deposited", data: { amount: 5 } }]);
    // (Polled as a whole: a report reads the log, then the table, and a pull may land between.)
    const live = await until(async () => {
      const r = await ev(page, () => window.app.report());
      return r.rows.find((x) => x.key === "acct-seed").row.balance === 45 && r.events.at(-1).offset === 7 && r;
    }, "the remote deposit in the page's log and table");
    assert.ok(live.changes.some((c) => c.seq === 7 && c.changes[0].row.balance === 45), "the subscription heard the remote deposit");
    await until(async () => (await listed(page)).includes("acct-seed Seed 45"), "the remote deposit rendered");

    // And the page's next append reaches the server.
    await ev(page, (a) => window.app.deposit(a, 1), account);
    const last = (await server.events(log)).events.at(-1);
    assert.equal(last.offset, 8);
    assert.deepEqual([last.stream, last.type, last.data], [account, "Deposited", { amount: 1 }]);
    assert.deepEqual(page.errors, []);
  } finally {
    await page.close();
  }
}

const VITE = join(APPS, "node_modules/vite/bin/vite.js");
const VITE7 = join(APPS, "node_modules/vite7/bin/vite.js"); // by path: both declare the bin "vite"

/** Builds an app, telling test `t` how long it took. */
function build(t, what, cmd, args, cwd) {
  const t0 = Date.now();
  run(cmd, args, { cwd });
  t.diagnostic(`${what}: ${Date.now() - t0} ms`);
}

const viteBuild = (t, app) => build(t, `vite build ${app}`, VITE, ["build", "--logLevel", "warn"], join(APPS, app));

/**
 * Runs `fn(url, server)` against Vite's dev server (`vite`: its bin) on tests/apps/`app`, and a
 * sync server of its own that allows the dev server's origin.
 */
async function onDevServer(vite, app, [port, syncPort], fn) {
  const origin = `http://127.0.0.1:${port}`;
  const server = await startSyncServer({ port: syncPort, corsOrigin: origin });
  // --force: pre-bundle logfold again, not from an earlier run's cache
  const dev = spawn(vite, ["--host", "127.0.0.1", "--port", String(port), "--strictPort", "--force"], { cwd: join(APPS, app), stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  dev.stdout.on("data", (d) => (output += d));
  dev.stderr.on("data", (d) => (output += d));
  const exited = new Promise((ok) => dev.once("exit", ok));
  try {
    await until(() => fetch(`${origin}/`).then((r) => r.ok, () => false), `vite dev on ${origin}`).catch((e) => {
      throw new Error(`${e.message}: ${output}`);
    });
    await fn(`${origin}/`, server);
  } finally {
    dev.kill("SIGTERM");
    await withTimeout(exited, 10_000, "vite dev exit").catch(() => dev.kill("SIGKILL"));
    await server.stop();
  }
}

test("a Vite production build of the ledger app syncs, folds and renders", opts, async (t) => {
  viteBuild(t, "vite");
  await ledgerScenario(`${STATIC}/vite/dist/index.html`, { server: sync, name: "vite-build" });
});

test("the ledger app on Vite's dev server, logfold pre-bundled", opts, async () => {
  await onDevServer(VITE, "vite", [PORTS.viteDev, PORTS.viteDevSync], async (url, server) => {
    await ledgerScenario(url, { server, name: "vite-dev" });
  });
});

test("the ledger app on Vite 7's dev server, logfold excluded from pre-bundling as the README says", opts, async () => {
  await onDevServer(VITE7, "vite7", [PORTS.vite7Dev, PORTS.vite7DevSync], async (url, server) => {
    await ledgerScenario(url, { server, name: "vite7-dev" });
  });
});

test("a webpack 5 production build of the ledger app syncs, folds and renders", opts, async (t) => {
  build(t, "webpack", join(BIN, "webpack"), ["--config", "webpack/webpack.config.js"], APPS);
  await ledgerScenario(`${STATIC}/webpack/index.html`, { server: sync, name: "webpack" });
});

test("a page with no bundler imports the installed package through an import map", opts, async () => {
  await ledgerScenario(`${STATIC}/plain/index.html`, { server: sync, name: "plain" });
});

test("the log opened in a dedicated worker (Vite build), the page talking to it by postMessage", opts, async (t) => {
  viteBuild(t, "worker");
  await ledgerScenario(`${STATIC}/worker/dist/index.html`, { server: sync, name: "worker" });
});

test("the log in a dedicated worker on Vite's dev server", opts, async () => {
  await onDevServer(VITE, "worker", [PORTS.workerDev, PORTS.workerDevSync], async (url, server) => {
    await ledgerScenario(url, { server, name: "worker-dev" });
  });
});

/**
 * tests/apps/react at `url`: the hooks show the pulled seed, follow appends and clicks, show the
 * sync status move, and render no more than once per change (`strict`: twice, StrictMode's
 * development renders).
 */
async function reactScenario(url, { server, name, strict }) {
  const log = `${name}-${Date.now()}`;
  await seed(server, log);
  const q = new URLSearchParams({ name: log, sync: server.url, log, account: "acct-ann" });
  const page = await browser.newPage(`${url}?${q}`, { wait: false });
  const text = (sel) => page.evaluate((s) => document.querySelector(s)?.textContent ?? null, sel);
  const waitText = (sel, want) =>
    until(async () => (await text(sel)) === want, `${sel} to read ${JSON.stringify(want)}`).catch(async (e) => {
      throw new Error(`${e.message}; it reads ${JSON.stringify(await text(sel))}; ${page.errors.join(" | ")}`);
    });
  try {
    // The pulled seed, through the prefix query (the vault is not an acct-).
    await waitText("#rows", "acct-seed Seed 40");
    await waitText("#row", "no account");
    await waitText("#status", "pending 0, confirmed 3");
    await ev(page, () => window.log.append({ stream: "acct-ann", type: "Opened", data: { owner: "Ann" } }));
    for (let i = 0; i < 3; i++) await page.click("#deposit");
    await waitText("#row", "Ann has 30 after 3 deposits");
    assert.deepEqual(await listed(page), ["acct-ann Ann 30", "acct-seed Seed 40"]);
    await waitText("#total", "70");
    await waitText("#status", "pending 0, confirmed 7");
    assert.equal(await server.head(log), 7);
    const statuses = await ev(page, () => window.statuses);
    assert.ok(statuses.some((s) => s.pending > 0), `a render showed pending appends: ${JSON.stringify(statuses)}`);

    // Another device's deposit re-renders the table and the total.
    await push(server, log, [{ stream: "acct-seed", type: "Deposited", data: { amount: 5 } }]);
    await waitText("#total", "75");
    assert.deepEqual(await listed(page), ["acct-ann Ann 30", "acct-seed Seed 45"]);

    // Cached snapshots: once idle nothing renders again (an uncached one loops or throws), and
    // a component renders at most once per change it heard, after its first render or two.
    const { renders, heard } = await ev(page, () => ({ renders: { ...window.renders }, heard: { ...window.heard } }));
    await sleep(500);
    assert.deepEqual(await ev(page, () => ({ ...window.renders })), renders);
    const changes = { accounts: heard.accounts, row: heard.accounts, total: heard.accounts, status: heard.status };
    for (const [component, n] of Object.entries(renders)) {
      const most = (changes[component] + 2) * (strict ? 2 : 1);
      assert.ok(n <= most, `${component} rendered ${n} times for ${changes[component]} changes`);
    }
    assert.deepEqual(page.errors, []);
  } finally {
    await page.close();
  }
}

test("logfold/react in a React app (Vite build): rows render and follow appends, sync status changes", opts, async (t) => {
  viteBuild(t, "react");
  await reactScenario(`${STATIC}/react/dist/index.html`, { server: sync, name: "react" });
});

test("logfold/react on Vite's dev server: development React, StrictMode, pre-bundled", opts, async () => {
  await onDevServer(VITE, "react", [PORTS.reactDev, PORTS.reactDevSync], async (url, server) => {
    await reactScenario(url, { server, name: "react-dev", strict: true });
  });
});

test("strict TypeScript compiles against the installed types (bundler and NodeNext resolution)", opts, () => {
  for (const config of ["tsconfig.json", "tsconfig.nodenext.json"]) {
    const r = spawnSync(join(BIN, "tsc"), ["-p", config, "--pretty", "false"], { cwd: join(APPS, "ts"), encoding: "utf8", timeout: 120_000 });
    assert.equal(r.status, 0, `tsc -p ${config}:\n${r.stdout}${r.stderr}`);
  }
});

test("the installed package's exports: the entry, logfold/react, the wasm and package.json; internals stay private", opts, () => {
  const resolve = createRequire(join(APPS, "package.json")).resolve;
  const dir = join(APPS, "node_modules/logfold");
  assert.equal(resolve("logfold"), join(dir, "index.js"));
  assert.equal(resolve("logfold/react"), join(dir, "react.js"));
  assert.equal(resolve("logfold/logfold_bg.wasm"), join(dir, "logfold_bg.wasm"));
  assert.equal(resolve("logfold/package.json"), join(dir, "package.json"));
  assert.throws(() => resolve("logfold/sync.js"), { code: "ERR_PACKAGE_PATH_NOT_EXPORTED" });
});
