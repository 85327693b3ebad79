// A page that needs no WebDriver: WebKitGTK's WebDriver sessions keep no data, so the test of a
// browser restart runs a bare MiniBrowser on this page twice and reads what it reports.
const phase = new URLSearchParams(location.search).get("phase");
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
  const log = await Logfold.open({ name: "bare" });
  const all = [];
  for await (const e of log.events()) all.push(e);
  const big = all.find((e) => e.type === "Big");
  await log.close();
  return { phase, head: log.head, count: all.length, hash: big ? digest(big.data.text) : null, ua: navigator.userAgent };
}

run().then(
  (r) => fetch(`/report?${encodeURIComponent(JSON.stringify(r))}`),
  (e) => fetch(`/report?${encodeURIComponent(JSON.stringify({ phase, error: String(e?.stack ?? e) }))}`),
);
