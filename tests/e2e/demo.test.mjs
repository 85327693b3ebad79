// The offline demo (www/) in a real page: appending shows in the balances, in this tab and in
// another one, and the page keeps its log across a reload.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { serve } from "../../scripts/serve.mjs";
import { ROOT, PKG_DIR, profileDir, launch, TEST_TIMEOUT } from "./harness.mjs";

const PORT = 47316;
let server, browser;

before(async () => {
  server = await serve({ mounts: { "/pkg/": PKG_DIR, "/": join(ROOT, "www") }, port: PORT, host: "127.0.0.1" });
  browser = await launch(await profileDir("demo"));
});
after(async () => {
  await browser?.close();
  await new Promise((ok) => { server?.closeAllConnections?.(); server ? server.close(() => ok()) : ok(); });
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
  assert.equal((await cells(a, "events")).length, 3);
});
