// Errors end to end: bad input changes nothing and says why; conflicts; CLOSED; a real quota
// error; a corrupted segment; another tab destroying the log. Every refused call is checked to
// leave the log exactly as it was (events, head, stream versions, the raw streams store).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, profileDir, launch, ev, ready, withTimeout, TEST_TIMEOUT } from "./harness.mjs";

const PORT = 47312;
let server, browser, page;

before(async () => {
  server = await startServer(PORT);
  browser = await launch(await profileDir("errors"));
  page = await browser.newPage(server.url);
});
after(async () => {
  await browser?.close();
  await server?.close();
});

const opts = { timeout: TEST_TIMEOUT };

/** Seeds log `name` (once) with two events on stream "s" and one on "t". */
async function seeded(name, p = page) {
  return ev(p, async (name) => {
    const log = await T.log(name);
    if (log.head === 0) {
      await log.append([{ stream: "s", type: "A", data: { n: 1 } }, { stream: "t", type: "A" }]);
      await log.append({ stream: "s", type: "B", data: { n: 2 } });
    }
    return log.head;
  }, name);
}

/** Runs `src` (page code: `(log) => ...`) on log `name`; it must be refused with `code`. */
async function refused(name, src, code, streams = ["s", "t"], p = page) {
  await seeded(name, p);
  const r = await ev(p, async ({ name, src, streams }) => {
    const log = await T.log(name);
    return T.refuse(log, (0, eval)(src), streams);
  }, { name, src, streams });
  assert.equal(r.err.threw, true, `expected ${code}, but the call succeeded: ${src}\n${JSON.stringify(r.err.value)?.slice(0, 300)}`);
  assert.equal(r.err.code, code, `${src}: ${JSON.stringify(r.err)}`);
  assert.equal(r.err.isLogfoldError, true, "err instanceof LogfoldError");
  assert.equal(r.err.isError, true, "err instanceof Error");
  assert.equal(r.err.name, "LogfoldError");
  assert.ok(typeof r.err.message === "string" && r.err.message.length > 0, "a message for people");
  assert.ok(r.before.events.length > 0);
  assert.deepEqual(r.after, r.before, `the log changed after a refused call: ${src}`);
  return r.err;
}

// ---- INVALID_EVENT ------------------------------------------------------------------------------

const BAD = {
  "a function": "() => 1",
  "a symbol": "Symbol('s')",
  "a BigInt": "10n",
  NaN: "NaN",
  Infinity: "Infinity",
  "-Infinity": "-Infinity",
  "a cycle": "(() => { const o = { x: 1 }; o.self = { back: o }; return o; })()",
  "undefined inside an array": "undefined",
  "a Map": "new Map([['k', 1]])",
  "a Set": "new Set([1])",
};

for (const [what, x] of Object.entries(BAD)) {
  test(`INVALID_EVENT: data with ${what} nested in an array, at batch index 1`, opts, async () => {
    const err = await refused("bad-data", `(log) => log.append([
      { stream: "s", type: "Ok", data: { fine: true } },
      { stream: "s", type: "Bad", data: { a: { b: [1, ${x}] } } },
      { stream: "u", type: "Ok" },
    ])`, "INVALID_EVENT", ["s", "t", "u"]);
    assert.equal(err.details.index, 1, JSON.stringify(err.details));
    assert.ok(typeof err.details.field === "string" && err.details.field.startsWith("data"), `details.field names data: ${JSON.stringify(err.details)}`);
    assert.equal(typeof err.details.reason, "string");
  });
  if (what !== "undefined inside an array") {
    test(`INVALID_EVENT: meta with ${what} nested in an object (single append)`, opts, async () => {
      const err = await refused("bad-meta", `(log) => log.append({ stream: "s", type: "Bad", data: 1, meta: { deep: { er: ${x} } } })`, "INVALID_EVENT");
      assert.equal(err.details.index, 0, JSON.stringify(err.details));
      assert.ok(typeof err.details.field === "string" && err.details.field.startsWith("meta"), `details.field names meta: ${JSON.stringify(err.details)}`);
    });
  }
}

test("INVALID_EVENT: the top-level data itself being a function, a Map, a BigInt", opts, async () => {
  for (const x of ["() => 1", "new Map()", "1n"]) {
    const err = await refused("bad-top", `(log) => log.append({ stream: "s", type: "Bad", data: ${x} })`, "INVALID_EVENT");
    assert.equal(err.details.index, 0);
    assert.ok(err.details.field.startsWith("data"), JSON.stringify(err.details));
  }
});

test("undefined object properties are dropped (the stored event lacks the key); omitted data is null", opts, async () => {
  const r = await ev(page, async () => {
    const log = await T.log("undef");
    const e = await log.append({ stream: "s", type: "U", data: { a: 1, b: undefined, c: { d: undefined, e: [1, { f: undefined }] } } });
    const n = await log.append({ stream: "s", type: "N" });
    const [back, backN] = await log.read();
    return {
      ret: e.data, back: back.data, backN: backN.data, retN: n.data,
      keys: [Object.keys(e.data), Object.keys(back.data), Object.keys(back.data.c), Object.keys(back.data.c.e[1])],
      meta: back.meta,
    };
  });
  const want = { a: 1, c: { e: [1, {}] } };
  assert.deepEqual(r.back, want, "read() returns the data without the undefined properties");
  assert.deepEqual(r.keys.slice(1), [["a", "c"], ["e"], []]);
  assert.deepEqual(r.ret, want, "the StoredEvent append returns is the stored event: it lacks the undefined keys too, like read()");
  assert.deepEqual(r.keys[0], ["a", "c"]);
  assert.equal(r.retN, null);
  assert.equal(r.backN, null);
  assert.equal(r.meta, null);
});

for (const [what, e, field] of [
  ["missing stream", `{ type: "T" }`, "stream"],
  ["empty stream", `{ stream: "", type: "T" }`, "stream"],
  ["missing type", `{ stream: "s" }`, "type"],
  ["empty type", `{ stream: "s", type: "" }`, "type"],
]) {
  test(`INVALID_EVENT: ${what} names the field and the batch index`, opts, async () => {
    let err = await refused("bad-names", `(log) => log.append(${e})`, "INVALID_EVENT");
    assert.equal(err.details.field, field, JSON.stringify(err.details));
    assert.equal(err.details.index, 0);
    err = await refused("bad-names", `(log) => log.append([{ stream: "s", type: "Ok" }, { stream: "s", type: "Ok" }, ${e}])`, "INVALID_EVENT");
    assert.equal(err.details.field, field, JSON.stringify(err.details));
    assert.equal(err.details.index, 2);
  });
}

test("INVALID_EVENT: an event over 1 MiB is refused, at its batch index", opts, async () => {
  let err = await refused("too-big", `(log) => log.append({ stream: "s", type: "Big", data: { blob: "x".repeat(1024 * 1024 + 16) } })`, "INVALID_EVENT");
  assert.equal(err.details.index, 0, JSON.stringify(err.details));
  err = await refused("too-big", `(log) => log.append([{ stream: "s", type: "Ok" }, { stream: "s", type: "Big", data: ["y".repeat(700 * 1024), "z".repeat(400 * 1024)] }])`, "INVALID_EVENT");
  assert.equal(err.details.index, 1, JSON.stringify(err.details));
});

test("events larger than the segment target (48 KiB) but under 1 MiB are accepted and read back intact", opts, async () => {
  const r = await ev(page, async () => {
    const log = await T.log("large");
    const mk = (n, c) => Array.from({ length: n }, (_, i) => String.fromCharCode(97 + ((i * 7 + c) % 26))).join("");
    const small1 = await log.append({ stream: "big", type: "Small", data: { k: 1 } });
    const big = await log.append([
      { stream: "big", type: "Big", data: { blob: mk(60 * 1024, 1), list: [mk(10, 2), 1, null, true] } },
      { stream: "big", type: "Huge", data: { blob: mk(900 * 1024, 3) }, meta: { m: mk(50 * 1024, 4) } },
    ]);
    const small2 = await log.append({ stream: "big", type: "Small", data: { k: 2 } });
    const stored = [small1, ...big, small2];
    await log.close();
    const again = await T.log("large");
    const back = await T.readAll(again);
    return { same: JSON.stringify(back) === JSON.stringify(stored), n: back.length, sizes: back.map((e) => JSON.stringify(e).length), version: await again.version("big") };
  }, undefined, 60_000);
  assert.equal(r.n, 4);
  assert.ok(r.same, "the large events read back differently from what append returned");
  assert.ok(r.sizes[2] > 900 * 1024);
  assert.equal(r.version, 4);
});

test("a batch where only event 3 is bad writes nothing (head, read(), version())", opts, async () => {
  const err = await refused("atomic", `(log) => log.append([
    { stream: "fresh", type: "E", data: 0 },
    { stream: "fresh", type: "E", data: 1 },
    { stream: "s", type: "E", data: 2 },
    { stream: "fresh", type: "E", data: { bad: [NaN] } },
    { stream: "fresh", type: "E", data: 4 },
  ])`, "INVALID_EVENT", ["s", "t", "fresh"]);
  assert.equal(err.details.index, 3);
  const r = await ev(page, async () => {
    const log = await T.log("atomic");
    return { v: await log.version("fresh"), head: log.head, last: (await log.read({ after: log.head - 1 })).map((e) => e.type) };
  });
  assert.equal(r.v, 0);
  assert.equal(r.head, 3);
});

// ---- CONFLICT and INVALID_ARGUMENT ------------------------------------------------------------

test("expectedVersion mismatch → CONFLICT {stream, expected, actual}, nothing written", opts, async () => {
  let err = await refused("conflict", `(log) => log.append({ stream: "s", type: "X" }, { expectedVersion: 1 })`, "CONFLICT");
  assert.deepEqual(err.details, { stream: "s", expected: 1, actual: 2 });
  err = await refused("conflict", `(log) => log.append([{ stream: "s", type: "X" }, { stream: "s", type: "Y" }], { expectedVersion: 5 })`, "CONFLICT");
  assert.deepEqual(err.details, { stream: "s", expected: 5, actual: 2 });
  err = await refused("conflict", `(log) => log.append({ stream: "s", type: "X" }, { expectedVersion: "none" })`, "CONFLICT");
  assert.deepEqual(err.details, { stream: "s", expected: "none", actual: 2 });
  err = await refused("conflict", `(log) => log.append({ stream: "nope", type: "X" }, { expectedVersion: 3 })`, "CONFLICT", ["s", "t", "nope"]);
  assert.deepEqual(err.details, { stream: "nope", expected: 3, actual: 0 });
  // The right expectations are accepted.
  const r = await ev(page, async () => {
    const log = await T.log("conflict");
    const a = await log.append({ stream: "s", type: "X" }, { expectedVersion: 2 });
    const b = await log.append([{ stream: "n", type: "X" }, { stream: "n", type: "Y" }], { expectedVersion: "none" });
    return [a.version, b.map((e) => e.version), await log.version("s"), await log.version("n")];
  });
  assert.deepEqual(r, [3, [1, 2], 3, 2]);
});

test("expectedVersion with a multi-stream batch → INVALID_ARGUMENT; expectedVersions per stream works", opts, async () => {
  const err = await refused("multi", `(log) => log.append([{ stream: "s", type: "X" }, { stream: "t", type: "X" }], { expectedVersion: 2 })`, "INVALID_ARGUMENT");
  assert.equal(err.details.argument, "expectedVersion", JSON.stringify(err.details));
  const c = await refused("multi", `(log) => log.append([{ stream: "s", type: "X" }, { stream: "t", type: "X" }, { stream: "new", type: "X" }], { expectedVersions: { s: 2, t: 0, new: "none" } })`, "CONFLICT", ["s", "t", "new"]);
  assert.deepEqual(c.details, { stream: "t", expected: 0, actual: 1 });
  const r = await ev(page, async () => {
    const log = await T.log("multi");
    const got = await log.append([{ stream: "s", type: "X" }, { stream: "t", type: "X" }, { stream: "new", type: "X" }], { expectedVersions: { s: 2, t: 1, new: "none" } });
    return got.map((e) => [e.stream, e.version]);
  });
  assert.deepEqual(r, [["s", 3], ["t", 2], ["new", 1]]);
});

test("INVALID_ARGUMENT: bad expectedVersion values and read options, nothing written", opts, async () => {
  for (const [src, argument] of [
    [`(log) => log.append({ stream: "s", type: "X" }, { expectedVersion: "latest" })`, "expectedVersion"],
    [`(log) => log.append({ stream: "s", type: "X" }, { expectedVersion: -1 })`, "expectedVersion"],
    [`(log) => log.append({ stream: "s", type: "X" }, { expectedVersion: 1.5 })`, "expectedVersion"],
    [`(log) => log.append({ stream: "s", type: "X" }, { expectedVersions: { s: "any" } })`, "expectedVersions"],
    [`(log) => log.read({ after: -1 })`, "after"],
    [`(log) => log.read({ limit: "ten" })`, "limit"],
  ]) {
    const err = await refused("bad-args", src, "INVALID_ARGUMENT");
    assert.equal(err.details.argument, argument, `${src}: ${JSON.stringify(err.details)}`);
  }
});

test("conflicting appends in one group commit: exactly one wins, the others are unaffected", opts, async () => {
  await seeded("race");
  const r = await ev(page, async () => {
    const log = await T.log("race");
    const calls = [
      log.append({ stream: "s", type: "A" }, { expectedVersion: 2 }),
      log.append({ stream: "other", type: "B" }),
      log.append({ stream: "s", type: "C" }, { expectedVersion: 2 }),
      log.append({ stream: "other", type: "D" }),
    ];
    const res = await Promise.allSettled(calls);
    return { res: res.map((x) => (x.status === "fulfilled" ? { ok: x.value.type, v: x.value.version } : { code: x.reason.code, details: x.reason.details })), s: await log.version("s"), other: await log.version("other"), head: log.head, types: (await T.readAll(log)).map((e) => e.type) };
  });
  assert.deepEqual(r.res[0], { ok: "A", v: 3 });
  assert.deepEqual(r.res[2], { code: "CONFLICT", details: { stream: "s", expected: 2, actual: 3 } });
  assert.deepEqual([r.res[1].ok, r.res[3].ok], ["B", "D"]);
  assert.equal(r.s, 3);
  assert.equal(r.other, 2);
  assert.deepEqual(r.types, ["A", "A", "B", "A", "B", "D"]);
});

// ---- CLOSED ---------------------------------------------------------------------------------------

test("after close(): every call throws CLOSED; close() waits for pending appends", opts, async () => {
  const r = await ev(page, async () => {
    const log = await Logfold.open({ name: "closed" });
    await log.append({ stream: "s", type: "A" });
    const pending = log.append([{ stream: "s", type: "B" }, { stream: "s", type: "C" }]);
    await log.close();
    const pendingResult = await T.attempt(() => pending);
    const calls = {
      append: await T.attempt(() => log.append({ stream: "s", type: "D" })),
      read: await T.attempt(() => log.read()),
      version: await T.attempt(() => log.version("s")),
      events: await T.attempt(async () => { for await (const e of log.events()) return e; }),
      compact: await T.attempt(() => log.compact()),
      rejections: await T.attempt(() => log.rejections()),
    };
    const again = await Logfold.open({ name: "closed" });
    const back = (await T.readAll(again)).map((e) => e.type);
    await again.close();
    return { closed: log.closed, pendingResult, calls, back, closeTwice: await T.attempt(() => log.close()) };
  });
  assert.equal(r.closed, true);
  assert.equal(r.pendingResult.threw, false, `an append pending at close() must complete: ${JSON.stringify(r.pendingResult)}`);
  for (const [call, res] of Object.entries(r.calls)) {
    assert.equal(res.threw, true, `${call} after close() succeeded`);
    assert.equal(res.code, "CLOSED", `${call}: ${JSON.stringify(res)}`);
    assert.equal(res.isLogfoldError && res.isError, true);
    assert.deepEqual(res.details, { reason: "closed" }, call);
  }
  assert.deepEqual(r.back, ["A", "B", "C"]);
});

// ---- QUOTA_EXCEEDED -------------------------------------------------------------------------------

test("QUOTA_EXCEEDED: a real quota error on a large append changes nothing; appends work after the quota is lifted", opts, async () => {
  // Chromium's IndexedDB caches the bucket's quota when the origin first opens a database, so the
  // override is set before the page touches IndexedDB: its own browser and profile.
  const b = await launch(await profileDir("errors-quota"));
  try {
    const p = await b.newPage(null);
    const cdp = await b.context.newCDPSession(p);
    const origin = server.origin;
    await cdp.send("Storage.overrideQuotaForOrigin", { origin, quotaSize: 512 * 1024 });
    await p.goto(server.url);
    await ready(p);
    await seeded("quota", p);
    const err = await refused("quota", `(log) => log.append(Array.from({ length: 8 }, (_, i) => ({ stream: "s", type: "Big", data: { i, blob: T.noise(500 * 1024) } })))`, "QUOTA_EXCEEDED", ["s", "t"], p);
    assert.equal(typeof err.details.name, "string", JSON.stringify(err.details));
    // The handle is still usable: a refused commit does not poison it.
    assert.equal(await ev(p, async () => (await T.log("quota")).closed), false);
    await cdp.send("Storage.overrideQuotaForOrigin", { origin });
    const r = await ev(p, async () => {
      const log = await T.log("quota");
      const before = log.head;
      const a = await log.append({ stream: "s", type: "AfterQuota", data: { small: true } });
      const b = await log.append(Array.from({ length: 3 }, (_, i) => ({ stream: "s", type: "AfterQuota", data: { i, blob: T.noise(100 * 1024) } })));
      return { before, seqs: [a.seq, ...b.map((e) => e.seq)], v: await log.version("s"), n: (await T.readAll(log)).length };
    }, undefined, 60_000);
    assert.deepEqual(r.seqs, [r.before + 1, r.before + 2, r.before + 3, r.before + 4]);
    assert.equal(r.v, 6);
    assert.equal(r.n, r.before + 4);
  } finally {
    await b.close();
  }
});

// ---- CORRUPT and repair -------------------------------------------------------------------------

for (const which of ["first", "middle", "last"]) {
  test(`CORRUPT: a flipped byte in the ${which} segment fails open with its position; repair keeps the intact prefix`, opts, async () => {
    const name = `corrupt-${which}`;
    const orig = await ev(page, async (name) => {
      const log = await Logfold.open({ name });
      for (let b = 0; b < 6; b++) {
        await log.append(Array.from({ length: 5 }, (_, i) => ({ stream: `st${i % 2}`, type: "E", data: { b, i, text: "payload ".repeat(8) } })));
      }
      const events = await T.readAll(log);
      await log.close();
      return events;
    }, name);
    assert.equal(orig.length, 30);
    const raw = await ev(page, (name) => T.raw(name), name);
    assert.deepEqual(raw.stores, ["meta", "outbox", "rejections", "segments", "snapshots", "streams"]);
    const keys = raw.segments.map((s) => s.key);
    assert.ok(keys.length >= 3, `expected several segments, got keys ${keys}`);
    for (const s of raw.segments) assert.equal(s.magic, "LFSG");
    assert.equal(keys.at(-1), 30, "segments are keyed by their last seq");
    const idx = which === "first" ? 0 : which === "last" ? keys.length - 1 : Math.floor(keys.length / 2);
    const key = keys[idx];
    const prev = idx === 0 ? 0 : keys[idx - 1];
    await ev(page, ({ name, key }) => T.flip(name, key), { name, key });
    const rawBefore = await ev(page, (name) => T.raw(name), name);

    const open = await ev(page, (name) => T.attempt(() => Logfold.open({ name, verify: "full" })), name);
    assert.equal(open.threw, true, "open succeeded on a corrupted log");
    assert.equal(open.code, "CORRUPT", JSON.stringify(open));
    assert.equal(open.isLogfoldError, true);
    assert.deepEqual({ from: open.details.from, to: open.details.to }, { from: prev + 1, to: key }, `CORRUPT details must cover the damaged segment: ${JSON.stringify(open.details)}`);
    assert.equal(typeof open.details.reason, "string");
    // Refusing to open changed nothing: it still refuses.
    const open2 = await ev(page, (name) => T.attempt(() => Logfold.open({ name, verify: "full" })), name);
    assert.equal(open2.code, "CORRUPT");
    assert.deepEqual(await ev(page, (name) => T.raw(name), name), rawBefore, "a refused open wrote to the database");
    // By default open reads only what it needs (here the last segment, where the stream versions'
    // checkpoint is) and checks the rest after it returns: log.verified and onCorrupt say so.
    const bg = await ev(page, async (name) => {
      const seen = [];
      let log;
      try {
        log = await Logfold.open({ name, onCorrupt: (e) => seen.push(e.code) });
      } catch (e) {
        return { openCode: e.code, details: e.details };
      }
      const v = await log.verified;
      await log.close();
      return { code: v?.code, details: v?.details, seen };
    }, name);
    const span = { from: prev + 1, to: key };
    if (which === "last") {
      assert.equal(bg.openCode, "CORRUPT", JSON.stringify(bg));
    } else {
      assert.equal(bg.code, "CORRUPT", JSON.stringify(bg));
      assert.deepEqual(bg.seen, ["CORRUPT"], "onCorrupt is called once");
    }
    assert.deepEqual({ from: bg.details.from, to: bg.details.to }, span, JSON.stringify(bg.details));

    const rep = await ev(page, (name) => Logfold.repair(name), name);
    assert.deepEqual(rep, { head: prev, dropped: { from: prev + 1, to: 30 }, records: [] });

    const after = await ev(page, async (name) => {
      const log = await Logfold.open({ name });
      const events = await T.readAll(log);
      const v = [await log.version("st0"), await log.version("st1")];
      const next = await log.append({ stream: "st0", type: "AfterRepair" });
      const head = log.head;
      await log.close();
      return { events, v, next: { seq: next.seq, version: next.version }, head, again: await Logfold.repair(name) };
    }, name);
    assert.deepEqual(after.events, orig.slice(0, prev), "events up to the repaired head are intact");
    const count = (s) => orig.slice(0, prev).filter((e) => e.stream === s).length;
    assert.deepEqual(after.v, [count("st0"), count("st1")], "stream versions agree with the repaired log");
    assert.deepEqual(after.next, { seq: prev + 1, version: count("st0") + 1 });
    assert.equal(after.head, prev + 1);
    assert.deepEqual(after.again, { head: prev + 1, dropped: null, records: [] }, "repair of a healthy log drops nothing");
  });
}

// ---- UNSUPPORTED_FORMAT ---------------------------------------------------------------------------

test("UNSUPPORTED_FORMAT: an intact segment of an unknown format, or an unknown log format in meta, fails open (not CORRUPT)", opts, async () => {
  const r = await ev(page, async () => {
    const out = {};
    for (const name of ["future-seg", "future-meta"]) {
      const log = await Logfold.open({ name });
      await log.append([{ stream: "s", type: "A" }, { stream: "s", type: "B" }]);
      await log.append({ stream: "s", type: "C" });
      await log.close();
    }
    out.metaFormat = (await T.raw("future-meta")).meta.format;
    const keys = (await T.raw("future-seg")).segments.map((s) => s.key);
    await T.setSegmentFormat("future-seg", keys[0], 99);
    out.seg = await T.attempt(() => Logfold.open({ name: "future-seg", verify: "full" }));
    // Checked after open by default: the segment's format comes through log.verified.
    out.later = await (async () => {
      const log = await Logfold.open({ name: "future-seg", onCorrupt: () => {} });
      const v = await log.verified;
      await log.close();
      return { code: v?.code, details: v?.details };
    })();
    await T.putMeta("future-meta", "format", 999);
    out.meta = await T.attempt(() => Logfold.open({ name: "future-meta" }));
    return out;
  });
  assert.equal(r.metaFormat, 1, "meta holds the log's format version");
  for (const [what, res, format] of [["segment", r.seg, 99], ["meta", r.meta, 999]]) {
    assert.equal(res.threw, true, `open succeeded with an unknown ${what} format`);
    assert.equal(res.code, "UNSUPPORTED_FORMAT", `${what}: ${JSON.stringify(res)}`);
    assert.equal(res.isLogfoldError, true);
    assert.deepEqual(res.details, { format }, what);
  }
  assert.deepEqual(r.later, { code: "UNSUPPORTED_FORMAT", details: { format: 99 } });
});

// ---- versionchange ----------------------------------------------------------------------------------

test("versionchange: destroy() from another tab completes; the open log's onClose gets \"versionchange\" and later calls throw CLOSED", opts, async () => {
  await ev(page, async () => {
    window.__closes = [];
    window.__vc = await Logfold.open({ name: "vc", onClose: (reason) => window.__closes.push(reason) });
    await window.__vc.append([{ stream: "s", type: "A" }, { stream: "s", type: "B" }]);
  });
  const other = await browser.newPage(server.url);
  try {
    const destroyed = await withTimeout(ev(other, () => Logfold.destroy("vc").then(() => "done"), undefined, 20_000), 20_000, "destroy() while another tab has the log open");
    assert.equal(destroyed, "done");
    const a = await ev(page, async () => {
      for (let i = 0; i < 50 && window.__closes.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      const log = window.__vc;
      return {
        closes: window.__closes,
        closed: log.closed,
        append: await T.attempt(() => log.append({ stream: "s", type: "C" })),
        read: await T.attempt(() => log.read()),
        rejections: await T.attempt(() => log.rejections()),
      };
    });
    assert.deepEqual(a.closes, ["versionchange"]);
    assert.equal(a.closed, true);
    for (const k of ["append", "read", "rejections"]) {
      assert.equal(a[k].code, "CLOSED", `${k}: ${JSON.stringify(a[k])}`);
      assert.deepEqual(a[k].details, { reason: "versionchange" });
    }
    const b = await ev(other, async () => {
      const exists = await T.dbExists("vc");
      const log = await Logfold.open({ name: "vc" });
      const r = { exists, head: log.head, n: (await log.read()).length, v: await log.version("s") };
      await log.close();
      return r;
    });
    assert.deepEqual(b, { exists: false, head: 0, n: 0, v: 0 });
    // onClose is called once, not again later.
    assert.deepEqual(await ev(page, () => window.__closes), ["versionchange"]);
  } finally {
    await other.close().catch(() => {});
  }
});
