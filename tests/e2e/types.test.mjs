// The TypeScript contract: tests/types/usage.ts (real usage plus @ts-expect-error misuse) must
// compile with `tsc --noEmit` against js/index.d.ts and against the types pkg/ ships; and it must
// fail against `any` declarations, which shows its misuse lines really check something.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { ROOT, PKG_DIR, TEST_TIMEOUT } from "./harness.mjs";

const TSC = join(ROOT, "node_modules/.bin/tsc");
const CONFIG = join(ROOT, "tests/types/tsconfig.json");
const USAGE = join(ROOT, "tests/types/usage.ts");

function tsc(project) {
  const r = spawnSync(TSC, ["-p", project, "--noEmit", "--pretty", "false"], { cwd: ROOT, encoding: "utf8", timeout: 100_000 });
  if (r.error) throw r.error;
  return { status: r.status, out: r.stdout + r.stderr };
}

/** A temporary project extending ours, with `logfold` resolved to `types` and the given files. */
function withProject(types, files, fn) {
  const dir = mkdtempSync(join(tmpdir(), "logfold-types-"));
  try {
    const written = Object.entries(files.extra ?? {}).map(([name, text]) => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    });
    writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({
      extends: CONFIG,
      compilerOptions: { baseUrl: dir, paths: { logfold: [types] } },
      files: [...(files.usage ? [USAGE] : []), ...written],
    }));
    return fn(join(dir, "tsconfig.json"), dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const opts = { timeout: TEST_TIMEOUT };

test("tests/types/usage.ts compiles against js/index.d.ts (tsc --noEmit, strict)", opts, () => {
  const r = tsc(CONFIG);
  assert.equal(r.status, 0, r.out);
});

test("the TypeScript test fails against any-typed declarations (its @ts-expect-error lines bite)", opts, () => {
  withProject("./any.d.ts", { usage: true, extra: { "any.d.ts": [
    "export type Json = any; export type Durability = any; export type ErrorCode = any; export type ErrorDetails = any;",
    "export type NewEvent<D = any> = any; export type StoredEvent<D = any> = any; export type ExpectedVersion = any;",
    "export type AppendOptions = any; export type OpenOptions = any; export type ReadOptions = any; export type LogStats = any;",
    "export type RepairReport = any; export type Log = any;",
    "export declare const Logfold: any; export declare class LogfoldError<C = any> extends Error { [k: string]: any }",
  ].join("\n") } }, (project) => {
    const r = tsc(project);
    assert.notEqual(r.status, 0, "usage.ts compiled against `any` types: its misuse checks check nothing");
    assert.match(r.out, /TS2578/, "expected unused @ts-expect-error directives");
  });
});

test("the types pkg/ ships compile the same usage", opts, () => {
  const pkgJson = join(PKG_DIR, "package.json");
  assert.ok(existsSync(pkgJson), "pkg/ is missing: run npm run build");
  const pkg = JSON.parse(readFileSync(pkgJson, "utf8"));
  const types = pkg.exports?.["."]?.types ?? pkg.types;
  assert.ok(types, "pkg/package.json names no types");
  const file = join(PKG_DIR, types);
  assert.ok(existsSync(file), `pkg/${types} is missing`);
  withProject(file, { usage: true }, (project) => {
    const r = tsc(project);
    assert.equal(r.status, 0, r.out);
  });
});

test("after `err instanceof LogfoldError`, code and details are typed (not any)", opts, () => {
  const text = `
    import { Logfold, LogfoldError } from "logfold";
    export async function f(): Promise<string> {
      try {
        const log = await Logfold.open({ name: "x" });
        await log.append({ stream: "s", type: "T" }, { expectedVersion: 0 });
        return "ok";
      } catch (err) {
        if (err instanceof LogfoldError) {
          // @ts-expect-error code is an ErrorCode, not a number
          const n: number = err.code;
          // @ts-expect-error not an ErrorCode
          if (err.code === "NOT_A_CODE") return "never";
          // @ts-expect-error details is not a boolean
          const b: boolean = err.details;
          void [n, b];
          return err.code;
        }
        throw err;
      }
    }
  `;
  withProject(join(ROOT, "js/index.d.ts"), { extra: { "narrow.ts": text } }, (project) => {
    const r = tsc(project);
    assert.equal(r.status, 0, `a caught error narrowed by instanceof has any-typed code/details:\n${r.out}`);
  });
});
