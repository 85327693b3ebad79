// A page that needs no WebDriver, for what WebDriver cannot do in every engine: WebKitGTK's
// WebDriver sessions keep no data, and a crash test kills the browser under the driver. The test
// (tests/engines/bare.mjs) starts the bare browser on ?phase=…, which reports to /report.
//   write: a log of 100 small events and a 900 KiB one   read: reads it back
//   crash: appends batches until the browser is killed, reporting each acknowledged position
//   check: what the crashed log holds
const params = new URLSearchParams(location.search);
const phase = params.get("phase");
const durability = params.get("durability") ?? "strict";
const SIZE = 900 * 1024;

function digest(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return [s.length, h >>> 0];
}

function text(n) {
  let x = 12345;
  const a = new Array(n);
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    a[i] = String.fromCharCode(97 + (x >>> 16) % 26);
  }
  return a.join("");
}

const report = (r) => fetch(`/report?${encodeURIComponent(JSON.stringify(r))}`, { keepalive: true });

async function run() {
  const { Logfold } = await import("/pkg/index.js");
  if (phase === "write") {
    await Logfold.destroy("bare");
    const log = await Logfold.open({ name: "bare" });
    await log.append(Array.from({ length: 100 }, (_, i) => ({ stream: `s${i % 3}`, type: "Small", data: { i } })));
    const e = await log.append({ stream: "big", type: "Big", data: { text: text(SIZE) } });
    await log.close();
    return { phase, head: log.head, seq: e.seq, hash: digest(text(SIZE)) };
  }
  if (phase === "read") {
    const log = await Logfold.open({ name: "bare" });
    const all = [];
    for await (const e of log.events()) all.push(e);
    const big = all.find((e) => e.type === "Big");
    await log.close();
    return { phase, head: log.head, count: all.length, hash: big ? digest(big.data.text) : null, ua: navigator.userAgent };
  }
  if (phase === "crash") {
    await Logfold.destroy("crash");
    const log = await Logfold.open({ name: "crash", durability });
    await report({ phase, started: true });
    for (let n = 0; ; n++) {
      const batch = Array.from({ length: 10 }, (_, i) => ({ stream: `s${(n + i) % 7}`, type: "T", data: { n, i, pad: "x".repeat(200) } }));
      const stored = await log.append(batch);
      report({ phase, acked: stored[stored.length - 1].seq }); // not awaited: the next append goes on
    }
  }
  if (phase === "check") {
    const log = await Logfold.open({ name: "crash" });
    const seqs = [];
    const perStream = {};
    let intact = true;
    for await (const e of log.events()) {
      seqs.push(e.seq);
      perStream[e.stream] = (perStream[e.stream] ?? 0) + 1;
      if (e.type !== "T" || e.data.pad.length !== 200) intact = false;
    }
    let versions = true;
    for (const [stream, n] of Object.entries(perStream)) if ((await log.version(stream)) !== n) versions = false;
    const out = { phase, head: log.head, count: seqs.length, dense: seqs.every((s, i) => s === i + 1), intact, versions };
    await log.close();
    return out;
  }
  throw new Error(`unknown phase ${phase}`);
}

run().then(report, (e) => report({ phase, error: String(e?.stack ?? e), code: e?.code ?? null }));
