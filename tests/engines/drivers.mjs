// The cross-engine harness: each engine's own WebDriver server (chromedriver, geckodriver,
// WebKitWebDriver), spawned here on a fixed port, driven by selenium-webdriver as a plain W3C
// client (`usingServer`, so Selenium Manager never looks for or downloads anything).
//
// WebKitGTK has no headless mode: its MiniBrowser gets an X display from an Xvfb started here.
// Ports: tests/engines uses 47380-47389 only (see PORTS).
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Builder } from "selenium-webdriver";
import { serve } from "../../scripts/serve.mjs";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const PKG_DIR = process.env.LOGFOLD_PKG_DIR ?? join(ROOT, "pkg");
export const PAGE_DIR = join(ROOT, "tests/e2e/page");
export const PROFILES = join(ROOT, ".profiles/engines");
export const WAIT = 30_000;
export const TEST_TIMEOUT = 120_000;

/** Every port tests/engines and bench/engines.mjs listen on. */
export const PORTS = { page: 47380, sync: 47381, chromium: 47382, firefox: 47383, webkit: 47384, benchPage: 47385, benchSync: 47386, benchDriver: 47387, bare: 47388 };

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, fail) => {
    timer = setTimeout(() => fail(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

function which(name) {
  const r = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : null;
}

const GECKODRIVER = process.env.GECKODRIVER ?? (existsSync(join(homedir(), ".cargo/bin/geckodriver")) ? join(homedir(), ".cargo/bin/geckodriver") : which("geckodriver"));
export const MINIBROWSER = "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser";

/**
 * What each engine needs. `caps(profile)` are the W3C capabilities of a new session on
 * `profile` (a fresh directory per launch, so every session starts with empty storage).
 */
export const ENGINES = {
  chromium: {
    label: "Chromium",
    driver: "/usr/bin/chromedriver",
    browser: "/usr/bin/chromium",
    args: (port) => [`--port=${port}`],
    caps: (profile) => ({
      browserName: "chrome",
      "goog:chromeOptions": {
        binary: "/usr/bin/chromium",
        args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--disable-features=Translate,MediaRouter", `--user-data-dir=${profile}`],
      },
    }),
  },
  firefox: {
    label: "Firefox",
    driver: GECKODRIVER,
    browser: "/usr/bin/firefox-esr",
    args: (port, profile) => ["--port", String(port), "--host", "127.0.0.1", "--profile-root", profile],
    caps: (profile) => ({
      browserName: "firefox",
      "moz:firefoxOptions": {
        binary: "/usr/bin/firefox-esr",
        // A profile of our own (not geckodriver's temporary copy), so a restart finds its data.
        args: ["-headless", "-profile", join(profile, "firefox")],
        prefs: {
          // No calls home during a test (updates, telemetry, captive portal, safe browsing).
          "app.update.disabledForTesting": true,
          "datareporting.policy.dataSubmissionEnabled": false,
          "toolkit.telemetry.reportingpolicy.firstRun": false,
          "network.captive-portal-service.enabled": false,
          "network.connectivity-service.enabled": false,
          "browser.safebrowsing.update.enabled": false,
          "extensions.update.enabled": false,
          // Background windows keep their timers (the sync heartbeat, the two-tab tests).
          "dom.min_background_timeout_value": 4,
          "dom.timeout.enable_budget_timer_throttling": false,
        },
      },
    }),
  },
  webkit: {
    label: "WebKit",
    driver: "/usr/bin/WebKitWebDriver",
    browser: MINIBROWSER,
    display: true,
    args: (port) => [`--port=${port}`, "--host=127.0.0.1"],
    caps: () => ({
      browserName: "MiniBrowser",
      "webkitgtk:browserOptions": { binary: MINIBROWSER, args: ["--automation"] },
    }),
  },
};

/** The engines to run: $LOGFOLD_ENGINES (comma-separated), else every engine. */
export function selectedEngines(fallback = Object.keys(ENGINES)) {
  const list = (process.env.LOGFOLD_ENGINES ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  const names = list.length > 0 ? list : fallback;
  for (const n of names) if (!ENGINES[n]) throw new Error(`unknown engine ${n} (known: ${Object.keys(ENGINES).join(", ")})`);
  return names;
}

/** Why `engine` cannot run here (a missing binary), or null. */
export function missing(engine) {
  const e = ENGINES[engine];
  const need = [e.driver ?? "geckodriver", e.browser, ...(e.display ? ["/usr/bin/Xvfb"] : [])];
  const gone = need.filter((p) => !existsSync(p));
  return gone.length ? `missing ${gone.join(", ")} (bash scripts/setup installs it)` : null;
}

const live = new Set(); // child processes still running, killed if node exits early
process.on("exit", () => {
  for (const c of live) {
    try { process.kill(-c.pid, "SIGKILL"); } catch {}
  }
});

export function start(cmd, args, env) {
  const child = spawn(cmd, args, { detached: true, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  let output = "";
  const onData = (d) => { output = (output + d).slice(-20000); };
  child.stdout.on("data", onData);
  child.stderr.on("data", onData);
  live.add(child);
  const exited = new Promise((ok) => child.once("exit", (code, signal) => { live.delete(child); ok({ code, signal }); }));
  return {
    child,
    exited,
    output: () => output,
    gone: () => child.exitCode !== null || child.signalCode !== null,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      try { process.kill(-child.pid, "SIGTERM"); } catch {}
      const quit = await Promise.race([exited, sleep(5000).then(() => null)]);
      if (!quit) {
        try { process.kill(-child.pid, "SIGKILL"); } catch {}
        await withTimeout(exited, 10_000, `${cmd} exit after SIGKILL`);
      }
    },
  };
}

/** An Xvfb server on a free display; resolves to { display, stop }. */
export async function startDisplay() {
  const x = start("/usr/bin/Xvfb", ["-displayfd", "1", "-screen", "0", "1280x900x24", "-nolisten", "tcp"]);
  const deadline = Date.now() + WAIT;
  for (;;) {
    const m = /^(\d+)\s*$/m.exec(x.output());
    if (m) return { display: `:${m[1]}`, stop: () => x.stop() };
    if (x.gone()) throw new Error(`Xvfb exited: ${x.output()}`);
    if (Date.now() > deadline) throw new Error(`Xvfb did not start: ${x.output()}`);
    await sleep(50);
  }
}

async function waitForDriver(url, proc, what) {
  const deadline = Date.now() + WAIT;
  for (;;) {
    const ok = await fetch(`${url}/status`).then((r) => r.ok, () => false);
    if (ok) return;
    if (proc.gone()) throw new Error(`${what} exited at start: ${proc.output()}`);
    if (Date.now() > deadline) throw new Error(`${what} did not answer on ${url}: ${proc.output()}`);
    await sleep(100);
  }
}

/**
 * Starts `engine`'s WebDriver server on `port` and one browser session on a fresh profile.
 * Returns { engine, label, version, driver (a selenium WebDriver), run(fn, arg), goto(url),
 * newWindow(url), close() }.
 */
export async function launch(engine, { port = PORTS[engine] } = {}) {
  const e = ENGINES[engine];
  const why = missing(engine);
  if (why) throw new Error(`${e.label}: ${why}`);
  const profile = join(PROFILES, engine);
  await rm(profile, { recursive: true, force: true });
  await mkdir(profile, { recursive: true });
  const display = e.display ? await startDisplay() : null;
  const env = display
    ? { DISPLAY: display.display, WEBKIT_DISABLE_COMPOSITING_MODE: "1", LIBGL_ALWAYS_SOFTWARE: "1", XDG_RUNTIME_DIR: profile, HOME: profile }
    : {};
  await mkdir(join(profile, "firefox"), { recursive: true });
  const proc = start(e.driver, e.args(port, profile), env);
  const url = `http://127.0.0.1:${port}`;
  let driver;
  const session = async () => {
    const d = await withTimeout(new Builder().usingServer(url).withCapabilities(e.caps(profile)).build(), 60_000, `${engine} new session`);
    await d.manage().setTimeouts({ script: WAIT, pageLoad: WAIT });
    return d;
  };
  try {
    await waitForDriver(url, proc, `${engine} WebDriver`);
    driver = await session();
    const caps = await driver.getCapabilities();
    const handle = {
      engine,
      label: e.label,
      get driver() {
        return driver;
      },
      browserName: caps.getBrowserName(),
      version: caps.getBrowserVersion(),
      /** Quits the browser (a clean close) and starts it again on the same profile. */
      async restart() {
        await withTimeout(driver.quit(), 20_000, `${engine} quit`);
        driver = await session();
      },
      /**
       * Runs `fn(arg)` in the current window (a function or async function; its result must be
       * JSON-able) and returns what it resolves to. A hang fails after `ms`.
       */
      run(fn, arg, ms = WAIT) {
        return withTimeout(driver.executeScript(`return (${fn})(arguments[0]);`, arg ?? null), ms + 5000, `${engine}: ${String(fn).slice(0, 80)}`);
      },
      /** Loads `url` in the current window and waits for the test page's `window.ready`. */
      async goto(pageUrl) {
        await driver.get(pageUrl);
        return handle.ready();
      },
      async ready() {
        const r = await handle.run(() => window.ready);
        if (!r || !r.ok) throw new Error(`${engine}: the page could not load /pkg/index.js: ${r?.error}`);
        // WebDriver classic gives no console in every engine: the page keeps what went wrong.
        await handle.run(() => {
          if (window.problems) return;
          const problems = (window.problems = []);
          addEventListener("error", (e) => problems.push(`error: ${e.message}`));
          addEventListener("unhandledrejection", (e) => problems.push(`unhandled rejection: ${e.reason?.stack ?? e.reason}`));
          for (const level of ["error", "warn"]) {
            const original = console[level].bind(console);
            console[level] = (...args) => {
              problems.push(`console.${level}: ${args.map((a) => (a instanceof Error ? `${a.name}: ${a.message}` : String(a))).join(" ")}`);
              original(...args);
            };
          }
        });
        return r;
      },
      /** What the current window's page reported since it loaded (errors, rejections, console.error and warn). */
      problems: () => handle.run(() => window.problems ?? []),
      async reload() {
        await driver.navigate().refresh();
        return handle.ready();
      },
      /** Opens another window (a second tab of the same origin) on `url`; returns its handle. */
      async newWindow(pageUrl) {
        await driver.switchTo().newWindow("window");
        const id = await driver.getWindowHandle();
        await handle.goto(pageUrl);
        return id;
      },
      windowHandle: () => driver.getWindowHandle(),
      use: (id) => driver.switchTo().window(id),
      output: () => proc.output(),
      async close() {
        await withTimeout(driver.quit(), 20_000, `${engine} quit`).catch(() => {});
        await proc.stop();
        await display?.stop();
        await rm(profile, { recursive: true, force: true }).catch(() => {});
      },
    };
    return handle;
  } catch (err) {
    if (driver) await withTimeout(driver.quit(), 10_000, "quit").catch(() => {});
    await proc.stop();
    await display?.stop();
    throw new Error(`${err.message}\n--- ${engine} driver output ---\n${proc.output().slice(-3000)}`);
  }
}

/** Serves /pkg/ from the built package and / from `dir` (the e2e test page) on `port`. */
export async function startPages(port = PORTS.page, dir = PAGE_DIR) {
  const server = await serve({ mounts: { "/pkg/": PKG_DIR, "/": dir }, port, host: "127.0.0.1" });
  return {
    origin: `http://127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}/`,
    close: () => new Promise((ok) => { server.closeAllConnections?.(); server.close(() => ok()); }),
  };
}

export const pkgBuilt = () => existsSync(join(PKG_DIR, "index.js"));
