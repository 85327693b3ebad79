// The real sync server for the end-to-end tests: `logfold-server` spawned on a fixed port over a
// SQLite file in a temporary folder, with `--cors-origin` for the test page's origin. It can be
// SIGKILLed (like a crash) and restarted on the same database; node reads its log over HTTP to
// check what the browsers pushed.
//
// The binary is $LOGFOLD_SERVER_BIN, else $CARGO_TARGET_DIR/server/logfold-server, else
// target/server/logfold-server (build it with `cargo build --profile server -p logfold-server`).
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ROOT, withTimeout, sleep, WAIT } from "./harness.mjs";

export const SERVER_BIN =
  process.env.LOGFOLD_SERVER_BIN ?? join(resolve(ROOT, process.env.CARGO_TARGET_DIR ?? "target"), "server/logfold-server");

export const serverBuilt = () => existsSync(SERVER_BIN);

const live = new Set(); // server processes still running, killed if node exits early
process.on("exit", () => {
  for (const child of live) {
    try { child.kill("SIGKILL"); } catch {}
  }
});

/**
 * Starts `logfold-server` on 127.0.0.1:`port` over `<dir>/sync.sqlite3` (a fresh temporary
 * folder unless `dir` is given), allowing `corsOrigin`. `tokens` (the token file's text) turns on
 * bearer tokens. Resolves once /healthz answers.
 */
export async function startSyncServer({ port, corsOrigin, tokens, dir, maxBody, pageBytes, args: extra = [] } = {}) {
  const folder = dir ?? (await mkdtemp(join(tmpdir(), "logfold-sync-e2e-")));
  const database = join(folder, "sync.sqlite3");
  const args = ["--listen", `127.0.0.1:${port}`, "--database", database];
  if (maxBody) args.push("--max-body", String(maxBody));
  if (pageBytes) args.push("--page-bytes", String(pageBytes));
  if (corsOrigin) args.push("--cors-origin", corsOrigin);
  args.push(...extra);
  const tokensFile = join(folder, "tokens.txt");
  if (tokens !== undefined) {
    await writeFile(tokensFile, tokens);
    args.push("--tokens", tokensFile);
  }
  const url = `http://127.0.0.1:${port}`;
  let child = null;
  let output = "";
  let exited = null;

  async function spawnOnce() {
    const c = spawn(SERVER_BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
    child = c;
    live.add(c);
    const onData = (d) => { output = (output + d).slice(-20000); };
    c.stdout.on("data", onData);
    c.stderr.on("data", onData);
    exited = new Promise((ok) => c.once("exit", (code, signal) => { live.delete(c); ok({ code, signal }); }));
    let gone = null;
    exited.then((r) => { gone = r; });
    const deadline = Date.now() + WAIT;
    for (;;) {
      if (gone) return false; // e.g. the port is still held: the caller retries
      const ok = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
      if (ok) return true;
      if (Date.now() > deadline) throw new Error(`logfold-server did not answer /healthz on ${url}: ${output}`);
      await sleep(50);
    }
  }

  async function start() {
    const deadline = Date.now() + WAIT;
    while (!(await spawnOnce())) {
      if (Date.now() > deadline) throw new Error(`logfold-server would not start on ${url}: ${output}`);
      await sleep(250);
    }
  }

  if (!existsSync(SERVER_BIN)) throw new Error(`no server binary at ${SERVER_BIN}: cargo build --profile server -p logfold-server`);
  await start();

  const handle = {
    url,
    folder,
    database,
    get pid() { return child?.pid; },
    output: () => output,
    /** SIGKILL, like a crash; resolves once the process is gone. */
    async kill() {
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGKILL");
      await withTimeout(exited, 10_000, "logfold-server exit after SIGKILL");
    },
    /** Starts the server again on the same port and database. */
    async restart() {
      await handle.kill();
      await start();
    },
    /** Replaces the token file's text: the server reads it when it (re)starts. */
    async writeTokens(text) {
      await writeFile(tokensFile, text);
    },
    /** Kills the server and removes its folder (unless the caller gave it). */
    async stop() {
      await handle.kill();
      if (!dir) await rm(folder, { recursive: true, force: true });
    },
    /** GET a path, JSON; throws on an HTTP error. */
    async get(path, token) {
      const headers = token ? { authorization: `Bearer ${token}` } : {};
      const r = await fetch(`${url}${path}`, { headers });
      if (!r.ok) throw new Error(`GET ${path}: HTTP ${r.status} ${await r.text()}`);
      return r.json();
    },
    /** Every event of server log `log`, read in pages: { head, events }. */
    async events(log, token) {
      const events = [];
      let after = 0;
      let head = 0;
      for (;;) {
        const page = await handle.get(`/v1/logs/${encodeURIComponent(log)}/events?after=${after}&limit=10000`, token);
        head = page.head;
        events.push(...page.events);
        if (page.events.length === 0 || events.length >= head) return { head, events };
        after = page.events[page.events.length - 1].offset;
      }
    },
    /** The head of server log `log` (0 when it has no events). */
    async head(log, token) {
      return (await handle.get(`/v1/logs/${encodeURIComponent(log)}/events?after=0&limit=1`, token)).head;
    },
    /**
     * `logfold_requests_total` summed by HTTP status, e.g. { "200": 12, "401": 1 }, over the
     * routes whose pattern contains `route` (every route when omitted).
     */
    async requestsByStatus(route = "") {
      const text = await (await fetch(`${url}/metrics`)).text();
      const out = {};
      for (const line of text.split("\n")) {
        const m = /^logfold_requests_total\{(.*)\}\s+(\d+(?:\.\d+)?)\s*$/.exec(line); // routes hold braces: {log}
        if (!m) continue;
        const status = /status="(\d+)"/.exec(m[1])?.[1];
        const path = /route="([^"]*)"/.exec(m[1])?.[1] ?? "";
        if (status && path.includes(route)) out[status] = (out[status] ?? 0) + Number(m[2]);
      }
      return out;
    },
  };
  return handle;
}
