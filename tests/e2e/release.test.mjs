// The release build: npm scripts must find npm's binaryen (wasm-opt 132) first on PATH, pkg/ must be
// its output, and the package must load and work in a real page. Debian's wasm-opt 108 builds a
// package that fails only in the browser (`WebAssembly.Table.set(): Argument 1 is invalid for
// table`), so only this test catches that trap.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync, accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { join, delimiter } from "node:path";
import { tmpdir } from "node:os";
import { gzipSync } from "node:zlib";
import { ROOT, PKG_DIR, startServer, profileDir, launch, ev, TEST_TIMEOUT } from "./harness.mjs";

const PORT = 47314;
const NPM_WASM_OPT = join(ROOT, "node_modules/.bin/wasm-opt");
const WASM = join(PKG_DIR, "logfold_bg.wasm");

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: "utf8", timeout: 90_000, ...opts });
  if (r.error) throw r.error;
  return r;
}

function firstOnPath(name, path) {
  for (const dir of path.split(delimiter)) {
    const f = join(dir, name);
    try {
      accessSync(f, constants.X_OK);
      if (statSync(f).isFile()) return f;
    } catch {}
  }
  return null;
}

/** The names of a wasm module's custom sections. */
function customSections(bytes) {
  const names = [];
  let p = 8;
  const leb = () => {
    let r = 0, shift = 0, b;
    do { b = bytes[p++]; r += (b & 0x7f) * 2 ** shift; shift += 7; } while (b & 0x80);
    return r;
  };
  while (p < bytes.length) {
    const id = bytes[p++];
    const len = leb();
    const end = p + len;
    if (id === 0) {
      const n = leb();
      names.push(bytes.subarray(p, p + n).toString("utf8"));
    }
    p = end;
  }
  return names;
}

test("npm scripts find npm's binaryen wasm-opt, version 132, first on PATH", { timeout: TEST_TIMEOUT }, () => {
  assert.ok(existsSync(NPM_WASM_OPT), "node_modules/.bin/wasm-opt is missing: npm ci (devDependency binaryen 132)");
  const direct = run(NPM_WASM_OPT, ["--version"]);
  assert.equal(direct.status, 0, direct.stderr);
  assert.match(direct.stdout, /version 132\b/, `node_modules/.bin/wasm-opt --version: ${direct.stdout}`);

  // The PATH npm gives its scripts (npm run env prints their environment).
  const env = run("npm", ["run", "--silent", "env"]);
  assert.equal(env.status, 0, env.stderr);
  const pathLine = env.stdout.split("\n").find((l) => l.startsWith("PATH="));
  assert.ok(pathLine, "npm run env printed no PATH");
  const found = firstOnPath("wasm-opt", pathLine.slice(5));
  assert.equal(found, NPM_WASM_OPT, `the wasm-opt npm scripts run is ${found}, not npm's binaryen`);
  const v = run(found, ["--version"]);
  assert.match(v.stdout, /version 132\b/, `wasm-opt inside npm scripts: ${v.stdout}`);
});

test("pkg/ is the release build, already optimized by wasm-opt", { timeout: TEST_TIMEOUT }, () => {
  assert.ok(existsSync(join(PKG_DIR, "index.js")), `${PKG_DIR}/index.js is missing: run npm run build`);
  assert.ok(existsSync(join(PKG_DIR, "package.json")), "pkg/package.json is missing: pkg/ is not the complete output of npm run build");
  const pkg = JSON.parse(readFileSync(join(PKG_DIR, "package.json"), "utf8"));
  assert.equal(pkg.name, "logfold");
  assert.equal(pkg.type, "module");
  for (const f of [pkg.main ?? "index.js", pkg.types, "logfold_bg.wasm"]) {
    assert.ok(f && existsSync(join(PKG_DIR, f)), `pkg/${f} is missing`);
  }
  const bytes = readFileSync(WASM);
  assert.equal(bytes.subarray(0, 4).toString("latin1"), "\0asm");
  assert.ok(bytes.includes(Buffer.from("wasm-bindgen")), "the wasm lacks wasm-bindgen's producers entry");
  const custom = customSections(bytes);
  assert.ok(!custom.includes("__wasm_bindgen_unstable"), "the wasm still has wasm-bindgen's unprocessed section");
  assert.ok(!custom.includes("name"), `pkg's wasm still has its "name" section: wasm-opt -O did not run on it (sections: ${custom})`);
  // Optimizing again with binaryen 132 barely changes an optimized module; an unoptimized one
  // shrinks by about a third (measured: 427,910 → 276,850 bytes).
  const dir = mkdtempSync(join(tmpdir(), "logfold-release-"));
  try {
    const out = join(dir, "again.wasm");
    const r = run(NPM_WASM_OPT, ["-O", WASM, "-o", out], { timeout: 110_000 });
    assert.equal(r.status, 0, `npm's wasm-opt cannot read pkg's wasm: ${r.stderr}`);
    const before = bytes.length;
    const after = statSync(out).size;
    assert.ok(after > before * 0.95, `pkg's wasm (${before} B) shrinks to ${after} B when optimized again: it was not built with wasm-opt -O`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// The budget is 120 KB gzip (issue 12) and is not met yet: this limit only keeps the wasm from
// growing unnoticed (it went 101 → 156 → 218 → 242 KiB, then 217 after serde_json left, 220
// with the repair of sync records, 227 with the streams store's digest check, the commit from
// the version cache, the check after open and the outbox check, 232 with truncateBefore, 235
// with event schemas and the review's fixes, 241 with snapshot sets from the server (start and
// share), 243.5 with base snapshots at a cut, 246 with pulling dropped history back, 246.7 with
// the outbox commit that sends its writes with its checks, 247.7 with the filter of stream
// names that spares an append to a new stream its read; 242.2 once destroy, the sync
// leadership, the sync marks and the rejections list became plain IndexedDB in JS, 237.5 once
// repair and the write-back of pulled history did, 236.3 once snapshots and past tables did,
// 232.7 once JS ran the steps of opening a log, 222.1 once JSON numbers were parsed without
// std's table of powers of five). Raise it only on purpose, lower it with every cut;
// scripts/size-profile shows where the bytes are.
const WASM_GZIP_LIMIT = 229_000;

test(`the wasm stays within ${WASM_GZIP_LIMIT} bytes gzip`, { timeout: TEST_TIMEOUT }, () => {
  const gzip = gzipSync(readFileSync(WASM), { level: 9 }).length;
  assert.ok(gzip <= WASM_GZIP_LIMIT, `pkg/logfold_bg.wasm is ${gzip} bytes gzip, over ${WASM_GZIP_LIMIT}: see scripts/size-profile`);
});

test("outside a browser the package imports, and open says IndexedDB is missing (STORAGE)", { timeout: TEST_TIMEOUT }, () => {
  // What server-side rendering meets: importing is harmless, opening is a typed error.
  const script = `
    const m = await import(${JSON.stringify(join(PKG_DIR, "index.js"))});
    try { await m.Logfold.open({ name: "ssr" }); console.log("opened"); }
    catch (e) { console.log(JSON.stringify({ typed: e instanceof m.LogfoldError, code: e.code, details: e.details, message: e.message })); }`;
  const r = run(process.execPath, ["--input-type=module", "-e", script]);
  assert.equal(r.status, 0, r.stderr);
  const got = JSON.parse(r.stdout.trim());
  assert.deepEqual({ typed: got.typed, code: got.code, details: got.details }, { typed: true, code: "STORAGE", details: { name: "NotSupportedError" } });
  assert.match(got.message, /IndexedDB is not available here/);
});

test("the release package loads and works in a real page (open, append, read, errors)", { timeout: TEST_TIMEOUT }, async () => {
  assert.ok(existsSync(join(PKG_DIR, "index.js")), "pkg/ is missing: run npm run build");
  const server = await startServer(PORT);
  const b = await launch(await profileDir("release"));
  try {
    const page = await b.newPage(server.url); // throws if the module fails to load
    const r = await ev(page, async () => {
      const log = await Logfold.open({ name: "release" });
      const one = await log.append({ stream: "r", type: "Built", data: { ok: true } });
      const two = await log.append([{ stream: "r", type: "Again" }, { stream: "q", type: "Other", data: [1, "two"] }], { expectedVersions: { r: 1, q: "none" } });
      const conflict = await T.attempt(() => log.append({ stream: "r", type: "X" }, { expectedVersion: 0 }));
      const read = await log.read();
      const version = await log.version("r");
      await log.compact();
      const stats = log.stats();
      await log.close();
      const closed = await T.attempt(() => log.read());
      const again = await Logfold.open({ name: "release" });
      const reread = await again.read();
      await again.close();
      await Logfold.destroy("release");
      return { one, two, conflict, read, version, stats, closed, reread };
    });
    assert.equal(r.one.seq, 1);
    assert.deepEqual(r.two.map((e) => e.seq), [2, 3]);
    assert.deepEqual(r.read, [r.one, ...r.two]);
    assert.deepEqual(r.reread, r.read);
    assert.equal(r.version, 2);
    assert.equal(r.conflict.code, "CONFLICT");
    assert.equal(r.conflict.isLogfoldError, true);
    assert.equal(r.closed.code, "CLOSED");
    assert.equal(r.stats.eventsAppended, 3);
    assert.deepEqual(page.errors, [], "errors in the page");
  } finally {
    await b.close();
    await server.close();
  }
});
