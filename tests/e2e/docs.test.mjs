// Every example in the docs runs (issue 12): each `@example` of js/*.d.ts and each ```js
// block of README.md, in a real headless Chromium page against the built pkg/, the sync ones
// against the real logfold-server. An example states its results as `expr; // → value`; each
// of those becomes an assertion, and each must actually run (one inside a `catch` that never
// ran is a failure). Also: typedoc builds the API docs from the types with no warnings.
//
// Each example runs in a fresh page with its own log names: the `Logfold` it is given is the
// package's, with every log name (and server log name) prefixed per example, and the docs'
// placeholder server https://sync.example.com mapped to the test's server. So an example may
// not show `log.name`. A README block that cannot run says so just before its fence with
// `<!-- docs-test: not run (why) -->`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { startServer, profileDir, launch, ev, pkgBuilt, ROOT } from "./harness.mjs";
import { startSyncServer, serverBuilt, SERVER_BIN } from "./sync-server.mjs";

const PAGE_PORT = 47350;
const SYNC_PORT = 47351;
const PLACEHOLDER = "https://sync.example.com";
const EXAMPLE_MS = 20_000;
const README = join(ROOT, "README.md");
// The typed modules whose examples run: every js/*.d.ts, as typedoc documents them. Examples
// may import only from "logfold" (a `logfold/react` example would need React in the page).
const TYPES = readdirSync(join(ROOT, "js")).filter((f) => f.endsWith(".d.ts")).sort().map((f) => join(ROOT, "js", f));
const NOT_RUN = /^<!--\s*docs-test:\s*not run\b(.*?)-->\s*$/;

// ---- extraction --------------------------------------------------------------------------------

/** The fenced blocks of markdown `text`: { lang, code, line, before } (`before`: the line above). */
function fences(text, firstLine = 1) {
  const lines = text.split("\n");
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^\s*```(\S*)\s*$/.exec(lines[i]);
    if (!open) continue;
    const start = i;
    const body = [];
    for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]); i++) body.push(lines[i]);
    if (i === lines.length) throw new Error(`unclosed fence at line ${firstLine + start}`);
    out.push({ lang: open[1], code: body.join("\n"), line: firstLine + start, before: (lines[start - 1] ?? "").trim(), at: start });
  }
  return out;
}

/**
 * The `@example`s of a .d.ts file: { name, code, line }, named after what they document
 * (`Log.append`, `Logfold.open`, or `module`). Each must hold ```js code.
 */
function typeExamples(file) {
  const text = readFileSync(file, "utf8");
  const out = [];
  for (const m of text.matchAll(/\/\*\*([\s\S]*?)\*\//g)) {
    const startLine = text.slice(0, m.index).split("\n").length;
    const lines = m[1].split("\n").map((l) => l.replace(/^\s*\* ?/, ""));
    if (!lines.some((l) => /^@example\b/.test(l))) continue;
    const after = text.slice(m.index + m[0].length).split("\n").find((l) => l.trim()) ?? "";
    const topLevel = text.lastIndexOf("\n", m.index) === m.index - 1;
    let name;
    if (lines.some((l) => /^@module\b/.test(l))) name = "module";
    else if (topLevel) name = /export (?:declare )?(?:interface|const|type|class|function) (\w+)/.exec(after)?.[1];
    else {
      const owner = [...text.slice(0, m.index).matchAll(/^export (?:declare )?(?:interface|const|class) (\w+)/gm)].pop()?.[1];
      name = `${owner}.${/^\s*(?:readonly\s+)?(\w+)/.exec(after)?.[1]}`;
    }
    // An example runs from its @example line to the next tag outside a fence.
    let inFence = false;
    let current = null;
    const sections = [];
    lines.forEach((l, i) => {
      if (/^\s*```/.test(l)) inFence = !inFence;
      if (!inFence && /^@\w+/.test(l)) {
        current = /^@example\b/.test(l) ? { from: i, lines: [] } : null;
        if (current) sections.push(current);
        return;
      }
      current?.lines.push(l);
    });
    sections.forEach((s, k) => {
      const blocks = fences(s.lines.join("\n"), startLine + s.from + 1);
      const where = `${file.slice(ROOT.length)}:${startLine + s.from} (${name})`;
      if (blocks.length === 0) throw new Error(`${where}: an @example without a fenced code block`);
      for (const b of blocks) if (b.lang !== "js") throw new Error(`${where}: a \`\`\`${b.lang} block; examples are \`\`\`js so that they can run`);
      const count = sections.length > 1 ? ` #${k + 1}` : "";
      out.push({ name: `${name}${count}`, code: blocks.map((b) => b.code).join("\n"), line: blocks[0].line, file });
    });
  }
  return out;
}

/** The ```js blocks of the README: { name, code, line, notRun }, named after their heading. */
function readmeExamples() {
  const text = readFileSync(README, "utf8");
  const lines = text.split("\n");
  return fences(text)
    .filter((b) => b.lang === "js")
    .map((b) => {
      const heading = lines.slice(0, b.at).reverse().find((l) => /^#{1,4} /.test(l))?.replace(/^#+ /, "") ?? "top";
      const skip = NOT_RUN.exec(b.before);
      return { name: `README "${heading}"`, code: b.code, line: b.line, file: README, notRun: skip ? skip[1].trim() || "no reason given" : null };
    });
}

/**
 * Turns `expr; // → value` lines into `__check(k, expr, () => value)` (and `const x = expr;
 * // → value` into a check of `x`), and `import { … } from "logfold"` into nothing (the page
 * passes the bindings). Lines keep their numbers, so errors point at the example's own line.
 */
function instrument(code) {
  const checks = [];
  const out = code.split("\n").map((line, i) => {
    const imp = /^\s*import\s*\{([^}]*)\}\s*from\s*"([^"]+)";?\s*$/.exec(line);
    if (imp) {
      if (imp[2] !== "logfold") throw new Error(`line ${i + 1}: imports from "${imp[2]}"; this test's page offers only "logfold" (React examples need a page with React)`);
      for (const n of imp[1].split(",").map((s) => s.trim()).filter(Boolean)) {
        if (!["Logfold", "LogfoldError"].includes(n)) throw new Error(`line ${i + 1}: "logfold" exports no ${n}`);
      }
      return "";
    }
    if (/^\s*import\b/.test(line)) throw new Error(`line ${i + 1}: only \`import { … } from "logfold"\` is understood`);
    const m = /^(\s*)(.*?)\s*\/\/ → (.*)$/.exec(line);
    if (!m && line.includes("→")) throw new Error(`line ${i + 1}: a → not in the form \`expr; // → value\`, so nothing would check it`);
    if (!m) return line;
    const [, indent, statement, expected] = m;
    const k = checks.length;
    checks.push({ line: i + 1, text: line.trim() });
    const body = statement.replace(/;\s*$/, "");
    const decl = /^(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*=/.exec(body);
    return decl ? `${indent}${body}; __check(${k}, ${decl[1]}, () => (${expected}));` : `${indent}__check(${k}, (${body}), () => (${expected}));`;
  });
  return { code: out.join("\n"), checks };
}

// ---- running in the page -------------------------------------------------------------------------

/** Runs in the page: one instrumented example; returns its error and what each check saw. */
async function runInPage({ code, checks, prefix, syncUrl, placeholder, ms }) {
  const results = checks.map(() => ({ ran: 0, failures: [] }));
  const show = (v) => {
    try {
      return JSON.stringify(v, (_, x) => (x === undefined ? "<undefined>" : x));
    } catch {
      return String(v);
    }
  };
  // Plain values compare by content; an undefined property counts as absent (as in JSON).
  const same = (a, b) => {
    if (Object.is(a, b)) return true;
    if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
    if (Array.isArray(a) !== Array.isArray(b)) return false;
    if (Array.isArray(a)) return a.length === b.length && a.every((x, i) => same(x, b[i]));
    const keys = (o) => Object.keys(o).filter((k) => o[k] !== undefined).sort();
    const ka = keys(a);
    const kb = keys(b);
    return ka.length === kb.length && ka.every((k, i) => k === kb[i] && same(a[k], b[k]));
  };
  const __check = (k, actual, expected) => {
    results[k].ran++;
    const want = expected();
    if (!same(actual, want)) {
      const message = `${show(actual)} is not the stated ${show(want)}`;
      results[k].failures.push(message);
      throw new Error(`line ${checks[k].line}: ${message}`);
    }
  };
  const real = window.Logfold;
  const local = (name) => (typeof name === "string" && name !== "" ? `${prefix}${name}` : name);
  const Logfold = Object.freeze({
    open(options) {
      if (options === null || typeof options !== "object") return real.open(options);
      const sync = options.sync && typeof options.sync === "object"
        ? { ...options.sync, url: options.sync.url === placeholder ? syncUrl : options.sync.url, log: local(options.sync.log) }
        : options.sync;
      return real.open({ ...options, name: local(options.name), sync });
    },
    destroy: (name) => real.destroy(local(name)),
    repair: (name) => real.repair(local(name)),
  });
  let error = null;
  try {
    const AsyncFunction = (async () => {}).constructor;
    const run = new AsyncFunction("Logfold", "LogfoldError", "__check", code);
    let timer;
    await Promise.race([
      run(Logfold, window.LogfoldError, __check),
      new Promise((_, fail) => (timer = setTimeout(() => fail(new Error(`did not finish within ${ms} ms`)), ms))),
    ]).finally(() => clearTimeout(timer));
  } catch (e) {
    error = String((e && e.stack) || e);
  }
  return { error, results };
}

let server, sync, browser;
let count = 0;

before(async () => {
  assert.ok(pkgBuilt(), "pkg/ is not built: npm run build");
  assert.ok(serverBuilt(), `no server binary at ${SERVER_BIN}: cargo build --profile server -p logfold-server`);
  server = await startServer(PAGE_PORT);
  sync = await startSyncServer({ port: SYNC_PORT, corsOrigin: server.origin });
  browser = await launch(await profileDir("docs"));
});
after(async () => {
  await browser?.close();
  await sync?.stop();
  await server?.close();
});

async function runExample(example) {
  const { code, checks } = instrument(example.code);
  const n = ++count;
  const page = await browser.newPage(server.url);
  try {
    const r = await ev(page, runInPage, { code, checks, prefix: `docs${n}-`, syncUrl: sync.url, placeholder: PLACEHOLDER, ms: EXAMPLE_MS }, EXAMPLE_MS + 5_000);
    const where = `${example.file.slice(ROOT.length)}:${example.line} ${example.name}`;
    const failures = r.results.flatMap((c, k) => c.failures.map((f) => `line ${checks[k].line} \`${checks[k].text}\`: ${f}`));
    assert.deepEqual(failures, [], `${where}: a stated result is wrong`);
    assert.equal(r.error, null, `${where} threw:\n${r.error}\n--- the example as run ---\n${code}`);
    const unrun = checks.filter((_, k) => r.results[k].ran === 0).map((c) => `line ${c.line}: ${c.text}`);
    assert.deepEqual(unrun, [], `${where}: stated results that never ran`);
    assert.deepEqual(page.errors, [], `${where}: errors in the page`);
    return checks.length;
  } finally {
    await page.close();
  }
}

const opts = { timeout: 60_000 };
const examples = [...TYPES.flatMap(typeExamples), ...readmeExamples()];

test("the docs have examples, and each README block that does not run says why", () => {
  const types = examples.filter((e) => e.file !== README);
  assert.ok(types.length >= 15, `only ${types.length} @example blocks in the types`);
  for (const name of ["Logfold.open", "Log.append", "Log.read", "Log.events", "Table", "Log.subscribe", "Log.tablesAt", "SyncOptions", "Sync", "LogfoldError"]) {
    assert.ok(types.some((e) => e.name === name || e.name.startsWith(`${name} #`)), `no @example for ${name}`);
  }
  const notRun = examples.filter((e) => e.notRun);
  assert.ok(notRun.length <= 1, `keep the not-run list tiny: ${notRun.map((e) => e.name).join(", ")}`);
});

test("README starts with its two commands, and the quick start is under ten lines of code", () => {
  const text = readFileSync(README, "utf8");
  const first = fences(text)[0];
  assert.equal(first.lang, "sh");
  assert.deepEqual(first.code.split("\n").map((l) => l.split(/\s+/).slice(0, 2).join(" ")), ["npm start", "npm test"]);
  const quick = examples.find((e) => e.name === 'README "Quick start"');
  assert.ok(quick, "README has no ```js block under a Quick start heading");
  const lines = quick.code.split("\n").filter((l) => l.trim() !== "");
  assert.ok(lines.length < 10, `the quick start has ${lines.length} lines of code`);
  assert.match(text.split("## Quick start")[1] ?? "", /npm i logfold/);
});

// The checker itself: each of these must fail, or a passing run would prove nothing.
test("an example fails when a stated result is wrong, never runs, or the example throws", opts, async () => {
  const bad = {
    "a wrong value": [/stated result is wrong/, "const log = await Logfold.open({ name: \"x\" });", "log.head; // → 1"],
    "a wrong value inside a subscriber (logfold catches what subscribers throw)": [
      /stated result is wrong/,
      "const log = await Logfold.open({ name: \"x\", projections: { t: { on: { A: { set: { n: 1 } } } } } });",
      "log.subscribe(\"t\", (change) => {",
      "  change.seq; // → 2",
      "});",
      "await log.append({ stream: \"s\", type: \"A\" });",
      "await new Promise((r) => setTimeout(r, 50));",
    ],
    "a check that never ran": [/never ran/, "try {", "  await Logfold.open({ name: \"x\" });", "} catch (e) {", "  e.code; // → \"CLOSED\"", "}"],
    "a throw": [/threw/, "await Logfold.open({ name: \"\" });"],
    "a missing key": [/stated result is wrong/, "({ a: 1, b: 2 }); // → { a: 1 }"],
    "an arrow no check would see": [/not in the form/, "1 + 1; //→ 3"],
  };
  for (const [what, [reason, ...lines]] of Object.entries(bad)) {
    const run = runExample({ name: what, code: lines.join("\n"), line: 1, file: join(ROOT, "self-test") });
    await assert.rejects(run, (e) => reason.test(e.message), what);
  }
  // …and a right one passes, with undefined properties counted as absent.
  assert.equal(await runExample({ name: "right", code: "({ a: 1, b: undefined }); // → { a: 1 }", line: 1, file: join(ROOT, "self-test") }), 1);
});

for (const example of examples) {
  const name = `${example.name} (${example.file.slice(ROOT.length)}:${example.line}) runs and its stated results hold`;
  if (example.notRun) test(name, { skip: `not run: ${example.notRun}` }, () => {});
  else test(name, opts, async () => {
    const n = await runExample(example);
    assert.ok(n > 0 || /throw|assert/.test(example.code), `${example.name} states no result (add \`// → value\` checks)`);
  });
}

test("typedoc builds the API docs from the types with no warnings", { timeout: 120_000 }, () => {
  const out = mkdtempSync(join(tmpdir(), "logfold-docs-"));
  try {
    const r = spawnSync("bash", [join(ROOT, "scripts/docs"), "--out", out], { cwd: ROOT, encoding: "utf8", timeout: 110_000 });
    if (r.error) throw r.error;
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, /\[warning\]/);
    assert.ok(existsSync(join(out, "index.html")));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
