// The offline demo (www/) as `npm start` runs it: served by the sync server itself. Appending
// shows in the balances, in this tab and in another one, reaches the server, and the page keeps
// its log across a reload.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, PKG_DIR, profileDir, launch, sleep, TEST_TIMEOUT } from "./harness.mjs";

const PORT = 47316;
const SERVER = join(process.env.CARGO_TARGET_DIR ?? join(ROOT, "target"), "server/logfold-server");
let server, browser, dir;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "logfold-demo-"));
  await cp(join(ROOT, "www"), join(dir, "site"), { recursive: true });
  await cp(PKG_DIR, join(dir, "site/pkg"), { recursive: true });
  server = spawn(SERVER, ["--listen", `127.0.0.1:${PORT}`, "--database", join(dir, "demo.sqlite3"), "--static", join(dir, "site")], { stdio: "ignore" });
  for (let i = 0; ; i++) {
    if (await fetch(`http://127.0.0.1:${PORT}/healthz`).then((r) => r.ok, () => false)) break;
    if (i > 100) throw new Error("the sync server did not start");
    await sleep(100);
  }
  browser = await launch(await profileDir("demo"));
});
after(async () => {
  await browser?.close();
  server?.kill("SIGKILL");
  if (dir) await rm(dir, { recursive: true, force: true });
});

const url = `http://127.0.0.1:${PORT}/`;
const cells = (page, body) => page.$$eval(`#${body} tr`, (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));

async function deposit(page, account, amount, type = "Deposited") {
  await page.fill("input[name=account]", account);
  await page.selectOption("select[name=type]", type);
  await page.fill("input[name=amount]", String(amount));
  await page.click("#append button");
}

test("the demo folds appends into balances, shows them in another tab, and keeps them across a reload", { timeout: TEST_TIMEOUT }, async () => {
  const a = await browser.newPage();
  const b = await browser.newPage();
  await a.goto(url);
  await b.goto(url);
  await a.waitForFunction(() => document.getElementById("status").textContent.includes("events"));
  await b.waitForFunction(() => document.getElementById("status").textContent.includes("events"));

  await deposit(a, "acct-1", 1250);
  await deposit(a, "acct-1", 250, "Withdrawn");
  await deposit(a, "acct-2", 99);
  await a.waitForFunction(() => document.getElementById("total").textContent === "10.99");
  assert.deepEqual(await cells(a, "accounts"), [["acct-1", "10.00", "2"], ["acct-2", "0.99", "1"]]);

  // The other tab hears of the appends and folds them itself.
  await b.waitForFunction(() => document.getElementById("total").textContent === "10.99");
  assert.deepEqual(await cells(b, "accounts"), [["acct-1", "10.00", "2"], ["acct-2", "0.99", "1"]]);

  await a.reload();
  await a.waitForFunction(() => document.getElementById("total").textContent === "10.99");
  assert.deepEqual(await cells(a, "accounts"), [["acct-1", "10.00", "2"], ["acct-2", "0.99", "1"]]);
  // The balances render at once, the newest events after a read of the log: wait for them.
  await a.waitForFunction(() => document.querySelectorAll("#events tr").length >= 3);
  assert.equal((await cells(a, "events")).length, 3);

  // The sync server has them, once each, and the page shows them confirmed.
  await a.waitForFunction(() => /3 events confirmed, 0 pending/.test(document.getElementById("status").textContent));
  const pulled = await (await fetch(`http://127.0.0.1:${PORT}/v1/logs/demo-ledger/events`)).json();
  assert.deepEqual(pulled.events.map((e) => [e.stream, e.type, e.data.amount]), [["acct-1", "Deposited", 1250], ["acct-1", "Withdrawn", 250], ["acct-2", "Deposited", 99]]);
  assert.ok((await cells(a, "events")).every((row) => !row[0].includes("pending")));
});
