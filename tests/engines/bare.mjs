// Browsers without WebDriver, for what WebDriver cannot do in every engine: WebKitGTK's WebDriver
// sessions use an ephemeral data store (a new session starts empty), and a crash test SIGKILLs the
// browser. The browser (a bare MiniBrowser under Xvfb, or Firefox -headless on its own profile)
// loads tests/engines/page/persist.html?phase=… and reports back over HTTP (/report).
import { createServer } from "node:http";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { ENGINES, MINIBROWSER, PKG_DIR, PORTS, PROFILES, ROOT, WAIT, sleep, start, startDisplay, withTimeout } from "./drivers.mjs";

const PAGE = join(ROOT, "tests/engines/page");
const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".wasm": "application/wasm" };

// Firefox on a fresh profile, started by hand: no first-run pages, no calls home, and no session
// restore after a kill (it would load the crashing page again).
const FIREFOX_PREFS = {
  "browser.startup.page": 0,
  "browser.startup.homepage_override.mstone": "ignore",
  "startup.homepage_welcome_url": "",
  "startup.homepage_welcome_url.additional": "",
  "browser.sessionstore.resume_from_crash": false,
  "browser.shell.checkDefaultBrowser": false,
  "datareporting.policy.dataSubmissionEnabled": false,
  "datareporting.policy.firstRunURL": "",
  "toolkit.telemetry.reportingpolicy.firstRun": false,
  "app.update.disabledForTesting": true,
  "network.captive-portal-service.enabled": false,
  "network.connectivity-service.enabled": false,
  "browser.safebrowsing.update.enabled": false,
  "extensions.update.enabled": false,
  "browser.tabs.warnOnClose": false,
};

/** Serves the page and /pkg/ on `port`; `next(filter)` resolves to the next report that matches. */
async function reportServer(port) {
  let waiting = [];
  const reports = [];
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, "http://x");
    if (url.pathname === "/report") {
      let r;
      try {
        r = JSON.parse(decodeURIComponent(url.search.slice(1)));
      } catch {
        r = { error: `bad report ${url.search}` };
      }
      reports.push(r);
      const still = [];
      for (const w of waiting) (w.filter(r) ? w.ok : () => still.push(w))(r);
      waiting = still;
      res.writeHead(204).end();
      return;
    }
    const [dir, rel] = url.pathname.startsWith("/pkg/") ? [PKG_DIR, url.pathname.slice(5)] : [PAGE, url.pathname.slice(1) || "persist.html"];
    const file = normalize(join(dir, rel));
    try {
      if (!file.startsWith(dir)) throw new Error("outside");
      const body = await readFile(file);
      res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream", "cache-control": "no-cache" }).end(body);
    } catch {
      res.writeHead(404).end("not found");
    }
  });
  await new Promise((ok, fail) => server.once("error", fail).listen(port, "127.0.0.1", ok));
  return {
    url: `http://127.0.0.1:${port}/persist.html`,
    reports,
    /** The next report (from now on) for which `filter` holds, or an error report. */
    next(filter = () => true) {
      const f = (r) => r.error !== undefined || filter(r);
      return new Promise((ok) => waiting.push({ filter: f, ok }));
    },
    close: () => new Promise((ok) => { server.closeAllConnections?.(); server.close(() => ok()); }),
  };
}

/** A bare browser of `engine` on a profile kept across its launches; `open(query)` starts one. */
async function bareBrowser(engine, port) {
  const profile = join(PROFILES, `${engine}-bare`);
  await rm(profile, { recursive: true, force: true });
  await mkdir(profile, { recursive: true });
  const display = ENGINES[engine].display ? await startDisplay() : null;
  if (engine === "firefox") {
    await writeFile(join(profile, "user.js"), Object.entries(FIREFOX_PREFS).map(([k, v]) => `user_pref(${JSON.stringify(k)}, ${JSON.stringify(v)});`).join("\n") + "\n");
  }
  const server = await reportServer(port);
  const env = display
    ? { DISPLAY: display.display, WEBKIT_DISABLE_COMPOSITING_MODE: "1", LIBGL_ALWAYS_SOFTWARE: "1", XDG_RUNTIME_DIR: profile, HOME: profile }
    : { HOME: profile, MOZ_CRASHREPORTER_DISABLE: "1" };
  const command = (url) =>
    engine === "webkit" ? [MINIBROWSER, [url]]
    : engine === "firefox" ? [ENGINES.firefox.browser, ["-headless", "-no-remote", "-profile", profile, url]]
    : (() => { throw new Error(`no bare browser for ${engine}`); })();
  return {
    server,
    open(query) {
      const [cmd, args] = command(`${server.url}?${query}`);
      return start(cmd, args, env);
    },
    async close() {
      await server.close();
      await display?.stop();
      await rm(profile, { recursive: true, force: true }).catch(() => {});
    },
  };
}

/** One phase: start the browser, wait for its final report, quit it (SIGTERM). */
async function visit(bare, query, phase) {
  const done = bare.server.next((r) => r.phase === phase && !r.started && r.acked === undefined);
  const browser = bare.open(query);
  try {
    return await withTimeout(done, WAIT * 2, `${phase}: ${browser.output().slice(-2000)}`);
  } finally {
    await browser.stop();
  }
}

/**
 * Writes a log in a bare `engine` browser, quits it, starts it again on the same profile and reads
 * the log back. Resolves to { wrote, read } as the page reported them.
 */
export async function restart(engine, { port = PORTS.bare } = {}) {
  const bare = await bareBrowser(engine, port);
  try {
    const wrote = await visit(bare, "phase=write", "write");
    const read = await visit(bare, "phase=read", "read");
    return { wrote, read };
  } finally {
    await bare.close();
  }
}

/**
 * Appends batches of 10 in a bare `engine` browser with `durability` until `atLeast` positions are
 * acknowledged (and reported), SIGKILLs the browser's whole process group mid-append, starts it
 * again and reads the log. Resolves to { acked (the highest position reported before the kill),
 * check (what the page then found) }.
 */
export async function crash(engine, { durability = "strict", atLeast = 200, port = PORTS.bare } = {}) {
  const bare = await bareBrowser(engine, port);
  try {
    const reached = bare.server.next((r) => r.phase === "crash" && r.acked >= atLeast);
    const browser = bare.open(`phase=crash&durability=${durability}`);
    let acked = 0;
    try {
      const r = await withTimeout(reached, WAIT * 2, `crash: ${browser.output().slice(-2000)}`);
      if (r.error) throw new Error(`the crash page failed: ${r.error}`);
      await sleep(Math.floor(Math.random() * 200)); // land the kill anywhere in an append
      acked = Math.max(...bare.server.reports.filter((x) => x.phase === "crash" && x.acked).map((x) => x.acked));
      try { process.kill(-browser.child.pid, "SIGKILL"); } catch {}
      await withTimeout(browser.exited, 10_000, "the browser's exit after SIGKILL");
      await sleep(500); // its other processes go with the group
    } finally {
      await browser.stop();
    }
    const check = await visit(bare, "phase=check", "check");
    return { acked, check };
  } finally {
    await bare.close();
  }
}
