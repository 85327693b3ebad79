// Summarizes `twiggy top -f csv` of a named wasm: its top functions, then bytes per crate and
// per kind. Used by scripts/size-profile; names sections (not shipped) are left out.
import { readFileSync } from "node:fs";

const [file, topArg = "40"] = process.argv.slice(2);

function parseCsv(text) {
  const rows = [];
  for (const line of text.split("\n").slice(1)) {
    if (!line) continue;
    // The name may be quoted (with "" inside); the four numeric columns follow it.
    const m = /^("(?:[^"]|"")*"|[^,]*),(\d+),/.exec(line);
    if (!m) continue;
    const name = m[1].startsWith('"') ? m[1].slice(1, -1).replaceAll('""', '"') : m[1];
    rows.push({ name, bytes: Number(m[2]) });
  }
  return rows.filter((r) => !/names" subsection$/.test(r.name));
}

/** The crate a symbol belongs to: the first path segment, looking inside `<T as …>` and `<&mut …>`. */
function crateOf(name) {
  if (/ shim/.test(name)) return "(wasm-bindgen shims)";
  if (name.startsWith("data segment")) return "(data)";
  if (/^(import|export|elem|table|code\[)/.test(name)) return "(module)";
  const m = /^<?(?:&(?:mut )?)?([a-z_][a-z0-9_]*)(?:\[[0-9a-f]+\])?::/.exec(name)
    ?? /^<[^>]* as ([a-z_][a-z0-9_]*)(?:\[[0-9a-f]+\])?::/.exec(name)
    ?? /^<([a-z_][a-z0-9_]*)>/.exec(name);
  return m ? m[1] : "(other)";
}

/** A coarse kind: async state machines, JS glue, JSON, formatting, data, the rest. */
function kindOf(name) {
  if (name.includes("{{closure}}")) return "async bodies and closures";
  if (/ shim|^(wasm_bindgen|js_sys|web_sys)|<(wasm_bindgen|js_sys|web_sys)|^(import|export)/.test(name)) return "JS glue";
  if (/serde|zmij|ryu/.test(name)) return "JSON (serde)";
  if (/fmt|Display|Debug/.test(name)) return "formatting";
  if (name.startsWith("data segment")) return "data";
  if (/^<?logfold_core/.test(name)) return "logfold-core";
  if (/^<?logfold::/.test(name)) return "logfold (bindings)";
  return "std, alloc, collections";
}

const rows = parseCsv(readFileSync(file, "utf8"));
const total = rows.reduce((s, r) => s + r.bytes, 0);
const pct = (n) => `${((n * 100) / total).toFixed(1).padStart(5)}%`;
const line = (n, label) => `${String(n).padStart(8)} ${pct(n)}  ${label}`;

function table(title, key) {
  const sums = new Map();
  for (const r of rows) {
    const k = key(r.name);
    const s = sums.get(k) ?? { bytes: 0, count: 0 };
    s.bytes += r.bytes;
    s.count += 1;
    sums.set(k, s);
  }
  console.log(`\n${title}`);
  for (const [k, s] of [...sums].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, 25)) {
    console.log(line(s.bytes, `${k} (${s.count})`));
  }
}

console.log(`${total} bytes in ${rows.length} items (names excluded)\n\ntop ${topArg} items`);
for (const r of [...rows].sort((a, b) => b.bytes - a.bytes).slice(0, Number(topArg))) {
  console.log(line(r.bytes, r.name.length > 130 ? `${r.name.slice(0, 127)}...` : r.name));
}
table("by crate", crateOf);
table("by kind", kindOf);
