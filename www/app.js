// The demo: append events to a local log, list the newest ones, and show the balances the log
// folds into (a declarative table) and the bank's total (a JS reducer). Other tabs' appends
// arrive through the subscriptions.
import { Logfold, LogfoldError } from "/pkg/index.js";

const $ = (id) => document.getElementById(id);
const form = $("append");

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("sw.js").catch((e) => console.warn("no offline cache:", e));
}

const projections = {
  accounts: {
    key: "stream",
    on: {
      Opened: { set: { opened: "time" } },
      Deposited: { add: { balance: "data.amount" }, count: "movements" },
      Withdrawn: { subtract: { balance: "data.amount" }, count: "movements" },
    },
  },
  total: {
    version: 1,
    init: 0,
    apply: (total, e) => (e.type === "Deposited" ? total + e.data.amount : e.type === "Withdrawn" ? total - e.data.amount : total),
  },
};

// `npm start` serves this page from the sync server itself, so the server is this origin.
const log = await Logfold.open({
  name: "demo-ledger",
  projections,
  sync: {
    url: location.origin,
    log: "demo-ledger",
    onRejected: (r) => ($("error").textContent = `rejected by the server (${r.reason}): ${r.message}; its events left the balances`),
  },
  onProgress: ({ done, total }) => ($("status").textContent = `folding the log: ${done} of ${total}`),
  onClose: () => ($("status").textContent = "closed by another tab"),
});

const cents = (n) => (n / 100).toFixed(2);

function renderAccounts() {
  $("accounts").replaceChildren(
    ...log.table("accounts").scan().map(({ key, row }) => {
      const tr = document.createElement("tr");
      for (const cell of [key, cents(row.balance ?? 0), row.movements ?? 0]) {
        const td = document.createElement("td");
        td.textContent = String(cell);
        tr.append(td);
      }
      return tr;
    }),
  );
  $("total").textContent = cents(log.state("total"));
}

async function render() {
  const after = Math.max(0, log.head + log.sync.status.pending - 50);
  const events = await log.read({ after, limit: 50 });
  $("events").replaceChildren(
    ...events.reverse().map((e) => {
      const row = document.createElement("tr");
      const seq = e.offset === null ? `${e.seq} (pending)` : e.seq;
      for (const cell of [seq, e.stream, e.version, e.type, JSON.stringify(e.data), new Date(e.time).toLocaleTimeString()]) {
        const td = document.createElement("td");
        td.textContent = String(cell);
        row.append(td);
      }
      return row;
    }),
  );
  const s = log.sync.status;
  const sync = s.lastError && s.state !== "online" ? `${s.state}: ${s.lastError.message}` : s.state;
  $("status").textContent = `${log.head} events confirmed, ${s.pending} pending · sync ${sync}${s.leader ? " (this tab syncs)" : ""}`;
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
  renderAccounts();
await render();
});

log.subscribe("accounts", () => {
  renderAccounts();
  render();
});
log.subscribe("total", renderAccounts);
log.sync.subscribe(() => render());
renderAccounts();
await render();
