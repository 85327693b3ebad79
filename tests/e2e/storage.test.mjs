// Storage that is kept (issue 13, part 5): log.storage() reports what the browser keeps,
// onStorageRisk tells the app when events only this browser has may be evicted, and
// log.persist() asks for storage that is kept (granted here through the DevTools protocol, as
// Chromium grants it to an installed site).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, profileDir, launch, ev, TEST_TIMEOUT } from "./harness.mjs";

const PORT = 47317;
// Nothing listens here: a synced log keeps its appends in the outbox.
const NO_SERVER = "http://127.0.0.1:47318";
let server, browser, page;

before(async () => {
  server = await startServer(PORT);
  browser = await launch(await profileDir("storage"));
  page = await browser.newPage(server.url);
});
after(async () => {
  await browser?.close();
  await server?.close();
});

const opts = { timeout: TEST_TIMEOUT };

test("storage() counts what only this browser has, and usage grows with the log", opts, async () => {
  const r = await ev(page, async () => {
    const log = await Logfold.open({ name: "kept" });
    const empty = await log.storage();
    const t0 = Date.now();
    await log.append(Array.from({ length: 200 }, (_, i) => ({ stream: `s${i % 4}`, type: "Noted", data: { i, text: "x".repeat(2000) } })));
    const full = await log.storage();
    await log.close();
    return { empty, full, t0 };
  });
  assert.deepEqual(
    { unsynced: r.empty.unsynced, oldest: r.empty.oldestUnsynced, atRisk: r.empty.atRisk, persisted: r.empty.persisted },
    { unsynced: 0, oldest: null, atRisk: false, persisted: false },
  );
  assert.equal(r.full.unsynced, 200, "a log without sync: every event is only here");
  assert.ok(r.full.oldestUnsynced >= r.t0 && r.full.oldestUnsynced <= Date.now(), `oldest ${r.full.oldestUnsynced}`);
  assert.ok(r.full.quota > 0 && r.full.usage > r.empty.usage, `usage ${r.empty.usage} -> ${r.full.usage} of ${r.full.quota}`);
  assert.equal(r.full.atRisk, false, "a day has not passed");
});

test("onStorageRisk fires when unsynced events age past storageRiskAfter without persistence, and clears once persisted", opts, async () => {
  const before = await ev(page, async (url) => {
    const reports = [];
    const log = await Logfold.open({
      name: "risky",
      sync: { url, log: "risky" },
      storageRiskAfter: 0,
      onStorageRisk: (r) => reports.push(r),
    });
    window.__risky = { log, reports };
    const opened = await log.storage();
    const [e] = await log.append([{ stream: "n", type: "Noted", data: { i: 1 } }]);
    const now = await log.storage();
    return { opened, now, time: e.time, reports: [...reports] };
  }, NO_SERVER);
  assert.equal(before.opened.atRisk, false, "nothing unsynced at open");
  assert.deepEqual(
    { unsynced: before.now.unsynced, oldest: before.now.oldestUnsynced, atRisk: before.now.atRisk, persisted: before.now.persisted },
    { unsynced: 1, oldest: before.time, atRisk: true, persisted: false },
  );
  assert.equal(before.reports.length, 1, "told once, when it became at risk");
  assert.equal(before.reports[0].atRisk, true);

  // As Chromium does for an installed app: the origin may keep its storage.
  const cdp = await browser.context.browser().newBrowserCDPSession();
  await cdp.send("Browser.grantPermissions", { origin: server.origin, permissions: ["durableStorage"] });
  const after = await ev(page, async () => {
    const { log, reports } = window.__risky;
    const granted = await log.persist();
    const report = await log.storage();
    await log.close();
    return { granted, report, reports };
  });
  assert.equal(after.granted, true);
  assert.deepEqual({ persisted: after.report.persisted, atRisk: after.report.atRisk, unsynced: after.report.unsynced }, { persisted: true, atRisk: false, unsynced: 1 });
  assert.deepEqual(after.reports.map((r) => r.atRisk), [true, false], "told again when the risk passed");
});

test("bad storage options are INVALID_ARGUMENT", opts, async () => {
  const r = await ev(page, async () => {
    const codes = [];
    for (const options of [{ onStorageRisk: 1 }, { storageRiskAfter: -1 }, { storageRiskAfter: "1d" }]) {
      try {
        await Logfold.open({ name: "bad-storage", ...options });
        codes.push("opened");
      } catch (e) {
        codes.push(`${e.code} ${e.details.argument}`);
      }
    }
    return codes;
  });
  assert.deepEqual(r, ["INVALID_ARGUMENT onStorageRisk", "INVALID_ARGUMENT storageRiskAfter", "INVALID_ARGUMENT storageRiskAfter"]);
});
