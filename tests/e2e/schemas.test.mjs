// Schema evolution (issue 13, part 2): events carry a schema number per type, upcasters bring
// old events to the app's schema before every projection and before read, and events of a
// newer schema than the app knows go by the unknownEvents policy, never a crash; an old and a
// new version of the app share one log in two tabs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, profileDir, launch, ev, TEST_TIMEOUT } from "./harness.mjs";

const PORT = 47354;
let server, browser, page;

before(async () => {
  server = await startServer(PORT);
  browser = await launch(await profileDir("schemas"));
  page = await browser.newPage(server.url);
  await ev(page, installApps);
});
after(async () => {
  await browser?.close();
  await server?.close();
});

const opts = { timeout: TEST_TIMEOUT };

/**
 * Page code: two versions of one bank app. v1 writes Deposited { account, amount } in euros;
 * v2 writes Deposited { account, cents } (schema 2) and upcasts v1's events.
 */
function installApps() {
  if (window.A) return true;
  const table = (field) => ({ accounts: { key: "data.account", on: { Deposited: { add: { balance: field } } } } });
  window.A = {
    v1: (name, extra = {}) =>
      Logfold.open({
        name,
        projections: { ...table("data.amount"), total: { version: 1, init: 0, apply: (t, e) => (e.type === "Deposited" ? t + e.data.amount : t) } },
        ...extra,
      }),
    v2: (name, extra = {}) =>
      Logfold.open({
        name,
        schemas: { Deposited: 2 },
        upcast: { Deposited: { 1: (d) => ({ account: d.account, cents: d.amount * 100 }) } },
        projections: { ...table("data.cents"), total: { version: 2, init: 0, apply: (t, e) => (e.type === "Deposited" ? t + e.data.cents : t) } },
        ...extra,
      }),
    balances: (log) => Object.fromEntries([...log.table("accounts").scan()].map(({ key, row }) => [key, row.balance])),
  };
  return true;
}

test("a new app version folds old and new events alike: tables, reducers, read, tablesAt and appends see schema 2", opts, async () => {
  const r = await ev(page, async () => {
    const v1 = await A.v1("bank");
    await v1.append([{ stream: "a", type: "Deposited", data: { account: "a", amount: 3 } }, { stream: "b", type: "Deposited", data: { account: "b", amount: 1 }, meta: { by: "ann" } }]);
    await v1.close();
    const v2 = await A.v2("bank");
    const appended = await v2.append({ stream: "a", type: "Deposited", data: { account: "a", cents: 50 }, meta: { by: "bob" } });
    const out = {
      balances: A.balances(v2),
      total: v2.state("total"),
      read: (await v2.read()).map((e) => [e.schema, e.data, e.meta]),
      appended: [appended.schema, appended.meta],
      past: A.balances(await v2.tablesAt(2)),
      errors: v2.projectionErrors("accounts").count,
    };
    await v2.close();
    // Reopened, from the snapshots: the same.
    const again = await A.v2("bank");
    out.reopened = [A.balances(again), again.state("total")];
    await again.close();
    return out;
  });
  assert.deepEqual(r.balances, { a: 350, b: 100 });
  assert.equal(r.total, 450);
  assert.deepEqual(r.read, [
    [2, { account: "a", cents: 300 }, null],
    [2, { account: "b", cents: 100 }, { by: "ann" }],
    [2, { account: "a", cents: 50 }, { by: "bob" }],
  ]);
  assert.deepEqual(r.appended, [2, { by: "bob" }], "the stored event shows its schema, and meta as the app gave it");
  assert.deepEqual(r.past, { a: 300, b: 100 }, "time travel upcasts too");
  assert.equal(r.errors, 0);
  assert.deepEqual(r.reopened, [{ a: 350, b: 100 }, 450]);
});

test("an old app version meets events of a newer schema: skipped by default, a fold error with \"fail\", or what the callback returns", opts, async () => {
  const r = await ev(page, async () => {
    const out = {};
    for (const [policy, unknownEvents] of [["skip", undefined], ["fail", "fail"], ["callback", (e) => ({ account: e.data.account, amount: e.data.cents / 100 })]]) {
      await Logfold.destroy("bank-newer");
      // The old app's log, with an event of schema 2 as a newer version of the app writes it.
      const v1 = await A.v1("bank-newer", unknownEvents ? { unknownEvents } : {});
      await v1.append({ stream: "a", type: "Deposited", data: { account: "a", amount: 1 } });
      await v1.append({ stream: "a", type: "Deposited", data: { account: "a", cents: 250 }, meta: { $schema: 2 } });
      const read = (await v1.read()).map((e) => e.schema);
      let total;
      try {
        total = v1.state("total");
      } catch (e) {
        total = e.code;
      }
      out[policy] = { balances: A.balances(v1), total, errors: v1.projectionErrors("accounts").count, read };
      await v1.close();
    }
    return out;
  });
  assert.deepEqual(r.skip, { balances: { a: 1 }, total: 1, errors: 0, read: [1, 2] });
  assert.deepEqual(r.fail, { balances: { a: 1 }, total: "PROJECTION_FAILED", errors: 1, read: [1, 2] });
  assert.deepEqual(r.callback, { balances: { a: 3.5 }, total: 3.5, errors: 0, read: [1, 2] });
});

test("old and new app versions in two tabs on one log: each folds the other's appends", opts, async () => {
  const other = await browser.newPage(server.url);
  try {
    await ev(other, installApps);
    await ev(page, async () => { window.__app = await A.v1("two-tabs"); });
    await ev(other, async () => { window.__app = await A.v2("two-tabs"); });
    await ev(page, () => window.__app.append({ stream: "a", type: "Deposited", data: { account: "a", amount: 2 } }));
    await ev(other, () => window.__app.append({ stream: "a", type: "Deposited", data: { account: "a", cents: 70 } }));
    const seen = async (p) => ev(p, async () => {
      for (let i = 0; i < 100 && window.__app.head < 2; i++) await new Promise((r) => setTimeout(r, 50));
      await window.__app.refresh();
      return { head: window.__app.head, balances: A.balances(window.__app), total: window.__app.state("total") };
    });
    assert.deepEqual(await seen(page), { head: 2, balances: { a: 2 }, total: 2 }, "v1 skips v2's newer event");
    assert.deepEqual(await seen(other), { head: 2, balances: { a: 270 }, total: 270 }, "v2 upcasts v1's event");
    for (const p of [page, other]) await ev(p, () => window.__app.close());
  } finally {
    await other.close().catch(() => {});
  }
});

test("bad schema options are INVALID_ARGUMENT; a non-object meta on a type with a schema is INVALID_EVENT", opts, async () => {
  const r = await ev(page, async () => {
    const tries = {
      noSchema: () => Logfold.open({ name: "bad-opts", upcast: { Deposited: { 1: (d) => d } } }),
      missingStep: () => Logfold.open({ name: "bad-opts", schemas: { Deposited: 3 }, upcast: { Deposited: { 1: (d) => d } } }),
      zero: () => Logfold.open({ name: "bad-opts", schemas: { Deposited: 0 } }),
      policy: () => Logfold.open({ name: "bad-opts", unknownEvents: "ignore" }),
    };
    const out = {};
    for (const [k, f] of Object.entries(tries)) out[k] = await T.attempt(f);
    const log = await A.v2("bad-meta");
    out.meta = await T.attempt(() => log.append({ stream: "a", type: "Deposited", data: { account: "a", cents: 1 }, meta: "a string" }));
    out.head = log.head;
    await log.close();
    return out;
  });
  assert.deepEqual(
    Object.fromEntries(["noSchema", "missingStep", "zero", "policy"].map((k) => [k, [r[k].code, r[k].details?.argument]])),
    { noSchema: ["INVALID_ARGUMENT", "upcast.Deposited"], missingStep: ["INVALID_ARGUMENT", "upcast.Deposited.2"], zero: ["INVALID_ARGUMENT", "schemas.Deposited"], policy: ["INVALID_ARGUMENT", "unknownEvents"] },
  );
  assert.equal(r.meta.code, "INVALID_EVENT", JSON.stringify(r.meta));
  assert.equal(r.meta.details.field, "meta");
  assert.equal(r.head, 0, "nothing written");
});
