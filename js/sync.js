// Sync with a logfold server: one leader tab per log pushes the outbox and pulls the tail;
// every tab shows the same status. The decisions about the log (what a push answer or a pull
// does to the outbox and the tables) are made in wasm, inside IndexedDB transactions that check
// the leader's epoch; this file carries the messages, keeps time, and claims the epoch.
import { request, counter, inStore } from "./store.js";

const HEARTBEAT_MS = 1000;
// A leader whose heartbeat is older than this is taken to be frozen or gone.
const STALE_MS = 4000;
const WATCH_MS = 1500;
const PULL_LIMIT = 10000;
// Bodies of at most this by default: a quarter of the server's default --max-body.
const PUSH_BYTES = 4 << 20;
const MIN_PUSH_BYTES = 64 << 10;
// What other tabs take from the leader's status (see message()); pending and confirmed each
// tab reads from its own core, so an append posts no status.
const SHARED_STATUS = new Set(["state", "serverHead", "lastError", "lastSuccess", "epoch"]);
const BACKOFF_MIN_MS = 500;
const PUSH_WAIT_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const SEGMENT_TYPE = "application/vnd.logfold.segment";
const LOG_ID_HEADER = "logfold-log-id";
const SNAPSHOTS_TYPE = "application/vnd.logfold.snapshots";
// A new device shares the server's snapshot set once the log grew this much past it.
const SHARE_EVERY = 50000;
const BOOT_TIMEOUT_MS = 5000;
// A request with no progress for this long is abandoned (sync.timeout).
const TIMEOUT_MS = 30000;
// The longest a timer waits: past it, browsers fire at once.
const MAX_TIMER_MS = 2 ** 31 - 1;
// A push may take longer by its body at this rate (bytes per ms: 32 kB/s, a poor uplink), so
// that a big push on a slow link is not abandoned and sent again forever.
const SLOW_UPLOAD = 32;
const KEEPALIVE_HEADER = "logfold-keepalive";
// A live tail that hears nothing (not even the server's keep-alive comments) for this many of
// their intervals is taken for dead; servers that do not announce theirs send one every 15 s.
const KEEPALIVES_MISSED = 3;
const DEFAULT_KEEPALIVE_S = 15;

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
  });

/**
 * Abandons a request that makes no progress for `ms`: a network that drops packets (a dead
 * Wi-Fi, a suspended laptop, a captive portal) can leave a connection open with nothing ever
 * coming back. `signal` is the request's: aborted by the caller or by the watchdog; `alive()`
 * says progress was made (the answer's head, a chunk of its body) and grants `ms` more.
 */
class Watchdog {
  #abort = new AbortController();
  #timer;
  #ms;
  expired = false;
  constructor(signal, ms) {
    this.signal = signal ? AbortSignal.any([signal, this.#abort.signal]) : this.#abort.signal;
    this.#ms = ms;
    this.alive();
  }
  alive(ms = this.#ms) {
    this.#ms = ms;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.expired = true;
      this.#abort.abort(new DOMException(`no answer for ${ms} ms`, "TimeoutError"));
    }, Math.min(ms, MAX_TIMER_MS));
  }
  stop() {
    clearTimeout(this.#timer);
  }
  /** Ends the request, whatever state it is in (a streamed body still open, say). */
  cancel() {
    this.stop();
    this.#abort.abort(new DOMException("done with", "AbortError"));
  }
}

/** The whole body of `response`, read chunk by chunk so that `dog` sees it arrive. */
async function readBody(response, dog) {
  if (!response.body) return new Uint8Array(0);
  const reader = response.body.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    dog.alive();
    chunks.push(value);
    size += value.length;
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * fetch() under a watchdog of `ms` (plus `extra`, until the answer's head): `{ response, body }`
 * with the body's bytes read whole, or, given the `stream` watchdog (whose signal is `signal`),
 * a successful answer's body left for the caller to read under it. Rejects with the watchdog's
 * TimeoutError when it fired.
 */
async function guardedFetch(url, init, signal, ms, extra = 0, stream = null) {
  const dog = stream ?? new Watchdog(signal, Math.ceil(ms + extra));
  // The live tail's watchdog starts now, not before its caller's getToken().
  stream?.alive(ms);
  try {
    const response = await fetch(url, { ...init, signal: dog.signal, cache: "no-store" });
    dog.alive(ms);
    const body = stream && response.ok ? undefined : await readBody(response, dog);
    return { response, body };
  } catch (e) {
    throw dog.expired ? dog.signal.reason : e;
  } finally {
    if (!stream) dog.stop();
  }
}

/**
 * What `getToken()` gives within `ms`: an auth backend that never answers must hold sync no
 * longer than a sync server that never answers. Rejects with getToken's own error, or with a
 * TimeoutError when it is late or `signal` aborts it.
 */
async function askToken(getToken, signal, ms) {
  const dog = new Watchdog(signal, ms);
  const late = new Promise((_, fail) => {
    // A signal aborted already fires no "abort" event.
    if (dog.signal.aborted) fail(dog.signal.reason);
    else dog.signal.addEventListener("abort", () => fail(dog.signal.reason), { once: true });
  });
  try {
    return await Promise.race([getToken(), late]);
  } finally {
    dog.stop();
    late.catch(() => {});
  }
}

const text = (bytes) => new TextDecoder().decode(bytes);

/** The sync options of `Logfold.open`, checked; throws `invalidArgument(argument, message)`. */
export function syncOptions(sync, invalidArgument) {
  if (sync === undefined) return undefined;
  if (sync === null || typeof sync !== "object") throw invalidArgument("sync", "must be an object { url, log, token | getToken }");
  const { url, log, token, getToken, onRejected, onRetracted, live = true, maxPushBytes = PUSH_BYTES, snapshots = false, timeout = TIMEOUT_MS } = sync;
  let base;
  try {
    base = new URL(url, globalThis.location?.href);
  } catch {
    throw invalidArgument("sync.url", "must be the sync server's URL");
  }
  if (typeof log !== "string" || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(log)) {
    throw invalidArgument("sync.log", "must be a log name: 1 to 128 of A-Z a-z 0-9 _ . -, starting with a letter or digit");
  }
  if (token !== undefined && typeof token !== "string") throw invalidArgument("sync.token", "must be a string");
  if (getToken !== undefined && typeof getToken !== "function") throw invalidArgument("sync.getToken", "must be a function returning a token");
  if (onRejected !== undefined && typeof onRejected !== "function") throw invalidArgument("sync.onRejected", "must be a function");
  if (onRetracted !== undefined && typeof onRetracted !== "function") throw invalidArgument("sync.onRetracted", "must be a function");
  if (!Number.isSafeInteger(maxPushBytes) || maxPushBytes < MIN_PUSH_BYTES) {
    throw invalidArgument("sync.maxPushBytes", `must be an integer of at least ${MIN_PUSH_BYTES} (bytes), at most the server's --max-body`);
  }
  if (!(Number.isFinite(timeout) && timeout >= 100 && timeout <= MAX_TIMER_MS)) {
    throw invalidArgument("sync.timeout", `must be a number of milliseconds, from 100 to ${MAX_TIMER_MS}`);
  }
  const root = base.href.replace(/\/+$/, "");
  return {
    api: `${root}/v1/logs/${encodeURIComponent(log)}`,
    log,
    token,
    getToken,
    onRejected,
    onRetracted,
    live: Boolean(live),
    maxPushBytes,
    timeout,
    snapshots: snapshotOptions(snapshots, invalidArgument),
  };
}

// sync.snapshots: false (the default), true, or { boot, share, every, timeout } (see the d.ts).
const SNAPSHOT_KEYS = new Set(["boot", "share", "every", "timeout"]);
function snapshotOptions(snapshots, invalidArgument) {
  if (snapshots === false) return { boot: false, share: false, every: SHARE_EVERY, timeout: BOOT_TIMEOUT_MS };
  if (snapshots === true) snapshots = {};
  if (snapshots === null || typeof snapshots !== "object") throw invalidArgument("sync.snapshots", "must be true, false or an object { boot, share, every, timeout }");
  const unknown = Object.keys(snapshots).find((k) => !SNAPSHOT_KEYS.has(k));
  if (unknown !== undefined) throw invalidArgument(`sync.snapshots.${unknown}`, "unknown option (expected boot, share, every, timeout)");
  const { boot = true, share = true, every = SHARE_EVERY, timeout = BOOT_TIMEOUT_MS } = snapshots;
  if (!Number.isSafeInteger(every) || every < 1) throw invalidArgument("sync.snapshots.every", "must be a positive integer (events)");
  if (!(Number.isFinite(timeout) && timeout >= 0)) throw invalidArgument("sync.snapshots.timeout", "must be a non-negative number of milliseconds");
  return { boot: Boolean(boot), share: Boolean(share), every, timeout };
}

/**
 * The server's snapshot set `id` for a new log: `{ bytes, logId }`, or null when the server has
 * none or does not start answering within `options.snapshots.timeout` (the log then pulls it
 * all). The timeout covers the token and the response's head, not the download of the set.
 */
export async function fetchSnapshotSet(options, id) {
  const abort = new AbortController();
  let timer;
  const late = new Promise((_, fail) => {
    timer = setTimeout(() => {
      abort.abort();
      fail(new Error(`no answer within ${options.snapshots.timeout} ms`));
    }, options.snapshots.timeout);
  });
  try {
    const token = options.token ?? (await Promise.race([options.getToken?.(), late]));
    const headers = { accept: SNAPSHOTS_TYPE };
    if (token) headers.authorization = `Bearer ${token}`;
    const response = await Promise.race([fetch(`${options.api}/snapshots/${id}`, { headers, signal: abort.signal, cache: "no-store" }), late]);
    clearTimeout(timer);
    const logId = response.headers.get(LOG_ID_HEADER);
    // 204: the server has no set for these projections yet.
    if (response.status !== 200 || !logId) return null;
    // The download may take longer than the answer's head, but not stall.
    const dog = new Watchdog(null, options.timeout);
    dog.signal.addEventListener("abort", () => abort.abort(dog.signal.reason), { once: true });
    try {
      return { bytes: await readBody(response, dog), logId };
    } finally {
      dog.stop();
    }
  } catch (e) {
    console.info(`logfold: no snapshot set from the server (${e?.message ?? e}): pulling the whole log`);
    return null;
  } finally {
    clearTimeout(timer);
    late.catch(() => {});
  }
}

/**
 * Pulls the events (needed - 1, start - 1] of a log that dropped them back from the server, in
 * chunks written from the top down with `backfill(logId, pages)` (each chunk ends right below
 * what the log keeps, so what it keeps stays whole). Resolves to whether it got them all;
 * false when the server cannot be reached or answers otherwise.
 */
export async function pullBack(options, { start, needed }, backfill) {
  let upto = start - 1;
  try {
    const token = options.token ?? (options.getToken && (await askToken(options.getToken, null, options.timeout)));
    const headers = token ? { authorization: `Bearer ${token}` } : {};
    while (upto >= needed) {
      const from = Math.max(needed - 1, upto - 100_000);
      const pages = [];
      let logId;
      for (let after = from; after < upto; ) {
        const url = `${options.api}/events?after=${after}&limit=${Math.min(PULL_LIMIT, upto - after)}`;
        const { response, body } = await guardedFetch(url, { headers }, null, options.timeout);
        logId = response.headers.get(LOG_ID_HEADER);
        if (!response.ok || !logId) return false;
        const page = text(body);
        const last = JSON.parse(page).events.at(-1)?.offset;
        if (!(last > after)) return false;
        pages.push(page);
        after = last;
      }
      upto = await backfill(logId, pages);
    }
    return true;
  } catch (e) {
    if (e?.code === "DIVERGED") throw e;
    console.info(`logfold: the dropped history could not be pulled back (${e?.message ?? e})`);
    return false;
  }
}

// pause() holds for the whole origin (every tab, and reloads): kept in localStorage, where there
// is one (a worker has none, and pauses only itself and the tabs it can tell).
const pausedKey = (name) => `logfold:sync-paused:${name}`;
function readPaused(name) {
  try {
    return globalThis.localStorage?.getItem(pausedKey(name)) === "1";
  } catch {
    return false;
  }
}
function writePaused(name, paused) {
  try {
    if (paused) globalThis.localStorage?.setItem(pausedKey(name), "1");
    else globalThis.localStorage?.removeItem(pausedKey(name));
  } catch {}
}

// The offset of the last snapshot set this origin shared, kept across reloads and tabs:
// without it, each page load's leader uploaded a set again. Keyed by the set (its id names the
// projections, schemas and code: another release shares its own at once) and by the server
// log's URL and identity (a replaced server log starts from none).
const sharedKey = (api, serverLog, id) => `logfold:shared-at:${api} ${serverLog} ${id}`;
function readSharedAt(key) {
  try {
    return Number(globalThis.localStorage?.getItem(key)) || 0;
  } catch {
    return 0;
  }
}
function writeSharedAt(key, offset) {
  try {
    globalThis.localStorage?.setItem(key, String(offset));
  } catch {}
}

// --- the steps JS runs itself ---
// Leadership, the server log marks and the rejections list touch only `meta` or `rejections`,
// one small transaction each, so they are plain IndexedDB here rather than async code in the
// wasm (see store.js). Every failure reads as the log's own error: `CLOSED` once it has closed.

// This tab leads sync from now: a new epoch, one above the stored one, and a heartbeat.
function claimLeadership(core) {
  return inStore(core, "meta", "readwrite", "strict", async (meta) => {
    const epoch = counter(await request(meta.get("epoch"))) + 1;
    meta.put(epoch, "epoch");
    meta.put(Date.now(), "heartbeat");
    return epoch;
  });
}

// The leader's heartbeat: false, with nothing written, once another tab holds a newer epoch.
function heartbeat(core, epoch) {
  return inStore(core, "meta", "readwrite", "relaxed", async (meta, abort) => {
    if (counter(await request(meta.get("epoch"))) !== epoch) {
      abort();
      return false;
    }
    meta.put(Date.now(), "heartbeat");
    return true;
  });
}

// The stored leader epoch and its last heartbeat (ms since the Unix epoch).
function leader(core) {
  return inStore(core, "meta", "readonly", "default", async (meta) => {
    const [epoch, beat] = await Promise.all([request(meta.get("epoch")), request(meta.get("heartbeat"))]);
    return [counter(epoch), counter(beat)];
  });
}

/**
 * Records what this log syncs with, unless something is recorded already, and resolves to what
 * is recorded now: `syncLog` is the server log's name (reopening with another is refused),
 * `serverLog` its identity there (meeting another is divergence). One transaction, so the first
 * tab wins.
 */
export function claimMark(core, key, value) {
  return inStore(core, "meta", "readwrite", "strict", async (meta, abort) => {
    const stored = await request(meta.get(key));
    if (typeof stored === "string") {
      abort();
      return stored;
    }
    meta.put(value, key);
    return value;
  });
}

/** The rejections not yet dismissed (each stored as JSON text). */
export function storedRejections(core) {
  return inStore(core, "rejections", "readonly", "default", async (store) =>
    (await request(store.getAll())).map((v) => (typeof v === "string" ? JSON.parse(v) : null)),
  );
}

/** `log.sync`: status, control, and (in the leader tab) the sync loop. */
export class Sync {
  #core;
  #options;
  #errors;
  #post;
  #refresh;
  #subscribers = new Set();
  #status;
  #paused = false; // pause(), in any tab of the origin: stored, so every tab and a new leader keep it
  #stopped = false; // this leader's loop ended on FORBIDDEN or DIVERGED; resume() or now() in any tab restarts it
  #serverLog; // the server log's identity, as recorded in meta
  #sharedAt; // the offset of the last snapshot set this tab shared or knows the server has
  #sharing = false;
  #verified = false; // the server was checked to still hold our log since the last failure
  #closed = false;
  #leading = false;
  #epoch = 0;
  #token;
  #wake = new AbortController();
  // Appends wake an idle loop but not one backing off: an append says nothing of the network,
  // and offline, a retry per append would be a failed request per user action.
  #appended = new AbortController();
  #pushing = null; // the push in flight: its answer, once stored
  #lead = null; // aborts the leader's work when it steps down
  #queued = null; // aborts the queued lock request when stealing
  #release = null; // gives the lock back
  #beat = null; // the heartbeat timer
  #timers = [];
  #failures = 0;
  #nowWaiters = [];
  #onOnline = () => this.now().catch(() => {});
  #onOffline = () => this.#set({ state: "offline" });

  /**
   * `core`: the wasm log; `options`: from syncOptions (undefined: a synced log opened without
   * sync, which keeps appending to the outbox); `errors(code, message, details)` makes a
   * LogfoldError; `post(message)` tells the other tabs; `refresh()` folds what changed.
   */
  constructor(core, options, { errors, post, refresh }) {
    this.#core = core;
    this.#options = options;
    this.#errors = errors;
    this.#post = post;
    this.#refresh = refresh;
    this.#token = options?.token;
    this.#sharedAt = core.stats().snapshotSetAt;
    this.#paused = Boolean(options) && readPaused(core.name);
    this.#status = {
      state: options && !this.#paused ? (globalThis.navigator?.onLine === false ? "offline" : "syncing") : "paused",
      leader: false,
      pending: core.pending,
      confirmed: core.head,
      serverHead: null,
      lastError: null,
      lastSuccess: null,
      epoch: 0,
    };
    if (!options) return;
    globalThis.addEventListener?.("online", this.#onOnline);
    globalThis.addEventListener?.("offline", this.#onOffline);
    this.#requestLock(false);
    this.#timers.push(setInterval(() => this.#watch(), WATCH_MS));
  }

  /** `{ state, leader, pending, confirmed, serverHead, lastError, lastSuccess, epoch }`. */
  get status() {
    return { ...this.#status };
  }

  /** Calls `callback(status)` on every change; returns the function that unsubscribes. */
  subscribe(callback) {
    if (typeof callback !== "function") throw this.#errors("INVALID_ARGUMENT", "invalid callback: must be a function", { argument: "callback" });
    this.#subscribers.add(callback);
    return () => this.#subscribers.delete(callback);
  }

  /** Push and pull now (the leader tab does it; others ask it). Resolves after that round. */
  now() {
    if (!this.#options) return Promise.reject(this.#errors("INVALID_ARGUMENT", "this log was opened without sync options", { argument: "sync" }));
    if (this.#paused) return Promise.resolve(this.status);
    this.#failures = 0;
    if (!this.#leading) {
      this.#post({ type: "sync-now" });
      return new Promise((resolve) => {
        const done = () => (clearTimeout(t), unsubscribe(), resolve(this.status));
        const t = setTimeout(done, 5000);
        const unsubscribe = this.subscribe((s) => s.state !== "syncing" && done());
      });
    }
    return new Promise((resolve) => {
      this.#nowWaiters.push(resolve);
      if (this.#stopped) this.#restart();
      else this.#kick();
    });
  }

  /**
   * Stops pushing and pulling in every tab of this origin, until resume() in any of them;
   * kept across reloads. Appends go on into the outbox.
   */
  pause() {
    writePaused(this.#core.name, true);
    this.#post({ type: "sync-pause" });
    this.#pauseHere();
  }

  /** Starts again after pause(), FORBIDDEN or DIVERGED, whichever tab paused or leads. */
  resume() {
    if (!this.#options) return;
    writePaused(this.#core.name, false);
    this.#post({ type: "sync-resume" });
    this.#resumeHere();
  }

  #pauseHere() {
    this.#paused = true;
    this.#lead?.abort();
    this.#set({ state: "paused" });
  }

  #resumeHere() {
    if (!this.#options || (!this.#paused && !this.#stopped)) return;
    this.#paused = false;
    this.#restart();
  }

  #restart() {
    this.#stopped = false;
    this.#failures = 0;
    this.#set({ state: "syncing", lastError: null });
    if (this.#leading) this.#startLoop();
    this.#kick();
  }

  /**
   * Resolves once this tab sees no pending events, the confirmed log at the server's head, and
   * a status other than "syncing"; rejects with DIVERGED at once if the server no longer holds
   * this log.
   */
  settled({ timeout = 30000 } = {}) {
    // Not mid-round: a push can confirm the whole outbox before the round's pull has looked for
    // newer events, and the status would then still say "syncing".
    const ok = (s) => s.pending === 0 && s.serverHead !== null && s.confirmed >= s.serverHead && s.state !== "syncing";
    const diverged = (s) => s.lastError?.code === "DIVERGED";
    const divergedError = (s) => this.#errors("DIVERGED", s.lastError.message, { status: { ...s } });
    if (diverged(this.#status)) return Promise.reject(divergedError(this.#status));
    if (ok(this.#status)) return Promise.resolve(this.status);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        unsubscribe();
        reject(this.#errors("TIMEOUT", `sync did not settle within ${timeout} ms`, { status: this.status }));
      }, timeout);
      const unsubscribe = this.subscribe((s) => {
        if (ok(s) || diverged(s)) {
          clearTimeout(t);
          unsubscribe();
          if (diverged(s)) reject(divergedError(s));
          else resolve(this.status);
        }
      });
    });
  }

  /** What this tab's log did (an append, a fold): pending and confirmed counts may move. */
  changed() {
    this.#set({ pending: this.#core.pending, confirmed: this.#core.head });
    if (this.#leading && this.#core.pending > 0) {
      this.#appended.abort();
      this.#appended = new AbortController();
    }
  }

  /** A message from another tab on the log's channel. */
  message(m) {
    switch (m.type) {
      case "sync-status":
        if (!this.#leading) {
          const { state, serverHead, lastError, lastSuccess, epoch } = m.status;
          this.#set({ state: this.#paused ? "paused" : state, serverHead, lastError, lastSuccess, epoch, pending: this.#core.pending, confirmed: this.#core.head });
        }
        break;
      case "sync-now":
        if (this.#leading) this.now().catch(() => {});
        break;
      case "sync-pause":
        if (this.#options) this.#pauseHere();
        break;
      case "sync-resume":
        this.#resumeHere();
        break;
      case "sync-rejected":
        this.#tellRejected(m.rejected);
        break;
      case "sync-retracted":
        this.#tellRetracted(m.retracted);
        break;
    }
  }

  close() {
    this.#closed = true;
    this.#leading = false;
    this.#release?.(); // hands the lock to another tab at once
    this.#lead?.abort();
    this.#queued?.abort();
    this.#wake.abort();
    for (const t of this.#timers) clearInterval(t);
    globalThis.removeEventListener?.("online", this.#onOnline);
    globalThis.removeEventListener?.("offline", this.#onOffline);
    for (const w of this.#nowWaiters.splice(0)) w(this.status);
  }

  // --- leadership ---

  #requestLock(steal) {
    const locks = globalThis.navigator?.locks;
    const name = `logfold:sync:${this.#core.name}`;
    if (!locks) {
      // No Web Locks (old browsers, some workers): the newest tab leads, the epoch fences the
      // others, and they take over when its heartbeat stops.
      this.#becomeLeader(() => {});
      return;
    }
    this.#queued?.abort();
    const queued = steal ? null : new AbortController();
    this.#queued = queued;
    const options = steal ? { steal: true } : { signal: queued.signal };
    locks
      .request(name, options, (lock) => {
        if (this.#closed || !lock) return;
        // Held until the leader steps down (fenced, paused for good, closed).
        return new Promise((release) => this.#becomeLeader(release));
      })
      .catch(() => {
        // Aborted (we steal instead), or stolen from us: step down, and queue again.
        if (this.#leading) this.#stepDown();
        if (!this.#closed && !this.#leading && this.#queued === queued) this.#requestLock(false);
      });
  }

  async #becomeLeader(release) {
    let epoch;
    try {
      epoch = await claimLeadership(this.#core);
    } catch {
      release();
      return;
    }
    if (this.#closed) return release();
    this.#epoch = epoch;
    this.#leading = true;
    this.#verified = false; // checked again by this leadership's first push
    this.#release = release;
    this.#set({ leader: true, epoch });
    this.#timers.push(
      (this.#beat = setInterval(async () => {
        try {
          if (!(await heartbeat(this.#core, epoch)) && this.#epoch === epoch) this.#stepDown();
        } catch {}
      }, HEARTBEAT_MS)),
    );
    this.#startLoop();
  }

  #stepDown() {
    this.#leading = false;
    this.#lead?.abort();
    this.#lead = null;
    clearInterval(this.#beat);
    const release = this.#release;
    this.#release = null;
    this.#set({ leader: false });
    release?.();
    // Queue for the lock again; without Web Locks, wait until the leader's heartbeat stops.
    if (!this.#closed && globalThis.navigator?.locks) this.#requestLock(false);
  }

  // A tab that does not lead watches the leader's heartbeat; a stale one (a frozen tab keeps
  // its lock) is replaced: the lock is stolen and the epoch raised.
  async #watch() {
    if (this.#leading || this.#closed || this.#paused) return;
    try {
      const [epoch, beat] = await leader(this.#core);
      this.#set({ pending: this.#core.pending, confirmed: this.#core.head });
      if (epoch > 0 && Date.now() - beat > STALE_MS && !this.#leading) this.#requestLock(true);
    } catch {}
  }

  // --- the loop ---

  #kick() {
    this.#wake.abort();
    this.#wake = new AbortController();
  }

  #startLoop() {
    if (this.#paused || this.#stopped || !this.#leading || this.#closed) return;
    this.#lead?.abort();
    const lead = new AbortController();
    this.#lead = lead;
    this.#loop(lead.signal);
  }

  async #loop(signal) {
    let following = null;
    while (!signal.aborted) {
      const wake = AbortSignal.any([this.#wake.signal, this.#appended.signal]);
      const waiters = this.#nowWaiters.splice(0);
      try {
        this.#set({ state: "syncing" });
        const pushed = await this.#pushAll(signal);
        // A push whose answer confirmed the outbox up to the server's head leaves nothing to
        // pull while the live tail runs: a pull per push would take a transaction from the
        // appends each time. Woken with nothing to push, it pulls (the tail may have stalled).
        const caughtUp = pushed && following && this.#core.pending === 0 && this.#core.head >= this.#status.serverHead;
        if (!caughtUp) await this.#pullAll(signal);
        // Paused (or stepped down) while a step that cannot be aborted finished: the state
        // that pause() set stands.
        if (signal.aborted) {
          for (const w of waiters) w(this.status);
          return;
        }
        this.#failures = 0;
        this.#set({ state: "online", lastError: null, lastSuccess: Date.now() });
        // The live tail starts once caught up, so it does not race the first pulls.
        if (this.#options.live && !following) following = this.#follow(signal);
        for (const w of waiters) w(this.status);
        if (this.#core.pending > 0 && !wake.aborted) {
          // Acknowledged but not pulled yet (another writer's events came between): again.
          await sleep(50, signal);
          continue;
        }
        await sleep(this.#options.live ? 60000 : 2000, AbortSignal.any([signal, wake]));
      } catch (e) {
        // now() resolves with the status this failure leaves (offline, error), not "syncing".
        const answer = () => waiters.forEach((w) => w(this.status));
        if (signal.aborted) return answer();
        this.#verified = false;
        if (e?.code === "FENCED") {
          this.#stepDown();
          return answer();
        }
        if (e?.code === "FORBIDDEN" || e?.code === "DIVERGED") {
          this.#stopped = true;
          this.#set({ state: "error", lastError: describe(e) });
          this.#lead?.abort();
          answer();
          for (const w of this.#nowWaiters.splice(0)) w(this.status);
          return;
        }
        const offline = e?.code === "NETWORK";
        this.#set({ state: offline ? "offline" : "error", lastError: describe(e) });
        answer();
        const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.#failures++);
        await sleep(delay * (0.5 + Math.random()), AbortSignal.any([signal, this.#wake.signal]));
      }
    }
  }

  // Before the first push after a start or a failure: the server must still hold the log
  // this one confirmed from, or the push would write the outbox into another log.
  async #verify(signal) {
    const confirmed = this.#core.head;
    const { serverHead } = await this.#page(confirmed, signal, 1);
    this.#checkHead(serverHead, confirmed);
    this.#verified = true;
  }

  // `confirmed`: this log's head when the request was sent. The live tail moves the head
  // meanwhile, past what an answer about an earlier moment can know of.
  #checkHead(serverHead, confirmed) {
    if (serverHead < confirmed) {
      throw this.#errors(
        "DIVERGED",
        `the server's log ends at ${serverHead}, but ${confirmed} events are confirmed here: it lost them (a restored backup, a wiped database?)`,
        { confirmed, serverHead },
      );
    }
  }

  // Every answer names the server log's identity; the first one met is recorded, another is
  // divergence: a restored or replaced database, or another server.
  async #checkLog(response) {
    const id = response.headers.get(LOG_ID_HEADER);
    if (!id || id === this.#serverLog) return;
    this.#serverLog = await claimMark(this.#core, "serverLog", id);
    if (this.#serverLog !== id) {
      throw this.#errors("DIVERGED", `the server's log "${this.#options.log}" is not the one this log synced with (it has another identity)`, {
        expected: this.#serverLog,
        actual: id,
      });
    }
  }

  // Returns whether it pushed anything.
  async #pushAll(signal) {
    if (!this.#verified) await this.#verify(signal);
    for (let pushed = false; ; pushed = true) {
      const next = await this.#core.pushRequest(this.#epoch);
      if (!next || signal.aborted) return pushed;
      const [body, numbers] = next;
      const head = this.#core.head;
      const step = (async () => {
        const init = { method: "POST", body, headers: { "content-type": "application/json" } };
        const answer = await this.#fetch("/push", init, signal, body.length / SLOW_UPLOAD);
        return JSON.parse(await this.#core.applyPush(this.#epoch, numbers, text(answer.body)));
      })();
      this.#pushing = step;
      const answer = await step.finally(() => {
        if (this.#pushing === step) this.#pushing = null;
      });
      // What the answer did is stored: the app hears of it before anything else can fail.
      if (answer.rejected.length > 0) {
        this.#tellRejected(answer.rejected);
        this.#post({ type: "sync-rejected", rejected: answer.rejected });
      }
      this.#retracted(answer.retracted);
      this.#checkHead(answer.serverHead, head);
      // The outbox changed (rejected), or its front was confirmed from the answer: other tabs
      // fold it.
      if (answer.rejected.length > 0 || this.#core.head > head) this.#post({ head: this.#core.head });
      if (answer.fenced) throw this.#errors("FENCED", "the server has heard from a newer sync leader of this client", {});
      this.#set({ pending: this.#core.pending, confirmed: this.#core.head, serverHead: Math.max(this.#status.serverHead ?? 0, answer.serverHead) });
    }
  }

  // Pages are fetched one ahead: the next downloads while this one is stored and folded.
  async #pullAll(signal) {
    let after = this.#core.head;
    let next = this.#page(after, signal);
    for (;;) {
      const { body, serverHead } = await next;
      this.#checkHead(serverHead, after);
      const last = Math.min(serverHead, after + PULL_LIMIT);
      next = last < serverHead ? this.#page(last, signal) : null;
      next?.catch(() => {}); // awaited below, or dropped
      const pulled = await this.#core.applyPull(this.#epoch, body, serverHead);
      this.#pulled(pulled);
      if (pulled.head >= pulled.serverHead) return;
      if (pulled.head !== last || !next) {
        // Not the page expected (the log moved under us): go on from where it is.
        if (pulled.confirmed === 0 && pulled.head === after) return;
        after = pulled.head;
        next = this.#page(after, signal);
        continue;
      }
      after = last;
    }
  }

  async #page(after, signal, limit = PULL_LIMIT) {
    const { response, body } = await this.#fetch(`/events?after=${after}&limit=${limit}`, { headers: { accept: SEGMENT_TYPE } }, signal);
    const head = Number(response.headers.get("logfold-head"));
    return { body, serverHead: Number.isFinite(head) ? head : after };
  }

  #pulled(pulled) {
    this.#set({ serverHead: Math.max(pulled.serverHead, pulled.head), confirmed: pulled.head, pending: this.#core.pending });
    if (pulled.confirmed > 0) this.#post({ head: pulled.head });
    this.#retracted(pulled.retracted);
  }

  // Rejections the log proved wrong (a late attempt of the batch was accepted): every tab hears.
  #retracted(ids) {
    if (!ids?.length) return;
    this.#tellRetracted(ids);
    this.#post({ type: "sync-retracted", retracted: ids });
  }

  #tellRetracted(ids) {
    for (const id of ids) {
      try {
        this.#options?.onRetracted?.(id);
      } catch (e) {
        console.error("logfold: onRetracted threw:", e);
      }
    }
  }

  // The live tail: server-sent events read with fetch, so the token goes in a header.
  async #follow(signal) {
    let failures = 0;
    while (!signal.aborted) {
      let wait = 0;
      // Each tail under its own watchdog: one that hears nothing, not even the server's
      // keep-alive comments, is dead and replaced.
      const dog = new Watchdog(signal, this.#options.timeout);
      try {
        const { response } = await this.#fetch(`/live?after=${this.#core.head}`, { headers: { accept: "text/event-stream" } }, dog.signal, 0, dog);
        const keepalive = Number(response.headers.get(KEEPALIVE_HEADER)) || DEFAULT_KEEPALIVE_S;
        const silence = Math.max(this.#options.timeout, keepalive * 1000 * KEEPALIVES_MISSED);
        dog.alive(silence);
        // Back after a failure (the server restarted, the network returned): push and pull now.
        if (failures > 0) this.#kick();
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          dog.alive(silence);
          failures = 0;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const lines = buffer.slice(0, end).split("\n");
            buffer = buffer.slice(end + 2);
            const data = lines
              .filter((l) => l.startsWith("data:"))
              .map((l) => l.slice(5).trimStart())
              .join("\n");
            if (!data) continue;
            // The message's id is its last offset. This tab's own pushes come back this way,
            // usually before the push's answer, which confirms them: after it, storing nothing,
            // they need no transaction. A push that hangs holds the tail a second at most.
            if (this.#pushing) await Promise.race([this.#pushing.catch(() => {}), sleep(PUSH_WAIT_MS)]);
            const last = Number(lines.find((l) => l.startsWith("id:"))?.slice(3));
            if (last <= this.#core.head) {
              this.#set({ serverHead: Math.max(this.#status.serverHead ?? 0, last), lastSuccess: Date.now() });
              continue;
            }
            const pulled = await this.#core.applyPull(this.#epoch, data, 0);
            this.#pulled(pulled);
            this.#set({ lastSuccess: Date.now() });
          }
        }
      } catch (e) {
        if (signal.aborted) return;
        if (dog.expired) console.info("logfold: the live tail went silent; opening another");
        this.#verified = false; // the server may not be the one it was
        if (e?.code === "FENCED") return this.#stepDown();
        if (e?.code === "DIVERGED") {
          this.#stopped = true;
          this.#set({ state: "error", lastError: describe(e) });
          this.#lead?.abort();
          return;
        }
        if (e?.code === "SYNC_PROTOCOL") this.#kick(); // a gap: the loop pulls it
        failures++;
        wait = e?.details?.retryAfterMs ?? 0;
      } finally {
        // Also closes a tail left open by an error while reading it (a gap, say).
        dog.cancel();
      }
      await sleep(Math.max(wait, Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** failures) * (0.5 + Math.random())), signal);
    }
  }

  /**
   * One request, abandoned as NETWORK when it makes no progress for `sync.timeout` (plus
   * `extra` ms until the answer's head); a 401 asks getToken() for a new token and tries once
   * more. Resolves to `{ response, body }` with the body read whole, or, given the `stream`
   * watchdog (the live tail's, whose signal is `signal`), to `{ response }` with the body left
   * for the caller to read under it.
   */
  async #fetch(path, init, signal, extra = 0, stream = null) {
    const { timeout } = this.#options;
    for (let attempt = 0; ; attempt++) {
      const headers = { ...init.headers };
      if (this.#token === undefined && this.#options.getToken && attempt === 0) this.#token = await this.#newToken(signal);
      if (this.#token) headers.authorization = `Bearer ${this.#token}`;
      let response, body;
      try {
        ({ response, body } = await guardedFetch(this.#options.api + path, { ...init, headers }, signal, timeout, extra, stream));
      } catch (e) {
        if (signal.aborted && e?.name !== "TimeoutError") throw e;
        throw this.#errors("NETWORK", `the sync server cannot be reached: ${e?.message ?? e}`, {});
      }
      if (response.ok) {
        await this.#checkLog(response);
        return { response, body };
      }
      let error = {};
      try {
        error = JSON.parse(text(body));
      } catch {}
      const message = error.message ?? `HTTP ${response.status}`;
      if (response.status === 401 && attempt === 0 && this.#options.getToken) {
        this.#token = await this.#newToken(signal);
        continue;
      }
      if (response.status === 401) throw this.#errors("UNAUTHORIZED", `the sync server refused the token: ${message}`, { status: 401 });
      if (response.status === 403) throw this.#errors("FORBIDDEN", `the token may not use this log: ${message}`, { status: 403 });
      // A server at its limit (503 TOO_MANY_TAILS) says when to come back.
      const retryAfter = Number(response.headers.get("retry-after"));
      const details = { status: response.status, code: error.code };
      if (retryAfter > 0) details.retryAfterMs = retryAfter * 1000;
      throw this.#errors("SERVER", `the sync server answered ${response.status}: ${message}`, details);
    }
  }

  // getToken() under the watchdog. Late, or failing as fetch() does when the network is down
  // (TypeError), it is NETWORK: sync is offline and retries. Any other failure is UNAUTHORIZED.
  async #newToken(signal) {
    try {
      return await askToken(this.#options.getToken, signal, this.#options.timeout);
    } catch (e) {
      if (signal.aborted && e?.name !== "TimeoutError") throw e;
      const network = e?.name === "TimeoutError" || e instanceof TypeError;
      throw this.#errors(network ? "NETWORK" : "UNAUTHORIZED", `getToken() gave no token: ${e?.message ?? e}`, {});
    }
  }

  /**
   * Uploads snapshot set `id` (its bytes from the log's tables and reducers, `offset` its
   * position) if this tab leads, sharing is on and the log grew `every` events past the last
   * set shared. A failure only warns: sharing is an optimisation for new devices.
   */
  async share(id, offset, bytes) {
    const o = this.#options;
    if (!o?.snapshots.share || !this.#leading || this.#paused || this.#stopped || this.#sharing) return;
    // Only into a server log checked to be this log's since the last failure: a replaced one
    // (a restore) would keep a set of this history for its new devices to boot from.
    if (!this.#verified) return;
    // Another tab, or this origin before a reload, may have shared a later set.
    this.#sharedAt = Math.max(this.#sharedAt ?? 0, readSharedAt(sharedKey(o.api, this.#serverLog, id)));
    if (offset < this.#sharedAt + o.snapshots.every) return;
    const body = bytes();
    if (!body) return;
    this.#sharing = true;
    try {
      const init = { method: "PUT", body, headers: { "content-type": SNAPSHOTS_TYPE } };
      const sent = await this.#fetch(`/snapshots/${id}`, init, this.#lead?.signal ?? new AbortController().signal, body.length / SLOW_UPLOAD);
      const answer = JSON.parse(text(sent.body));
      this.#sharedAt = Math.max(offset, answer.offset ?? 0);
      writeSharedAt(sharedKey(o.api, this.#serverLog, id), this.#sharedAt);
    } catch (e) {
      // Refused (a server without sets, a set over --max-body, an offset it lacks): not again
      // from this tab until the log grows `every` more; a server without sets, never.
      const status = e?.details?.status;
      if (status === 404 || status === 405) this.#sharedAt = Infinity;
      else if (status >= 400 && status < 500) this.#sharedAt = offset;
      if (!this.#closed) console.warn("logfold: sharing a snapshot set failed:", e?.message ?? e);
    } finally {
      this.#sharing = false;
    }
  }

  #tellRejected(records) {
    this.#refresh();
    this.#set({ pending: this.#core.pending });
    for (const r of records) {
      try {
        this.#options?.onRejected?.(r);
      } catch (e) {
        console.error("logfold: onRejected threw:", e);
      }
    }
  }

  #set(patch) {
    let changed = false;
    let shared = false;
    const s = this.#status;
    const serverHead = s.serverHead;
    for (const [k, v] of Object.entries(patch)) {
      if (s[k] !== v) {
        s[k] = v;
        changed = true;
        shared ||= SHARED_STATUS.has(k);
      }
    }
    // What is confirmed is on the server: once its head is known, it is at least that.
    if (s.serverHead !== null && s.confirmed > s.serverHead) s.serverHead = s.confirmed;
    if (!changed) return;
    if (this.#leading && (shared || s.serverHead !== serverHead)) this.#post({ type: "sync-status", status: s });
    const copy = this.status;
    for (const cb of this.#subscribers) {
      try {
        cb(copy);
      } catch (e) {
        console.error("logfold: a sync status subscriber threw:", e);
      }
    }
  }
}

function describe(e) {
  return { code: e?.code ?? "NETWORK", message: String(e?.message ?? e) };
}
