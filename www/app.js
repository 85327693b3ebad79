// The demo: append events to a local log and list the newest ones.
import { Logfold, LogfoldError } from "/pkg/index.js";

const $ = (id) => document.getElementById(id);
const form = $("append");

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("sw.js").catch((e) => console.warn("no offline cache:", e));
}

const log = await Logfold.open({ name: "demo-ledger", onClose: () => ($("status").textContent = "closed by another tab") });

async function render() {
  const after = Math.max(0, log.head - 50);
  const events = await log.read({ after, limit: 50 });
  $("events").replaceChildren(
    ...events.reverse().map((e) => {
      const row = document.createElement("tr");
      for (const cell of [e.seq, e.stream, e.version, e.type, JSON.stringify(e.data), new Date(e.time).toLocaleTimeString()]) {
        const td = document.createElement("td");
        td.textContent = String(cell);
        row.append(td);
      }
      return row;
    }),
  );
  const s = log.stats();
  $("status").textContent = `${log.head} events · ${navigator.onLine ? "online" : "offline"} · this tab: ${s.eventsAppended} appended in ${s.transactions} transactions`;
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(form);
  const expected = String(f.get("expected")).trim();
  $("error").textContent = "";
  try {
    await log.append(
      { stream: String(f.get("account")), type: String(f.get("type")), data: { amount: Number(f.get("amount")) } },
      expected === "" ? {} : { expectedVersion: expected === "none" ? "none" : Number(expected) },
    );
  } catch (e) {
    if (!(e instanceof LogfoldError)) throw e;
    $("error").textContent = `${e.code}: ${e.message}`;
  }
  await render();
});

addEventListener("online", render);
addEventListener("offline", render);
await render();
