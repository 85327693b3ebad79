// The ledger demo: accounts, deposits, withdrawals and transfers appended to a logfold log, and
// three projections of it (balances, movements per day, the bank's total); the log itself with
// pending and confirmed events and rejected batches; the tables as of any past position; and
// sync with the server this page came from. `?device=b` opens a second device: another log in
// this browser (its own client id) synced with the same server log.
import { Logfold, LogfoldError } from "/pkg/index.js";

const $ = (id) => document.getElementById(id);

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("sw.js").catch((e) => console.warn("no offline cache:", e));
}

const device = new URLSearchParams(location.search).get("device") === "b" ? "b" : "a";
$("device").textContent = `device ${device.toUpperCase()}`;
$("other-device").href = device === "a" ? "?device=b" : "./";
$("other-device").textContent = device === "a" ? "Open a second device" : "Open device A";

const projections = {
  accounts: {
    key: "stream",
    on: {
      Opened: { set: { owner: "data.owner", balance: 0, movements: 0, version: "version" } },
      Deposited: { add: { balance: "data.amount" }, count: "movements", set: { version: "version" } },
      Withdrawn: { subtract: { balance: "data.amount" }, count: "movements", set: { version: "version" } },
      // One event in the payer's stream moves two rows.
      Transferred: [
        { row: "data.from", subtract: { balance: "data.amount" }, count: "movements", set: { version: "version" } },
        { row: "data.to", add: { balance: "data.amount" }, count: "movements" },
      ],
    },
  },
  days: {
    key: "data.day",
    on: {
      Deposited: { add: { deposits: "data.amount" } },
      Withdrawn: { add: { withdrawals: "data.amount" } },
      Transferred: { add: { transfers: "data.amount" } },
    },
  },
  total: {
    version: 1,
    init: 0,
    apply: (total, e) => (e.type === "Deposited" ? total + e.data.amount : e.type === "Withdrawn" ? total - e.data.amount : total),
  },
};

const log = await Logfold.open({
  name: device === "a" ? "demo-ledger" : "demo-ledger-b",
  projections,
  // `npm start` serves this page from the sync server itself, so the server is this origin.
  sync: {
    url: location.origin,
    log: "demo-ledger",
    onRejected: () => renderRejections(),
    onRetracted: () => renderRejections(),
  },
  onProgress: ({ done, total }) => ($("sync-state").textContent = `folding the log: ${done} of ${total}`),
  onClose: () => ($("sync-state").textContent = "closed by another tab: reload"),
});

// ---- money and small helpers --------------------------------------------------------------

const money = (cents) => (cents < 0 ? "−" : "") + (Math.abs(cents) / 100).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const today = () => new Date().toISOString().slice(0, 10);

/** Cents from "12", "12.5" or "12.50"; null when it is not an amount. */
function cents(text) {
  const m = /^\s*(\d{1,9})(?:[.,](\d{1,2}))?\s*$/.exec(text);
  return m ? Number(m[1]) * 100 + Number((m[2] ?? "0").padEnd(2, "0")) : null;
}

function cell(text, className = "") {
  const td = document.createElement("td");
  td.textContent = String(text);
  if (className) td.className = className;
  return td;
}

function row(...cells) {
  const tr = document.createElement("tr");
  tr.append(...cells);
  return tr;
}

// ---- forms: appends with their errors next to the field -----------------------------------

/** Shows `message` under field `id` (or clears it), and marks the field invalid. */
function fieldError(id, message = "") {
  $(`${id}-error`).textContent = message;
  $(id).setAttribute("aria-invalid", message ? "true" : "false");
  if (message) $(id).focus();
}

function clearErrors(form) {
  for (const p of form.querySelectorAll(".error")) p.textContent = "";
  for (const f of form.querySelectorAll("[aria-invalid]")) f.setAttribute("aria-invalid", "false");
}

function announce(text) {
  $("done").textContent = text;
}

/** The stream version each form's account had when it was picked: its expectedVersion. */
const picked = { move: null, transfer: null };

async function pick(form) {
  const select = form === "move" ? $("move-account") : $("transfer-from");
  const account = select.value;
  picked[form] = account ? { account, version: await log.version(account) } : null;
  $(`${form}-version`).textContent = picked[form] ? `${account} is at version ${picked[form].version}; it is checked again when you submit.` : "";
}

/** After this tab's own append both forms pick again: what it just did is not a stale view. */
const pickBoth = () => Promise.all([pick("move"), pick("transfer")]);

/** Library errors in a form: shown next to the field they are about. */
function showError(e, fields) {
  if (!(e instanceof LogfoldError)) throw e;
  if (e.code === "CONFLICT") {
    const { stream, expected, actual } = e.details ?? {};
    const message = expected === "none"
      ? `An account named “${stream}” exists already.`
      : `${stream} changed since you picked it (version ${expected}, now ${actual}). Check its balance and submit again.`;
    return fieldError(fields.stream, message);
  }
  const field = e.details?.field === "stream" || e.details?.argument === "stream" ? fields.stream : fields.other ?? fields.stream;
  fieldError(field, `${e.code}: ${e.message}`);
}

$("open").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.currentTarget;
  clearErrors(form);
  const account = $("open-account").value.trim();
  const owner = $("open-owner").value.trim();
  if (!owner) return fieldError("open-owner", "Enter the owner's name.");
  try {
    // An empty or over-long name is refused by the log itself (INVALID_EVENT), as is a name
    // taken already (CONFLICT: the stream must not exist).
    await log.append({ stream: account, type: "Opened", data: { account, owner } }, { expectedVersion: "none" });
    form.reset();
    announce(`Opened ${account} for ${owner}.`);
    await refreshAll();
    $("open-account").focus();
  } catch (e) {
    showError(e, { stream: "open-account", other: "open-owner" });
  }
});

$("move").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.currentTarget;
  clearErrors(form);
  const kind = ev.submitter?.value ?? "Deposited";
  const p = picked.move;
  if (!p) return fieldError("move-account", "Open an account first.");
  const amount = cents($("move-amount").value);
  if (!amount) return fieldError("move-amount", "Enter an amount above zero, like 12.50.");
  const balance = log.table("accounts").get(p.account)?.balance ?? 0;
  if (kind === "Withdrawn" && amount > balance) return fieldError("move-amount", `${p.account} holds ${money(balance)}.`);
  try {
    await log.append({ stream: p.account, type: kind, data: { account: p.account, amount, day: today() } }, { expectedVersion: p.version });
    $("move-amount").value = "";
    announce(`${kind === "Deposited" ? "Deposited" : "Withdrew"} ${money(amount)} ${kind === "Deposited" ? "into" : "from"} ${p.account}.`);
    await pickBoth();
    $("move-amount").focus();
  } catch (e) {
    showError(e, { stream: "move-account", other: "move-amount" });
    if (e instanceof LogfoldError && e.code === "CONFLICT") await pick("move");
  }
});

$("transfer").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.currentTarget;
  clearErrors(form);
  const p = picked.transfer;
  const to = $("transfer-to").value;
  if (!p) return fieldError("transfer-from", "Open two accounts first.");
  if (!to || to === p.account) return fieldError("transfer-to", "Pick another account to pay into.");
  const amount = cents($("transfer-amount").value);
  if (!amount) return fieldError("transfer-amount", "Enter an amount above zero, like 12.50.");
  const balance = log.table("accounts").get(p.account)?.balance ?? 0;
  if (amount > balance) return fieldError("transfer-amount", `${p.account} holds ${money(balance)}.`);
  try {
    await log.append({ stream: p.account, type: "Transferred", data: { from: p.account, to, amount, day: today() } }, { expectedVersion: p.version });
    $("transfer-amount").value = "";
    announce(`Moved ${money(amount)} from ${p.account} to ${to}.`);
    await pickBoth();
    $("transfer-amount").focus();
  } catch (e) {
    showError(e, { stream: "transfer-from", other: "transfer-amount" });
    if (e instanceof LogfoldError && e.code === "CONFLICT") await pick("transfer");
  }
});

$("move-account").addEventListener("change", () => pick("move"));
$("transfer-from").addEventListener("change", () => pick("transfer"));

/** The account pickers, keeping what is picked. */
function renderPickers(keys) {
  for (const id of ["move-account", "transfer-from", "transfer-to"]) {
    const select = $(id);
    const was = select.value;
    select.replaceChildren(...keys.map((k) => new Option(k, k)));
    if (keys.includes(was)) select.value = was;
  }
  // Pay into another account than the payer's, when there is one.
  const to = $("transfer-to");
  if (to.value === $("transfer-from").value) to.value = keys.find((k) => k !== to.value) ?? to.value;
}

// ---- the tables ---------------------------------------------------------------------------

function renderTables() {
  const accounts = log.table("accounts").scan();
  $("accounts").replaceChildren(
    ...accounts.map(({ key, row: r }) =>
      row(cell(key), cell(r.owner ?? "—"), cell(money(r.balance ?? 0), "num"), cell(r.movements ?? 0, "num"), cell(r.version ?? "—", "num"))),
  );
  $("accounts-empty").hidden = accounts.length > 0;
  $("days").replaceChildren(
    ...log.table("days").scan({ reverse: true }).map(({ key, row: r }) =>
      row(cell(key), cell(money(r.deposits ?? 0), "num"), cell(money(r.withdrawals ?? 0), "num"), cell(money(r.transfers ?? 0), "num"))),
  );
  $("total").textContent = money(log.state("total"));
  const keys = accounts.map((a) => String(a.key));
  const before = [$("move-account").value, $("transfer-from").value];
  renderPickers(keys);
  if ($("move-account").value !== before[0] || !picked.move) pick("move");
  if ($("transfer-from").value !== before[1] || !picked.transfer) pick("transfer");
}

// ---- the log, rejections and sync ---------------------------------------------------------

async function renderLog() {
  const pending = log.sync.status.pending;
  const events = await log.read({ after: Math.max(0, log.head + pending - 100), limit: 100 });
  $("events").replaceChildren(
    ...events.reverse().map((e) => {
      const state = e.offset === null ? "pending" : "confirmed";
      const tag = document.createElement("span");
      tag.className = `tag ${state}`;
      tag.textContent = state;
      const stateCell = document.createElement("td");
      stateCell.append(tag);
      const d = e.data;
      const what = e.type === "Opened" ? `owner ${d.owner}` : e.type === "Transferred" ? `${money(d.amount)} to ${d.to}` : money(d.amount ?? 0);
      return row(cell(e.seq, "num"), cell(e.offset ?? "—", "num"), stateCell, cell(e.stream), cell(e.type), cell(what), cell(e.origin === log.clientId ? "this device" : "another device"));
    }),
  );
}

async function renderRejections() {
  const list = await log.rejections();
  $("rejections").replaceChildren(
    ...list.map((r) => {
      const box = document.createElement("div");
      box.className = "rejection";
      const title = document.createElement("p");
      title.innerHTML = "<strong>Rejected by the server</strong> ";
      title.append(`(${r.reason}): ${r.message}`);
      const events = document.createElement("p");
      events.className = "muted";
      events.textContent = `Its ${r.events.length === 1 ? "event" : `${r.events.length} events`} left the tables: ${r.events.map((e) => `${e.type} on ${e.stream}`).join(", ")}.`;
      const dismiss = document.createElement("button");
      dismiss.type = "button";
      dismiss.textContent = "Dismiss";
      dismiss.setAttribute("aria-label", `Dismiss the rejection of ${r.events[0]?.type ?? "batch"} on ${r.events[0]?.stream ?? r.batch}`);
      dismiss.addEventListener("click", async () => {
        await log.dismissRejection(r.id);
        await renderRejections();
        ($("rejections").querySelector("button") ?? $("log-title")).focus();
      });
      box.append(title, events, dismiss);
      return box;
    }),
  );
}

function renderSync() {
  const s = log.sync.status;
  const badge = $("sync-state");
  badge.textContent = s.state;
  badge.className = `badge ${s.state}`;
  const who = s.leader ? "this tab syncs" : "another tab syncs";
  const error = s.lastError && s.state !== "online" ? ` · ${s.lastError.code}: ${s.lastError.message}` : "";
  $("sync-detail").textContent = `${s.confirmed} confirmed · ${s.pending} pending · ${who}${error}`;
  const paused = s.state === "paused";
  $("sync-pause").textContent = paused ? "Resume sync" : "Pause sync";
  $("sync-pause").setAttribute("aria-pressed", String(paused));
}

$("sync-now").addEventListener("click", () => log.sync.now());
$("sync-pause").addEventListener("click", () => (log.sync.status.state === "paused" ? log.sync.resume() : log.sync.pause()));

// ---- time travel --------------------------------------------------------------------------

/** The bank total after each confirmed position (index 0: before any event). */
const series = [0];
let following = true; // the slider stays at the head until moved

let extending = Promise.resolve();
/** Extends the series up to `head`, one caller at a time (renders overlap). */
function extendSeries(head) {
  extending = extending.then(async () => {
    while (series.length - 1 < head) {
      const got = await log.read({ after: series.length - 1, limit: 1000 });
      const confirmed = got.filter((e) => e.offset !== null && e.seq <= head);
      if (confirmed.length === 0) break;
      for (const e of confirmed) series.push(projections.total.apply(series[series.length - 1], e));
    }
  });
  return extending;
}

function renderChart(at) {
  const svg = $("chart");
  const w = 600, h = 160, pad = 8;
  const n = series.length - 1;
  const lo = Math.min(0, ...series), hi = Math.max(1, ...series);
  const x = (i) => pad + (n === 0 ? 0 : (i / n) * (w - 2 * pad));
  const y = (v) => h - pad - ((v - lo) / (hi - lo)) * (h - 2 * pad);
  const ns = "http://www.w3.org/2000/svg";
  const make = (tag, attrs) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  };
  const points = series.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  const title = svg.querySelector("title");
  svg.replaceChildren(
    title,
    make("line", { x1: pad, x2: w - pad, y1: y(0), y2: y(0), class: "axis" }),
    make("polyline", { points, class: "line" }),
    make("line", { x1: x(at), x2: x(at), y1: pad, y2: h - pad, class: "marker" }),
    make("circle", { cx: x(at), cy: y(series[at] ?? 0), r: 4, class: "dot" }),
  );
}

let travelTurn = 0;
async function renderTravel() {
  const head = log.sync.status.confirmed;
  await extendSeries(head);
  const slider = $("travel");
  slider.max = String(head);
  if (following) slider.value = String(head);
  const at = Math.min(Number(slider.value), head);
  $("travel-head").textContent = String(head);
  $("travel-at").textContent = String(at);
  const turn = ++travelTurn;
  const past = await log.tablesAt(at);
  if (turn !== travelTurn) return; // a newer position was picked meanwhile
  $("travel-accounts").replaceChildren(...past.table("accounts").scan().map(({ key, row: r }) => row(cell(key), cell(money(r.balance ?? 0), "num"))));
  $("travel-total").textContent = money(past.state("total"));
  renderChart(at);
}

$("travel").addEventListener("input", () => {
  following = Number($("travel").value) === Number($("travel").max);
  renderTravel();
});

// ---- keeping it all current ---------------------------------------------------------------

let queued = null;
/** Renders everything once per burst of changes. */
function refreshAll() {
  queued ??= new Promise((resolve) => requestAnimationFrame(async () => {
    queued = null;
    renderTables();
    renderSync();
    await Promise.all([renderLog(), renderTravel()]);
    resolve();
  }));
  return queued;
}

log.subscribe("accounts", refreshAll);
log.subscribe("total", refreshAll);
log.sync.subscribe(refreshAll);
renderTables();
renderSync();
await Promise.all([renderLog(), renderTravel(), renderRejections()]);
document.body.dataset.ready = "true";
