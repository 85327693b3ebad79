// Shared harness for the end-to-end tests: a static server on a fixed port and a real headless
// Chromium on a persistent profile, driven by playwright-core over CDP.
//
// We spawn /usr/bin/chromium ourselves (instead of launchPersistentContext) so that we know the
// browser's PID and can SIGKILL it (the durability tests); the same launcher is used everywhere so
// every test runs the browser the same way. The Debian launcher script `exec`s the real binary, so
// the PID we spawn is the browser process; it runs in its own process group (detached) and a kill
// takes the whole group (browser, renderers, utility processes) down at once, like a crash.
import { spawn, spawnSync } from "node:child_process";
import { readFile, rm, mkdir } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serve } from "../../scripts/serve.mjs";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
/** The built npm package. LOGFOLD_PKG_DIR may point elsewhere (only for debugging the tests). */
export const PKG_DIR = process.env.LOGFOLD_PKG_DIR ?? join(ROOT, "pkg");
export const PAGE_DIR = join(ROOT, "tests/e2e/page");
// Browser profiles live outside tests/e2e/: `node --test tests/e2e/` walks that folder, hidden
// ones included, and stops at the dangling Singleton* symlinks a SIGKILLed Chromium leaves behind.
export const PROFILES = join(ROOT, ".profiles/e2e");
export const CHROMIUM = "/usr/bin/chromium";
export const TEST_TIMEOUT = 120_000;
export const WAIT = 30_000;

const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--no-default-browser-check",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
  "--disable-features=Translate,MediaRouter",
  "--remote-debugging-port=0",
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Rejects if `promise` has not settled within `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, fail) => {
    timer = setTimeout(() => fail(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/** page.evaluate with a timeout (playwright puts none on evaluate). */
export function ev(page, fn, arg, ms = WAIT) {
  return withTimeout(page.evaluate(fn, arg), ms, `page.evaluate ${String(fn).slice(0, 80)}`);
}

/** Serves /pkg/ from the built package and / from the test page on a fixed port. */
export async function startServer(port) {
  const server = await serve({ mounts: { "/pkg/": PKG_DIR, "/": PAGE_DIR }, port, host: "127.0.0.1" });
  server.unref?.();
  return {
    origin: `http://127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}/`,
    close: () => new Promise((ok) => { server.closeAllConnections?.(); server.close(() => ok()); }),
  };
}

/** A profile directory for one test; wiped when `fresh`. */
export async function profileDir(name, { fresh = true } = {}) {
  const dir = join(PROFILES, name);
  if (fresh) await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  return dir;
}

const live = new Set(); // browsers still running, killed if node exits early
process.on("exit", () => {
  for (const pid of live) {
    try { process.kill(-pid, "SIGKILL"); } catch {}
  }
});

/**
 * Launches Chromium on `profile` (a directory) and connects playwright to it.
 * Returns { pid, browser, context, newPage(url), close(), kill() }.
 */
export async function launch(profile) {
  const portFile = join(profile, "DevToolsActivePort");
  await rm(portFile, { force: true });
  const child = spawn(CHROMIUM, [...CHROMIUM_ARGS, `--user-data-dir=${profile}`, "about:blank"], {
    detached: true,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => { stderr = (stderr + d).slice(-20000); });
  const exited = new Promise((ok) => child.once("exit", (code, signal) => ok({ code, signal })));
  let gone = false;
  exited.then(() => { gone = true; live.delete(child.pid); });
  live.add(child.pid);

  const killGroup = async () => {
    if (!gone) {
      try { process.kill(-child.pid, "SIGKILL"); } catch {}
      await withTimeout(exited, 10_000, "chromium exit after SIGKILL");
    }
    // Let the rest of the group (zygote, renderers) die before the profile is reused.
    for (let i = 0; i < 50 && groupAlive(child.pid); i++) await sleep(100);
  };

  try {
    let port;
    const deadline = Date.now() + WAIT;
    while (!port) {
      if (gone) throw new Error(`chromium exited at start: ${stderr}`);
      if (Date.now() > deadline) throw new Error(`chromium did not start: ${stderr}`);
      port = (await readFile(portFile, "utf8").catch(() => "")).split("\n")[0].trim();
      if (!port) await sleep(50);
    }
    const browser = await withTimeout(chromium.connectOverCDP(`http://127.0.0.1:${port}`), WAIT, "connectOverCDP");
    const context = browser.contexts()[0];
    context.setDefaultTimeout(WAIT);
    const handle = {
      pid: child.pid,
      browser,
      context,
      stderr: () => stderr,
      /** A new tab on `url`, with the page's `window.ready` awaited. */
      async newPage(url, { wait = true } = {}) {
        const page = await context.newPage();
        page.setDefaultTimeout(WAIT);
        page.errors = [];
        page.on("pageerror", (e) => page.errors.push(String(e)));
        page.on("console", (m) => { if (m.type() === "error") page.errors.push(`${m.text()} ${m.location()?.url ?? ""}`.trim()); });
        page.on("response", (r) => { if (r.status() >= 400) page.errors.push(`HTTP ${r.status()} ${r.url()}`); });
        if (url) {
          await page.goto(url);
          if (wait) await ready(page);
        }
        return page;
      },
      /** Closes the browser cleanly (Browser.close), SIGKILL if it does not exit. */
      async close() {
        if (gone) return;
        try {
          const cdp = await withTimeout(browser.newBrowserCDPSession(), 5_000, "browser CDP session");
          await withTimeout(cdp.send("Browser.close").catch(() => {}), 10_000, "Browser.close");
          await withTimeout(exited, 15_000, "chromium exit after Browser.close");
        } catch {
          // fall through to the kill
        } finally {
          await browser.close().catch(() => {});
          await killGroup();
        }
      },
      /**
       * SIGKILL, like a crash: `"group"` kills every process of the browser at once (browser,
       * storage service, renderers); `"browser"` kills only the browser process and lets its
       * children notice and exit (leftovers are killed after 10 s).
       */
      async kill(mode = "group") {
        if (mode === "browser" && !gone) {
          try { process.kill(child.pid, "SIGKILL"); } catch {}
          await withTimeout(exited, 10_000, "chromium exit after SIGKILL");
          for (let i = 0; i < 100 && groupAlive(child.pid); i++) await sleep(100);
        }
        await killGroup();
        await browser.close().catch(() => {});
      },
    };
    return handle;
  } catch (e) {
    await killGroup();
    throw e;
  }
}

function groupAlive(pgid) {
  try {
    const r = spawnSync("ps", ["-eo", "pgid=,stat="], { encoding: "utf8" });
    return r.stdout.split("\n").some((line) => {
      const [g, stat] = line.trim().split(/\s+/);
      return Number(g) === pgid && stat && !stat.startsWith("Z");
    });
  } catch {
    return false;
  }
}

/** Waits for the test page's module to have imported the package; throws its error if it failed. */
export async function ready(page) {
  const r = await ev(page, () => window.ready);
  if (!r || !r.ok) throw new Error(`the page could not load /pkg/index.js: ${r?.error} ${page.errors?.join(" | ")}`);
  return r;
}

export const pkgBuilt = () => existsSync(join(PKG_DIR, "index.js"));

export const rand = (lo, hi) => lo + Math.floor(Math.random() * (hi - lo + 1));
export { sleep };
