// The offline demo (www/) as `npm start` runs it: the site scripts/demo-site.mjs builds, served
// by the sync server itself. Offline from the first visit, a transfer in every open tab, time
// travel, and a rejection in the log inspector. Screenshots go to tests/e2e/output/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, profileDir, launch, sleep, TEST_TIMEOUT } from "./harness.mjs";
import { buildDemo } from "../../scripts/demo-site.mjs";

const PORT = 47316;
const SERVER = join(process.env.CARGO_TARGET_DIR ?? join(ROOT, "target"), "server/logfold-server");
const OUTPUT = join(ROOT, "tests/e2e/output");
const url = `http://127.0.0.1:${PORT}/`;
let server, browser, dir;

async function startServer() {
  server = spawn(SERVER, ["--listen", `127.0.0.1:${PORT}`, "--database", join(dir, "demo.sqlite3"), "--static", join(dir, "site")], { stdio: "ignore" });
  for (let i = 0; ; i++) {
    if (await fetch(`${url}healthz`).then((r) => r.ok, () => false)) return;
    if (i > 100) throw new Error("the sync server did not start");
    await sleep(100);
  }
}

async function stopServer() {
  const exited = new Promise((ok) => server.once("exit", ok));
  server.kill("SIGKILL");
  await exited;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "logfold-demo-"));
  await buildDemo(join(dir, "site"));
  await mkdir(OUTPUT, { recursive: true });
  await startServer();
  browser = await launch(await profileDir("demo"));
});
after(async () => {
  await browser?.close();
  server?.kill("SIGKILL");
  if (dir) await rm(dir, { recursive: true, force: true });
});

const text = (page, id) => page.$eval(`#${id}`, (e) => e.textContent);
const rows = (page, body) => page.$$eval(`#${body} tr`, (trs) => trs.map((r) => [...r.cells].map((c) => c.textContent)));
const balances = async (page) => Object.fromEntries((await rows(page, "accounts")).map((r) => [r[0], r[2]]));
const status = (page) => page.evaluate(() => document.getElementById("sync-detail").textContent);
const shot = (page, name) => page.screenshot({ path: join(OUTPUT, `demo-${name}.png`), fullPage: true });

async function visit(page, path = "") {
  await page.goto(url + path);
  await page.waitForSelector("body[data-ready=true]", { state: "attached" });
}

async function openAccount(page, account, owner) {
  await page.fill("#open-account", account);
  await page.fill("#open-owner", owner);
  await page.click("#open button");
  await page.waitForFunction((a) => [...document.querySelectorAll("#accounts tr td:first-child")].some((td) => td.textContent === a), account);
}

async function move(page, account, amount, kind = "Deposited") {
  await page.selectOption("#move-account", account);
  await page.waitForFunction((a) => document.getElementById("move-version").textContent.startsWith(`${a} `), account);
  await page.fill("#move-amount", amount);
  await page.click(`#move button[value=${kind}]`);
  await page.waitForFunction(() => document.getElementById("move-amount").value === "" || document.querySelector("#move .error:not(:empty)"));
}

/** Waits until the page shows nothing pending and `n` confirmed. */
const settled = (page, n) => page.waitForFunction((n) => document.getElementById("sync-detail").textContent.startsWith(`${n} confirmed · 0 pending`), n, { timeout: 60_000 });

async function serverEvents() {
  return (await (await fetch(`${url}v1/logs/demo-ledger/events`)).json()).events;
}

test("first visit, then offline with the server down: the app opens from the cache with its data, and what is appended then is pushed when the server is back", { timeout: TEST_TIMEOUT }, async () => {
  const page = await browser.newPage();
  await page.setViewportSize({ width: 1280, height: 900 });
  await visit(page);
  // The service worker precached the app at install; it controls the page once active.
  await page.evaluate(() => navigator.serviceWorker.ready);
  await openAccount(page, "savings", "Ada");
  await openAccount(page, "checking", "Ada");
  await move(page, "savings", "1250.00");
  await settled(page, 3);

  await stopServer();
  await browser.context.setOffline(true);
  await visit(page);
  assert.deepEqual(await balances(page), { checking: "0.00", savings: "1,250.00" }, "the data, from IndexedDB");
  await move(page, "checking", "20.50");
  // The form clears when the append resolves; the table renders at the next frame.
  await page.waitForFunction(() => [...document.querySelectorAll("#accounts tr")].some((r) => r.cells[0].textContent === "checking" && r.cells[2].textContent === "20.50"));
  assert.deepEqual(await balances(page), { checking: "20.50", savings: "1,250.00" });
  await page.waitForFunction(() => document.querySelector("#events tr .tag.pending"));
  assert.match(await status(page), /3 confirmed · 1 pending/);
  await shot(page, "offline");

  await startServer();
  await browser.context.setOffline(false);
  await page.click("#sync-now");
  await settled(page, 4);
  const events = await serverEvents();
  assert.deepEqual(events.map((e) => [e.stream, e.type, e.data.amount ?? null]), [["savings", "Opened", null], ["checking", "Opened", null], ["savings", "Deposited", 125000], ["checking", "Deposited", 2050]]);
  await page.close();
});

test("a transfer changes two rows in every open tab; bad input gets the log's typed error next to its field and writes nothing", { timeout: TEST_TIMEOUT }, async () => {
  const a = await browser.newPage();
  const b = await browser.newPage();
  await visit(a);
  await visit(b);
  await a.selectOption("#transfer-from", "savings");
  await a.selectOption("#transfer-to", "checking");
  await a.fill("#transfer-amount", "100");
  await a.click("#transfer button");
  for (const p of [a, b]) {
    await p.waitForFunction(() => [...document.querySelectorAll("#accounts tr")].some((r) => r.cells[0].textContent === "savings" && r.cells[2].textContent === "1,150.00"));
    assert.deepEqual(await balances(p), { checking: "120.50", savings: "1,150.00" });
  }
  assert.equal(await text(a, "total"), "1,270.50", "a transfer moves money, the bank total stays");

  // An empty account name: the log refuses the event, the form says why, nothing is appended.
  await a.waitForFunction(() => document.querySelector("#events tr")?.cells[4].textContent === "Transferred");
  const before = (await rows(a, "events")).length;
  await a.fill("#open-account", "");
  await a.fill("#open-owner", "Bob");
  await a.click("#open button");
  await a.waitForFunction(() => document.getElementById("open-account-error").textContent !== "");
  assert.match(await text(a, "open-account-error"), /^INVALID_EVENT: /);
  assert.equal(await a.evaluate(() => document.activeElement.id), "open-account", "focus goes to the field to fix");
  // A name taken already: CONFLICT, said as such.
  await a.fill("#open-account", "savings");
  await a.click("#open button");
  await a.waitForFunction(() => /exists already/.test(document.getElementById("open-account-error").textContent));
  await sleep(300);
  assert.equal((await rows(a, "events")).length, before, "nothing was appended");
  await shot(a, "errors");
  await a.close();
  await b.close();
});

test("the time travel slider shows the balances as of the position picked", { timeout: TEST_TIMEOUT }, async () => {
  const page = await browser.newPage();
  await page.setViewportSize({ width: 1280, height: 900 });
  await visit(page);
  await settled(page, 5);
  // Position 3: both accounts opened and 1,250 deposited; nothing else yet.
  await page.$eval("#travel", (s) => { s.value = "3"; s.dispatchEvent(new Event("input")); });
  await page.waitForFunction(() => document.getElementById("travel-at").textContent === "3" && document.querySelectorAll("#travel-accounts tr").length === 2);
  await page.waitForFunction(() => document.getElementById("travel-total").textContent === "1,250.00");
  assert.deepEqual(await rows(page, "travel-accounts"), [["checking", "0.00"], ["savings", "1,250.00"]]);
  await page.$eval("#travel", (s) => { s.value = "1"; s.dispatchEvent(new Event("input")); });
  await page.waitForFunction(() => document.getElementById("travel-total").textContent === "0.00" && document.querySelectorAll("#travel-accounts tr").length === 1);
  assert.deepEqual(await rows(page, "travel-accounts"), [["savings", "0.00"]]);
  // The chart has a point per position and marks the one picked.
  assert.equal(await page.$eval("#chart polyline", (p) => p.getAttribute("points").split(" ").length), 6);
  assert.ok(await page.$("#chart .marker"));
  await shot(page, "time-travel");
  await page.close();
});

test("a withdrawal from a stale view on a second device is rejected by the server and shown in its log inspector until dismissed", { timeout: TEST_TIMEOUT }, async () => {
  const a = await browser.newPage();
  const b = await browser.newPage();
  await b.setViewportSize({ width: 1280, height: 900 });
  await visit(a);
  await visit(b, "?device=b");
  assert.equal(await text(b, "device"), "device B");
  await settled(b, 5);
  // B stops syncing and picks savings; A withdraws from it meanwhile.
  await b.click("#sync-pause");
  await b.waitForFunction(() => document.getElementById("sync-state").textContent === "paused");
  await b.selectOption("#move-account", "checking");
  await b.selectOption("#move-account", "savings");
  await move(a, "savings", "50", "Withdrawn");
  await settled(a, 6);
  // B still sees the old version, so its own check passes; the server's does not.
  await move(b, "savings", "70", "Withdrawn");
  // The form clears when the append resolves; the table is drawn on the change that follows.
  await b.waitForFunction(() => [...document.querySelectorAll("#accounts tr")].some((r) => r.cells[0].textContent === "savings" && r.cells[2].textContent === "1,080.00"));
  await b.click("#sync-pause");
  await b.waitForFunction(() => document.querySelector("#rejections .rejection"), null, { timeout: 60_000 });
  assert.match(await b.$eval("#rejections .rejection", (r) => r.textContent), /conflict/);
  await b.waitForFunction(() => [...document.querySelectorAll("#accounts tr")].some((r) => r.cells[0].textContent === "savings" && r.cells[2].textContent === "1,100.00"));
  await shot(b, "rejection");
  await b.click("#rejections button");
  await b.waitForFunction(() => !document.querySelector("#rejections .rejection"));
  assert.equal((await serverEvents()).filter((e) => e.type === "Withdrawn").length, 1, "only A's withdrawal is on the server");
  await a.close();
  await b.close();
});

test("the demo is installable, and a new build replaces the cached one", { timeout: TEST_TIMEOUT }, async () => {
  const page = await browser.newPage();
  await visit(page);
  const cdp = await page.context().newCDPSession(page);
  const { installabilityErrors } = await cdp.send("Page.getInstallabilityErrors");
  assert.deepEqual(installabilityErrors, [], "Chromium finds nothing missing to install it");
  const cached = () => page.evaluate(() => caches.keys());
  const [old] = await cached();
  assert.match(old, /^logfold-demo-[0-9a-f]{12}$/);

  // A new build: other bytes, so another version and another service worker.
  const www = join(dir, "www-next");
  await cp(join(ROOT, "www"), www, { recursive: true });
  const index = join(www, "index.html");
  await writeFile(index, (await readFile(index, "utf8")).replace("<title>logfold ledger</title>", "<title>logfold ledger, next</title>"));
  const { version } = await buildDemo(join(dir, "site"), { www });
  assert.notEqual(`logfold-demo-${version}`, old);
  await visit(page);
  // The browser checks for a new service worker at a visit (and when asked): it installs,
  // takes over and deletes the old build's cache; the next visit is the new build.
  await page.evaluate(() => navigator.serviceWorker.getRegistration().then((r) => r.update()));
  const want = [`logfold-demo-${version}`];
  for (let i = 0; JSON.stringify(await cached()) !== JSON.stringify(want); i++) {
    assert.ok(i < 150, `the new build's cache replaces the old one: ${JSON.stringify(await cached())}`);
    await sleep(200);
  }
  await visit(page);
  assert.equal(await page.title(), "logfold ledger, next", "the page is the new build's");
  await page.close();
});
