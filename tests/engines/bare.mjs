// WebKitGTK without WebDriver: its automation sessions use an ephemeral data store (a new session
// starts empty), so a browser restart is tested on a bare MiniBrowser (under Xvfb) that loads
// tests/engines/page/persist.html and reports back over HTTP.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { mkdir, rm } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { MINIBROWSER, PKG_DIR, PORTS, PROFILES, ROOT, WAIT, start, startDisplay, withTimeout } from "./drivers.mjs";

const PAGE = join(ROOT, "tests/engines/page");
const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".wasm": "application/wasm" };

/** Serves the persistence page and /pkg/ on `port`; `next()` resolves to the next report. */
async function reportServer(port) {
  const waiting = [];
  const reports = [];
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, "http://x");
    if (url.pathname === "/report") {
      const r = JSON.parse(decodeURIComponent(url.search.slice(1)));
      (waiting.shift() ?? ((v) => reports.push(v)))(r);
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
    next: () => (reports.length ? Promise.resolve(reports.shift()) : new Promise((ok) => waiting.push(ok))),
    close: () => new Promise((ok) => { server.closeAllConnections?.(); server.close(() => ok()); }),
  };
}

/**
 * Writes a log in a bare MiniBrowser, quits it (SIGTERM), starts it again on the same profile and
 * reads the log back. Resolves to { wrote, read } as the page reported them.
 */
export async function webkitRestart({ port = PORTS.bare } = {}) {
  const profile = join(PROFILES, "webkit-bare");
  await rm(profile, { recursive: true, force: true });
  await mkdir(profile, { recursive: true });
  const display = await startDisplay();
  const server = await reportServer(port);
  const env = { DISPLAY: display.display, WEBKIT_DISABLE_COMPOSITING_MODE: "1", LIBGL_ALWAYS_SOFTWARE: "1", XDG_RUNTIME_DIR: profile, HOME: profile };
  const visit = async (phase) => {
    const browser = start(MINIBROWSER, [`${server.url}?phase=${phase}`], env);
    try {
      return await withTimeout(server.next(), WAIT, `MiniBrowser ${phase}: ${browser.output().slice(-2000)}`);
    } finally {
      await browser.stop();
    }
  };
  try {
    const wrote = await visit("write");
    const read = await visit("read");
    return { wrote, read };
  } finally {
    await server.close();
    await display.stop();
    await rm(profile, { recursive: true, force: true }).catch(() => {});
  }
}
