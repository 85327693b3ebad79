// Builds the demo site: www/ and the built package in one folder, the app's icons drawn as
// PNGs, and the service worker stamped with the build's version (a hash of every file) and the
// list of files it precaches at install, so the first visit already works offline and a new
// build replaces the cache.
//
//   node scripts/demo-site.mjs <out>        (www/ and pkg/ of this checkout)
import { cp, mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { crc32, deflateSync } from "node:zlib";

const ROOT = resolve(fileURLToPath(import.meta.url), "../..");
// What the app needs offline from the package: its JS and the wasm (not types or docs).
const PKG_FILES = (name) => name.endsWith(".js") || name.endsWith(".wasm");

export async function buildDemo(out, { www = join(ROOT, "www"), pkg = join(ROOT, "pkg") } = {}) {
  await rm(out, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  await cp(www, out, { recursive: true });
  // wasm-bindgen's inline JS lives in pkg/snippets/.
  const wanted = async (src) => (await stat(src)).isDirectory() || PKG_FILES(src);
  await cp(pkg, join(out, "pkg"), { recursive: true, filter: wanted });
  await mkdir(join(out, "icons"), { recursive: true });
  for (const size of [192, 512]) await writeFile(join(out, "icons", `icon-${size}.png`), icon(size));

  const files = (await list(out)).filter((f) => f !== "sw.js").sort();
  const hash = createHash("sha256");
  for (const f of files) hash.update(f).update(await readFile(join(out, f)));
  const version = hash.digest("hex").slice(0, 12);
  const precache = files;
  const sw = (await readFile(join(out, "sw.js"), "utf8"))
    .replace(/const VERSION = "[^"]*";/, `const VERSION = ${JSON.stringify(version)};`)
    .replace(/const PRECACHE = \[[^\]]*\];/, `const PRECACHE = ${JSON.stringify(precache)};`);
  await writeFile(join(out, "sw.js"), sw);
  return { version, precache };
}

async function list(dir, base = dir) {
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await list(path, base)));
    else out.push(relative(base, path).split("\\").join("/"));
  }
  return out;
}

/**
 * The app icon, `size` pixels square: rows of a log (dark bars of growing length) folding into
 * a table cell (the amber block), on the theme's navy, drawn inside the maskable safe zone.
 */
function icon(size) {
  const px = Buffer.alloc(size * size * 4);
  const paint = (x0, y0, x1, y1, [r, g, b]) => {
    for (let y = Math.round(y0 * size); y < Math.round(y1 * size); y++) {
      for (let x = Math.round(x0 * size); x < Math.round(x1 * size); x++) {
        const i = (y * size + x) * 4;
        px[i] = r; px[i + 1] = g; px[i + 2] = b; px[i + 3] = 255;
      }
    }
  };
  paint(0, 0, 1, 1, [0x1d, 0x2a, 0x44]);
  [0.34, 0.46, 0.58].forEach((w, i) => paint(0.2, 0.24 + i * 0.13, 0.2 + w, 0.32 + i * 0.13, [0x8f, 0xb8, 0xde]));
  paint(0.2, 0.64, 0.8, 0.76, [0xf2, 0xb1, 0x34]);
  // PNG: 8-bit RGBA, every row unfiltered.
  const raw = Buffer.alloc(size * (size * 4 + 1));
  for (let y = 0; y < size; y++) px.copy(raw, y * (size * 4 + 1) + 1, y * size * 4, (y + 1) * size * 4);
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body) >>> 0);
    return Buffer.concat([len, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header.set([8, 6, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = process.argv[2];
  if (!out) throw new Error("usage: node scripts/demo-site.mjs <out>");
  const { version, precache } = await buildDemo(resolve(out));
  console.log(`demo site: build ${version}, ${precache.length} files precached`);
}
