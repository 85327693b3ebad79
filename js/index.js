// logfold's JavaScript entry point: a thin layer over the wasm core. It checks what only JS can
// see (functions, BigInt, cycles, Map/Set in data), sends each batch as one JSON string, and
// turns the core's JSON answers back into objects.
import init, { setErrorClass, snapshotSetId } from "./logfold.js";
import { Sync, syncOptions, fetchSnapshotSet, pullBack, claimMark, storedRejections } from "./sync.js";
import { repair, backfill, readSnapshots, writeSnapshots, pastTables } from "./store.js";
import { LogfoldError } from "./errors.js";
import { openLog } from "./open.js";

export { LogfoldError };

let ready;
const DAY_MS = 24 * 60 * 60 * 1000;
// How often an open log with onStorageRisk looks again.
const STORAGE_CHECK_MS = 60_000;

function load() {
  // Outside a browser (Node, server-side rendering) say so, rather than fail to fetch the wasm.
  if (!globalThis.indexedDB) {
    return Promise.reject(new LogfoldError("STORAGE", "IndexedDB is not available here: logfold runs in a browser page or worker", { name: "NotSupportedError" }));
  }
  ready ??= init().then(() => setErrorClass(LogfoldError));
  return ready;
}

// Deletes log `name`'s database. IndexedDB holds the request until every connection has closed;
// an open log closes its own on the `versionchange` this sends.
function deleteDatabase(name) {
  const failed = (e) => new LogfoldError("STORAGE", `IndexedDB failed: ${e?.name ?? "Error"}: ${e?.message ?? "the delete failed"}`, { name: e?.name ?? "Error" });
  return new Promise((resolve, reject) => {
    // It throws at once where storage is denied (a sandboxed frame: SecurityError).
    try {
      const req = globalThis.indexedDB.deleteDatabase(`logfold:${name}`);
      req.onsuccess = () => resolve();
      req.onerror = () => reject(failed(req.error));
    } catch (e) {
      reject(failed(e));
    }
  });
}

function invalidEvent(index, field, reason) {
  return new LogfoldError("INVALID_EVENT", `invalid event: event ${index}: ${field} ${reason}`, { index, field, reason });
}

function invalidArgument(argument, message) {
  return new LogfoldError("INVALID_ARGUMENT", `invalid ${argument}: ${message}`, { argument });
}

// Walks a value and returns why it is not plain JSON, with the path to the fault, or undefined.
// Paths are built only on failure so the common case allocates nothing. `seen.undefined` is set
// when an object property is undefined (JSON drops it, so the caller must copy the value).
function jsonFault(value, ancestors, seen) {
  switch (typeof value) {
    case "string":
    case "boolean":
      return undefined;
    case "number":
      return Number.isFinite(value) ? undefined : { path: [], reason: `is ${value}, not a finite number` };
    case "object": {
      if (value === null) return undefined;
      if (ancestors.includes(value)) return { path: [], reason: "refers back to itself (a cycle)" };
      if (Array.isArray(value)) {
        ancestors.push(value);
        for (let i = 0; i < value.length; i++) {
          const item = value[i];
          const fault = item === undefined ? { path: [], reason: "is undefined inside an array" } : jsonFault(item, ancestors, seen);
          if (fault) {
            fault.path.push(`[${i}]`);
            return fault;
          }
        }
        ancestors.pop();
        return undefined;
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null && !isObjectPrototype(proto)) {
        const kind = value.constructor?.name || "object with a prototype";
        return { path: [], reason: `is a ${kind}, not plain JSON` };
      }
      ancestors.push(value);
      for (const key of Object.keys(value)) {
        const item = value[key];
        if (item === undefined) {
          seen.undefined = true; // dropped, as JSON.stringify does
          continue;
        }
        const fault = jsonFault(item, ancestors, seen);
        if (fault) {
          fault.path.push(/^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`);
          return fault;
        }
      }
      ancestors.pop();
      return undefined;
    }
    default:
      return { path: [], reason: `is a ${typeof value}, not plain JSON` };
  }
}

// Another realm's Object.prototype: a plain object made in an iframe, or by a WebDriver script
// in Firefox, which runs in a sandbox of its own. Its own prototype is null and its constructor
// is that realm's Object.
function isObjectPrototype(proto) {
  if (Object.getPrototypeOf(proto) !== null) return false;
  const ctor = Object.getOwnPropertyDescriptor(proto, "constructor")?.value;
  return typeof ctor === "function" && ctor.name === "Object" && ctor.prototype === proto;
}

// Checks a data or meta value; returns it as it will be stored (a copy without undefined
// properties when it had some, so the event append returns equals the one read() returns).
function checkJson(value, index, field) {
  const seen = { undefined: false };
  const fault = jsonFault(value, [], seen);
  if (fault) throw invalidEvent(index, field + fault.path.reverse().join(""), fault.reason);
  return seen.undefined ? JSON.parse(JSON.stringify(value)) : value;
}

function toWire(event, index) {
  if (event === null || typeof event !== "object") throw invalidEvent(index, "event", "must be an object");
  const { stream, type, data, meta } = event;
  if (typeof stream !== "string") throw invalidEvent(index, "stream", "must be a string");
  if (typeof type !== "string") throw invalidEvent(index, "type", "must be a string");
  return {
    stream,
    type,
    data: data === undefined ? null : checkJson(data, index, "data"),
    meta: meta === undefined ? undefined : checkJson(meta, index, "meta"),
  };
}

function checkVersion(v, argument) {
  if (v === "none" || (Number.isSafeInteger(v) && v >= 0)) return v;
  throw invalidArgument(argument, `${JSON.stringify(v) ?? String(v)} is not a version; use a non-negative integer or "none"`);
}

// Expected versions as parallel lists for the core: streams, and versions with -1 for "none".
function expectations(wire, options) {
  const { expectedVersion, expectedVersions } = options ?? {};
  if (expectedVersion !== undefined && expectedVersions !== undefined) {
    throw invalidArgument("expectedVersion", "give expectedVersion or expectedVersions, not both");
  }
  let pairs = [];
  if (expectedVersion !== undefined) {
    const streams = new Set(wire.map((e) => e.stream));
    if (streams.size !== 1) {
      throw invalidArgument("expectedVersion", `the batch has ${streams.size} streams; use expectedVersions: { [stream]: version }`);
    }
    pairs = [[wire[0].stream, checkVersion(expectedVersion, "expectedVersion")]];
  } else if (expectedVersions !== undefined) {
    if (expectedVersions === null || typeof expectedVersions !== "object") {
      throw invalidArgument("expectedVersions", "must be an object of stream → version");
    }
    pairs = Object.entries(expectedVersions).map(([s, v]) => [s, checkVersion(v, "expectedVersions")]);
  }
  return [pairs.map(([s]) => s), Float64Array.from(pairs, ([, v]) => (v === "none" ? -1 : v))];
}

// A copy of each log's head kept outside IndexedDB. After a crash Chromium sometimes finds an
// origin's IndexedDB damaged and deletes it whole; the log would then open empty without a word.
// With the mark, open sees that positions it once stored are gone and says so (CORRUPT).
// Best effort: localStorage is not in workers, and a crash can lose its last writes too.
const MARK_MS = 1000;
const markKey = (name) => `logfold:head:${name}`;

function readMark(name) {
  try {
    return Number(globalThis.localStorage?.getItem(markKey(name)) ?? 0) || 0;
  } catch {
    return 0;
  }
}

// Whether log `name` may not exist in this origin yet (a new device, or after destroy): only
// then is the server's snapshot set worth waiting for. The browser's list of databases says;
// where it cannot, a head mark says the log exists.
async function mayBeNew(name) {
  try {
    if (globalThis.localStorage && globalThis.localStorage.getItem(markKey(name)) !== null) return false;
  } catch {}
  try {
    const dbs = await globalThis.indexedDB.databases();
    return !dbs.some((d) => d.name === `logfold:${name}`);
  } catch {
    return true;
  }
}

function writeMark(name, head) {
  try {
    if (head === null) globalThis.localStorage?.removeItem(markKey(name));
    else if (head > readMark(name) || head === 0) globalThis.localStorage?.setItem(markKey(name), String(head));
  } catch {
    // No storage (workers, private modes): no mark.
  }
}

async function markAfter(name, ms) {
  await new Promise((resolve) => setTimeout(resolve, ms));
  return readMark(name);
}

function lostError(head, mark) {
  const reason = "positions the log once stored are gone: the browser discarded or reset this origin's IndexedDB (Chromium deletes it when it finds it damaged after a crash)";
  return new LogfoldError(
    "CORRUPT",
    `the log's head is ${head} but it had stored events up to ${mark}: ${reason}; see Logfold.repair`,
    { from: head + 1, to: mark, reason },
  );
}

// open's `retention`: { keepEvents?, keepDays? }, for a synced log only (the server keeps all).
function checkRetention(retention, syncing) {
  if (retention === undefined) return;
  if (retention === null || typeof retention !== "object") throw invalidArgument("retention", "must be an object { keepEvents, keepDays }");
  if (!syncing) throw invalidArgument("retention", "only a synced log drops history (the server keeps it); this log has no other copy");
  const { keepEvents, keepDays, ...rest } = retention;
  const unknown = Object.keys(rest)[0];
  if (unknown !== undefined) throw invalidArgument(`retention.${unknown}`, "unknown option (expected keepEvents, keepDays)");
  if (keepEvents === undefined && keepDays === undefined) throw invalidArgument("retention", "needs keepEvents or keepDays");
  if (keepEvents !== undefined && !(Number.isSafeInteger(keepEvents) && keepEvents >= 1)) throw invalidArgument("retention.keepEvents", "must be a positive integer");
  if (keepDays !== undefined && !(Number.isFinite(keepDays) && keepDays > 0)) throw invalidArgument("retention.keepDays", "must be a positive number of days");
}

// A reducer snapshot is a structured clone of the state, which IndexedDB does not check: it
// carries a checksum of its JSON text, so a damaged one is rebuilt rather than used.
function snapshotChecksum(seq, state) {
  let text;
  try {
    text = `${seq}:${JSON.stringify(state)}`;
  } catch {
    return null; // not JSON (a BigInt, a cycle): kept unchecked
  }
  let h = 0x811c9dc5; // FNV-1a
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

// The state as JSON text when JSON holds it exactly (plain objects and arrays, strings, finite
// numbers, booleans, null), else null: a Map, a Date or a NaN would come back as another value.
function plainJson(state) {
  const plain = (v, depth) => {
    if (v === null || typeof v === "string" || typeof v === "boolean") return true;
    if (typeof v === "number") return Number.isFinite(v) && !Object.is(v, -0);
    if (typeof v !== "object" || depth > 100) return false;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) if (!plain(v[i], depth + 1)) return false;
      return true;
    }
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return false;
    return Object.values(v).every((x) => plain(x, depth + 1));
  };
  return plain(state, 0) ? JSON.stringify(state) : null;
}

function sealSnapshot(seq, state) {
  return { seq, state, check: snapshotChecksum(seq, state) };
}

function intactSnapshot(s) {
  return "check" in s && s.check === snapshotChecksum(s.seq, s.state);
}

function invalidProjection(projection, path, message) {
  return new LogfoldError("INVALID_PROJECTION", `invalid projection: ${path}: ${message}`, { projection, path });
}

const REDUCER_KEYS = new Set(["version", "init", "apply"]);

// Splits `projections` into declarative tables (JSON text for wasm) and JS reducers.
function splitProjections(projections) {
  const tables = {};
  const reducers = [];
  if (projections === undefined) return { tables, reducers };
  if (projections === null || typeof projections !== "object" || Array.isArray(projections)) {
    throw invalidProjection("", "projections", "must be an object of name → definition");
  }
  for (const [name, def] of Object.entries(projections)) {
    const path = `projections.${name}`;
    if (def === null || typeof def !== "object" || Array.isArray(def)) {
      throw invalidProjection(name, path, "a definition is an object: a table { key, on } or a reducer { version, init, apply }");
    }
    if ("apply" in def) {
      for (const k of Object.keys(def)) {
        if (!REDUCER_KEYS.has(k)) throw invalidProjection(name, `${path}.${k}`, "unknown option of a reducer (expected version, init, apply)");
      }
      if (typeof def.apply !== "function") throw invalidProjection(name, `${path}.apply`, "must be a function (state, event) => new state");
      if (!Number.isSafeInteger(def.version) || def.version < 0 || def.version > 0xffffffff) {
        throw invalidProjection(name, `${path}.version`, "must be a non-negative integer: your number for when to rebuild");
      }
      reducers.push(new Reducer(name, def));
      continue;
    }
    const fault = jsonFault(def, [], { undefined: false });
    if (fault) throw invalidProjection(name, path + fault.path.reverse().join(""), fault.reason);
    tables[name] = def;
  }
  return { tables, reducers };
}

// Folds `events` into `state` with `apply`, skipping those at or before `seq`. Stops at the
// first event `apply` throws on and reports it, keeping the state from before that event.
function foldEvents(apply, state, seq, events, schemas) {
  for (const e of events) {
    if (e.seq <= seq) continue;
    try {
      // Brought to this app's schema; null: an event it skips (see Schemas).
      const read = schemas ? schemas.project(e) : e;
      if (read !== null) state = apply(state, read);
    } catch (error) {
      return { state, seq, failure: { seq: e.seq, type: e.type, error, message: String(error?.message ?? error) } };
    }
    seq = e.seq;
  }
  return { state, seq, failure: null };
}

// A JS reducer projection: `apply(state, event)` returns the new state and must not change its
// input: a synced log keeps the state at its confirmed head (`base`) under the outbox's.
class Reducer {
  constructor(name, def) {
    this.name = name;
    this.version = def.version;
    this.apply = def.apply;
    this.init = def.init;
    this.state = undefined;
    this.seq = 0;
    this.failure = null;
    this.base = { state: undefined, seq: 0, failure: null };
  }

  initial() {
    return typeof this.init === "function" ? this.init() : this.init;
  }

  reset(snapshot) {
    this.failure = null;
    if (snapshot === undefined) {
      this.state = this.initial();
      this.seq = 0;
    } else {
      this.state = snapshot.state;
      this.seq = snapshot.seq;
    }
    this.base = { state: this.state, seq: this.seq, failure: null };
  }

  // The outbox folded on top is all confirmed now: it is the base.
  settle() {
    this.base = { state: this.state, seq: this.seq, failure: this.failure };
  }

  // Back to the base: the outbox is folded again on top (or is gone).
  rebase() {
    ({ state: this.state, seq: this.seq, failure: this.failure } = this.base);
  }

  // Returns whether the state changed. Outbox events (`overlay`) leave the base as it was.
  fold(events, overlay, schemas) {
    if (this.failure) return false;
    const before = this.state;
    const out = foldEvents(this.apply, this.state, this.seq, events, schemas);
    this.state = out.state;
    this.seq = out.seq;
    if (out.failure) {
      this.failure = out.failure;
      console.error(`logfold: projection ${this.name} failed at position ${out.failure.seq}:`, out.failure.error);
    }
    if (!overlay) this.base = { state: this.state, seq: this.seq, failure: this.failure };
    return this.state !== before;
  }
}

// Reducers as wasm names them: their names, and their versions alongside.
function reducerIds(reducers) {
  return [reducers.map((r) => r.name), Uint32Array.from(reducers, (r) => r.version)];
}

function failedError(name, failure) {
  return new LogfoldError(
    "PROJECTION_FAILED",
    `projection ${name} failed at position ${failure.seq} (${failure.type}): ${failure.message}`,
    { projection: name, seq: failure.seq, type: failure.type, error: failure.error },
  );
}

// The app's event schemas: `schemas` names the schema number it writes per type (1 when not
// named), `upcast[type][n]` turns data of schema n into schema n + 1, and `unknownEvents` says
// what projections do with an event of a newer schema than the app knows (written by a newer
// version of the app): "skip" it, "fail" (a table records a fold error, a reducer stops), or a
// function (event) => data to fold, or null to skip. An event carries its schema as
// meta.$schema; read() shows it as `schema` and takes it out of `meta`.
class Schemas {
  constructor(schemas = {}, upcast = {}, unknownEvents = "skip") {
    if (schemas === null || typeof schemas !== "object") throw invalidArgument("schemas", "must be an object of event type → schema number");
    if (upcast === null || typeof upcast !== "object") throw invalidArgument("upcast", "must be an object of event type → { schema: (data) => data }");
    if (unknownEvents !== "skip" && unknownEvents !== "fail" && typeof unknownEvents !== "function") {
      throw invalidArgument("unknownEvents", 'must be "skip", "fail" or a function (event) => data or null');
    }
    this.current = {};
    for (const [type, n] of Object.entries(schemas)) {
      if (!Number.isSafeInteger(n) || n < 1) throw invalidArgument(`schemas.${type}`, "must be a positive integer");
      this.current[type] = n;
    }
    this.upcast = {};
    for (const [type, steps] of Object.entries(upcast)) {
      const current = this.current[type];
      if (current === undefined) throw invalidArgument(`upcast.${type}`, `needs schemas.${type}, the schema the upcasters lead to`);
      for (let n = 1; n < current; n++) {
        if (typeof steps?.[n] !== "function") throw invalidArgument(`upcast.${type}.${n}`, `must be a function (data) => data of schema ${n + 1}`);
      }
      this.upcast[type] = steps;
    }
    this.unknown = unknownEvents;
  }

  // What the projections' state depends on besides their definitions and versions, for the
  // name of the server's snapshot set: the schemas, and the code of the upcasters, of the
  // unknownEvents function and of `reducers` (so a new device of a build whose code differs,
  // even at the same versions, never starts from another build's set; it waits for its own).
  // A device updated in place shares state its earlier build began to fold: a `version` says
  // when that state is wrong for the new build.
  salt(reducers) {
    const code = (f) => (typeof f === "function" ? String(f) : f);
    const upcast = Object.entries(this.upcast).map(([type, steps]) => [type, Object.entries(steps).map(([n, f]) => [n, code(f)])]);
    const text = JSON.stringify({ schemas: Object.entries(this.current).sort(), unknown: code(this.unknown), upcast, reducers: reducers.map((r) => [r.name, code(r.init), code(r.apply)]) });
    // Two 32-bit FNV-1a passes with different offsets: a short name for any length of code.
    const hash = (h) => {
      for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
      return (h >>> 0).toString(16).padStart(8, "0");
    };
    return hash(0x811c9dc5) + hash(0x050c5d1f);
  }

  // The wire event as stored: with meta.$schema when this app writes `type` at a schema above 1.
  stamped(w, index) {
    const n = this.current[w.type];
    if (!(n > 1)) return w;
    if (w.meta !== undefined && w.meta !== null && (typeof w.meta !== "object" || Array.isArray(w.meta))) {
      throw invalidEvent(index, "meta", "must be an object (or absent) on an event of a type with a schema: it carries $schema");
    }
    return { ...w, meta: { ...w.meta, $schema: n } };
  }

  // `data` (of `schema`) at this app's schema for `type`, or SKIP. Throws for "fail".
  data(type, schema, data, event) {
    const current = this.current[type] ?? 1;
    if (schema < current) {
      const steps = this.upcast[type];
      if (!steps) return data; // older events of a type with no upcasters: as they are
      for (let n = schema; n < current; n++) data = steps[n](data);
      return data === undefined ? null : data;
    }
    if (schema === current) return data;
    if (this.unknown === "skip") return SKIP;
    if (this.unknown === "fail") throw new Error(`${type} of schema ${schema} is newer than this app's ${current}`);
    const out = this.unknown(event ?? { type, schema, data });
    return out === undefined || out === null ? SKIP : out;
  }

  // A stored event as a projection sees it: at this app's schema (`schema`, meta without it),
  // or null to skip.
  project(e) {
    const schema = schemaOf(e);
    const current = this.current[e.type] ?? 1;
    if (schema === current && !(schema > 1)) return e;
    const data = schema === current ? e.data : this.data(e.type, schema, e.data, e);
    // Upcast or decided by unknownEvents, the data is at this app's schema now.
    return data === SKIP ? null : { ...withoutSchema(e), data, schema: current };
  }

  // A stored event as read() shows it: `schema`, meta without it, data brought up to this
  // app's schema when older (newer data is left as written).
  read(e) {
    const schema = schemaOf(e);
    const current = this.current[e.type] ?? 1;
    const out = withoutSchema(e);
    out.schema = schema;
    if (schema < current && this.upcast[e.type]) {
      out.data = this.data(e.type, schema, e.data);
      out.schema = current;
    }
    return out;
  }
}

// What a projection's `data` returns for an event it leaves out.
const SKIP = Symbol("skip");

// An event's schema: meta.$schema when it is a positive integer (as the tables read it), else 1.
function schemaOf(e) {
  const n = e.meta !== null && typeof e.meta === "object" ? e.meta.$schema : undefined;
  return Number.isSafeInteger(n) && n >= 1 ? n : 1;
}

// The event with $schema taken out of its meta (null when nothing else is left).
function withoutSchema(e) {
  if (!(e.meta && typeof e.meta === "object" && !Array.isArray(e.meta) && "$schema" in e.meta)) return e;
  const { $schema, ...meta } = e.meta;
  return { ...e, meta: Object.keys(meta).length > 0 ? meta : null };
}

// The JS side of the projections: wasm calls its hooks as it folds.
class Projector {
  constructor(tableNames, reducers, schemas) {
    this.schemas = schemas;
    this.tableNames = new Set(tableNames);
    this.reducers = new Map(reducers.map((r) => [r.name, r]));
    this.subscribers = new Map();
    this.seq = 0;
    this.onProgress = undefined;
    this.afterFold = undefined;
    this.view = undefined;
  }

  hooks() {
    return {
      start: (snapshots) => [...this.reducers.values()].forEach((r, i) => r.reset(snapshots[i])),
      fold: (events, changes, seq, overlay) => this.fold(events, changes, seq, overlay),
      rebase: () => this.reducers.forEach((r) => r.rebase()),
      settle: () => this.reducers.forEach((r) => r.settle()),
      progress: (done, total) => {
        try {
          this.onProgress?.({ done, total });
        } catch (e) {
          console.error("logfold: onProgress threw:", e);
        }
      },
      warn: (message) => console.warn(`logfold: ${message}`),
      intact: (snapshot) => intactSnapshot(snapshot),
      seal: (seq, text) => sealSnapshot(seq, JSON.parse(text)),
      // The tables read events of another schema through the same rules (see Schemas).
      schemas: this.schemas.current,
      upcast: (type, schema, data) => {
        const out = this.schemas.data(type, schema, JSON.parse(data));
        return out === SKIP ? null : JSON.stringify(out);
      },
    };
  }

  fold(eventsText, changesText, seq, overlay = false) {
    this.seq = seq;
    const notes = [];
    if (eventsText !== null) {
      const events = JSON.parse(eventsText);
      for (const r of this.reducers.values()) {
        if (r.fold(events, overlay, this.schemas) && this.subscribers.has(r.name)) notes.push([r.name, { seq, state: r.state }]);
      }
    }
    if (changesText !== null) {
      for (const [name, rows] of Object.entries(JSON.parse(changesText))) {
        notes.push([name, { seq, changes: rows.map(([key, row]) => ({ key, row: row ?? undefined })) }]);
      }
    }
    if (notes.length > 0) queueMicrotask(() => this.#deliver(notes));
    this.afterFold?.(seq);
    this.onChange?.();
  }

  #deliver(notes) {
    for (const [name, change] of notes) {
      for (const cb of this.subscribers.get(name) ?? []) {
        try {
          cb(change);
        } catch (e) {
          console.error(`logfold: a subscriber of ${name} threw:`, e);
        }
      }
    }
  }

  kind(name) {
    if (this.tableNames.has(name)) return "table";
    if (this.reducers.has(name)) return "reducer";
    throw invalidArgument("projection", `there is no projection ${JSON.stringify(name)}`);
  }
}

// Reads of declarative tables; rows cross from wasm as JSON text.
class Table {
  #view;
  #name;

  constructor(view, name) {
    this.#view = view;
    this.#name = name;
  }

  get name() {
    return this.#name;
  }

  /** The row with `key` (a string or number), or undefined. */
  get(key) {
    const text = this.#view.get(this.#name, key);
    return text === undefined ? undefined : JSON.parse(text);
  }

  /** Rows in key order: numbers first, then strings; `from` inclusive, `to` exclusive. */
  scan(options) {
    const { from, to, prefix, limit, reverse = false, where } = options ?? {};
    if (prefix !== undefined && typeof prefix !== "string") throw invalidArgument("prefix", "must be a string");
    if (where !== undefined && (where === null || typeof where !== "object" || Array.isArray(where))) {
      throw invalidArgument("where", "must be an object of field → value");
    }
    const text = this.#view.scan(
      this.#name,
      from,
      to,
      prefix,
      position(limit, "limit", -1),
      Boolean(reverse),
      where === undefined ? undefined : JSON.stringify(where),
    );
    return JSON.parse(text).map(([key, row]) => ({ key, row }));
  }

  /** Rows whose fields equal those of `where`, in key order. */
  filter(where, options) {
    return this.scan({ ...options, where });
  }

  count() {
    return this.#view.count(this.#name);
  }

  errors() {
    return JSON.parse(this.#view.errors(this.#name));
  }
}

// Tables and reducer states as of a past position (log.tablesAt).
class PastView {
  #view;
  #p;
  #states;

  constructor(view, projector, states) {
    this.#view = view;
    this.#p = projector;
    this.#states = states;
  }

  get seq() {
    return this.#view.seq;
  }

  table(name) {
    if (this.#p.kind(name) !== "table") throw invalidArgument("projection", `${name} is a reducer; use state(name)`);
    return new Table(this.#view, name);
  }

  state(name) {
    if (this.#p.kind(name) !== "reducer") throw invalidArgument("projection", `${name} is a table; use table(name)`);
    const s = this.#states.get(name);
    if (s.failure) throw failedError(name, s.failure);
    return s.state;
  }
}

function position(value, argument, fallback) {
  if (value === undefined) return fallback;
  if (Number.isSafeInteger(value) && value >= 0) return value;
  throw invalidArgument(argument, "must be a non-negative integer");
}

class Log {
  #core;
  // Appends made in the same tick, sent to wasm together (see #flush).
  #pending = [];
  #p;
  #view;
  #tables = new Map();
  #snapshotEvery;
  #snapshotAt;
  #setId; // the name of this app's snapshot set on the server (a synced log with projections)
  #retention; // { keepEvents, keepDays } (see #retain), or undefined
  #retaining = false;
  #retainedAt = 0;
  #snapshotting = null;
  #snapshotDue = false;
  #channel = null;
  #markTimer = null;
  #catching = null;
  #again = false;
  // { onStorageRisk, after }: see storage(); the last atRisk told, and the timer that looks.
  #risk;
  #atRisk = false;
  #riskTimer;
  #onVisible = () => {
    if (globalThis.document?.visibilityState === "visible") this.refresh();
  };

  /** Sync with a server (`log.sync`); undefined for a log that confirms its own appends. */
  sync;

  /**
   * Settles once the segments `open` did not need to read are checked: `null` when intact, else
   * the error: `CORRUPT` or `UNSUPPORTED_FORMAT` (also given to `onCorrupt`), `STORAGE` if
   * IndexedDB failed, or `CLOSED` if the log closed first. Never rejects.
   */
  verified;

  constructor(core, projector, snapshotEvery, sync, risk, onCorrupt, setId, retention) {
    this.#core = core;
    this.#setId = setId;
    this.#retention = retention;
    this.verified = core.verifyRest().then(
      () => null,
      (e) => {
        if (e?.code === "CLOSED") return e;
        if (onCorrupt && (e?.code === "CORRUPT" || e?.code === "UNSUPPORTED_FORMAT")) {
          try {
            onCorrupt(e);
          } catch (thrown) {
            console.error("logfold: onCorrupt threw:", thrown);
          }
        } else {
          console.warn("logfold: the check after open did not finish (see Logfold.repair):", e);
        }
        return e;
      },
    );
    this.#risk = risk;
    this.#p = projector;
    this.#view = core.tables();
    this.#snapshotEvery = snapshotEvery;
    // A rebuild at open is worth keeping at once; otherwise count from where open started.
    this.#snapshotAt = core.head - core.stats().eventsReplayed;
    projector.afterFold = (seq) => this.#maybeSnapshot(seq);
    this.#maybeSnapshot(core.head);
    // Other tabs append to the same log: they say so on this channel, and a page coming back
    // from the background re-checks, since a frozen page misses messages.
    if (typeof BroadcastChannel === "function") {
      this.#channel = new BroadcastChannel(`logfold:${core.name}`);
      this.#channel.onmessage = ({ data }) => (data?.type ? this.sync?.message(data) : this.refresh());
    }
    globalThis.document?.addEventListener("visibilitychange", this.#onVisible);
    if (core.synced) {
      this.sync = new Sync(core, sync, {
        errors: (code, message, details) => new LogfoldError(code, message, details),
        post: (m) => this.#channel?.postMessage(m),
        refresh: () => this.refresh(),
      });
      projector.onChange = () => this.sync?.changed();
      if (retention) this.sync.subscribe((status) => this.#retain(status));
    }
    if (risk.onStorageRisk) {
      this.#riskTimer = setInterval(() => this.storage().catch(() => {}), STORAGE_CHECK_MS);
      this.storage().catch(() => {});
    }
  }

  /**
   * What the browser keeps of this origin and whether it may evict it: `{ persisted, usage,
   * quota, unsynced, oldestUnsynced, atRisk }`. `unsynced` counts the events only this browser
   * has (the outbox of a synced log; every event of a log without sync), `oldestUnsynced` is
   * the oldest one's time; `atRisk` is true when storage is not persisted and that event is
   * older than `storageRiskAfter`. Calls `onStorageRisk` if `atRisk` changed.
   */
  async storage() {
    const s = globalThis.navigator?.storage;
    const [persisted, estimate] = await Promise.all([
      s?.persisted ? s.persisted() : false,
      s?.estimate ? s.estimate() : {},
    ]);
    const unsynced = this.sync ? this.#core.pending : this.#core.head;
    let oldestUnsynced = null;
    if (unsynced > 0) {
      // A synced log's outbox events come after its confirmed ones.
      const [first] = await this.read({ after: this.sync ? this.sync.status.confirmed : 0, limit: 1 });
      oldestUnsynced = first?.time ?? null;
    }
    const atRisk = !persisted && oldestUnsynced !== null && Date.now() - oldestUnsynced >= this.#risk.after;
    const report = { persisted, usage: estimate.usage ?? null, quota: estimate.quota ?? null, unsynced, oldestUnsynced, atRisk };
    if (atRisk !== this.#atRisk) {
      this.#atRisk = atRisk;
      try {
        if (!this.closed) this.#risk.onStorageRisk?.(report);
      } catch (e) {
        console.error("logfold: onStorageRisk threw:", e);
      }
    }
    return report;
  }

  /** Asks the browser to keep this origin's storage (`navigator.storage.persist()`); resolves to whether it will. */
  async persist() {
    const s = globalThis.navigator?.storage;
    const granted = s?.persist ? await s.persist() : false;
    if (this.#risk.onStorageRisk) await this.storage();
    return granted;
  }

  get name() {
    return this.#core.name;
  }

  get clientId() {
    return this.#core.clientId;
  }

  get head() {
    return this.#core.head;
  }

  get closed() {
    return this.#core.closed;
  }

  async append(input, options) {
    const single = !Array.isArray(input);
    const wire = (single ? [input] : input).map(toWire);
    const [streams, versions] = expectations(wire, options);
    const sent = wire.map((w, i) => this.#p.schemas.stamped(w, i));
    return new Promise((resolve, reject) => {
      if (this.#pending.push({ wire, sent, streams, versions, single, resolve, reject }) === 1) {
        queueMicrotask(() => this.#flush());
      }
    });
  }

  // One crossing into wasm for every append of a tick: the calls still succeed or fail one by
  // one, and the core's group commit writes them in one transaction.
  async #flush() {
    const calls = this.#pending;
    if (calls.length === 0) return;
    this.#pending = [];
    let answers, errors;
    try {
      [answers, errors] = await this.#core.appendBatches(
        JSON.stringify(calls.flatMap((c) => c.sent)),
        Uint32Array.from(calls, (c) => c.wire.length),
        calls.flatMap((c) => c.streams),
        Float64Array.from(calls.flatMap((c) => Array.from(c.versions))),
        Uint32Array.from(calls, (c) => c.streams.length),
      );
    } catch (e) {
      for (const c of calls) c.reject(e);
      return;
    }
    const origin = this.#core.clientId;
    let stored = false;
    JSON.parse(answers).forEach((answer, i) => {
      const c = calls[i];
      if (answer === null) return c.reject(errors[i]);
      stored = true;
      // The stored events share `data` and `meta` with the input objects.
      const events = answer.events.map(([id, version, seq], j) => ({
        id,
        stream: c.wire[j].stream,
        version,
        type: c.wire[j].type,
        data: c.wire[j].data,
        meta: c.sent[j].meta ?? null,
        time: answer.time,
        origin,
        seq,
        offset: null,
      })).map((e) => this.#p.schemas.read(e));
      c.resolve(c.single ? events[0] : events);
    });
    if (stored) {
      this.#markSoon();
      this.#channel?.postMessage({ head: this.#core.head });
      this.sync?.changed();
    }
  }

  // The head mark after appends: the first of a run at once, the rest once per MARK_MS. A mark
  // behind the head still tells a wiped database apart, and a localStorage write per append
  // cost about a twentieth of a single append's time.
  #markSoon() {
    if (this.#markTimer !== null) return;
    writeMark(this.name, this.#core.head);
    this.#markTimer = setTimeout(() => this.#markNow(), MARK_MS);
  }

  #markNow() {
    clearTimeout(this.#markTimer);
    this.#markTimer = null;
    // Closed under it (another tab destroyed the log, say): its mark is no longer this head.
    if (!this.closed) writeMark(this.name, this.#core.head);
  }

  /** Folds what other tabs appended (they signal it; this is for when a signal was missed). */
  refresh() {
    if (this.#catching) {
      this.#again = true;
      return this.#catching;
    }
    this.#catching = (async () => {
      try {
        do {
          this.#again = false;
          await this.#core.catchUp();
          this.sync?.changed();
          writeMark(this.name, this.#core.head);
        } while (this.#again);
      } catch (e) {
        if (!this.closed) console.warn("logfold: could not read other tabs' appends:", e);
      } finally {
        this.#catching = null;
      }
    })();
    return this.#catching;
  }

  /** A declarative table. */
  table(name) {
    if (this.#p.kind(name) !== "table") throw invalidArgument("projection", `${name} is a reducer; use log.state(name)`);
    let t = this.#tables.get(name);
    if (!t) this.#tables.set(name, (t = new Table(this.#view, name)));
    return t;
  }

  /** A reducer's current state. */
  state(name) {
    if (this.#p.kind(name) !== "reducer") throw invalidArgument("projection", `${name} is a table; use log.table(name)`);
    const r = this.#p.reducers.get(name);
    if (r.failure) throw failedError(name, r.failure);
    return r.state;
  }

  /** What a projection could not apply: `{ count, errors: [{ seq, type, message }] }`. */
  projectionErrors(name) {
    if (this.#p.kind(name) === "table") return this.table(name).errors();
    const f = this.#p.reducers.get(name).failure;
    return { count: f ? 1 : 0, errors: f ? [{ seq: f.seq, type: f.type, message: f.message }] : [], failed: Boolean(f) };
  }

  /**
   * Calls `callback` once per committed append or received batch that changes the projection:
   * with `{ seq, changes: [{ key, row }] }` for a table (`row` undefined when deleted), or
   * `{ seq, state }` for a reducer. Returns the function that unsubscribes.
   */
  subscribe(name, callback) {
    const kind = this.#p.kind(name);
    if (typeof callback !== "function") throw invalidArgument("callback", "must be a function");
    let set = this.#p.subscribers.get(name);
    if (!set) {
      this.#p.subscribers.set(name, (set = new Set()));
      if (kind === "table") this.#view.watch(name, true);
    }
    const entry = (change) => callback(change);
    set.add(entry);
    return () => {
      set.delete(entry);
      if (set.size === 0 && this.#p.subscribers.get(name) === set) {
        this.#p.subscribers.delete(name);
        if (kind === "table") this.#view.watch(name, false);
      }
    };
  }

  /** Read-only tables and reducer states as of position `seq`, folded from the log. */
  async tablesAt(seq) {
    if (!(Number.isSafeInteger(seq) && seq >= 0)) throw invalidArgument("seq", "must be a non-negative integer");
    const { view, states } = await this.#past(seq);
    return new PastView(view, this.#p, states);
  }

  // The tables (a wasm view) and reducer states as of position `seq`.
  async #past(seq) {
    const reducers = [...this.#p.reducers.values()];
    // Each from its snapshot, else from its base one (kept where history was dropped).
    const [stored, bases] = await Promise.all([false, true].map((base) => readSnapshots(this.#core, this.#core.snapshotKeys(...reducerIds(reducers), base))));
    const tables = stored.length - reducers.length;
    const usable = (s) => s !== null && typeof s === "object" && typeof s.seq === "number" && s.seq <= seq && "state" in s && intactSnapshot(s);
    const states = new Map();
    reducers.forEach((r, i) => {
      const s = [stored[tables + i], bases[tables + i]].find(usable);
      states.set(r.name, s ? { state: s.state, seq: s.seq, failure: null } : { state: r.initial(), seq: 0, failure: null });
    });
    const from = Math.min(seq, ...[...states.values()].map((s) => s.seq));
    const onEvents = (text) => {
      const events = JSON.parse(text);
      for (const r of reducers) {
        const s = states.get(r.name);
        if (!s.failure) Object.assign(s, foldEvents(r.apply, s.state, s.seq, events, this.#p.schemas));
      }
    };
    const view = await pastTables(this.#core, seq, from, stored.slice(0, tables), bases.slice(0, tables), reducers.length === 0 ? undefined : onEvents);
    return { view, states };
  }

  /** Writes snapshots of every projection now (they are also written as the log grows). */
  async snapshot() {
    if (this.#p.tableNames.size === 0 && this.#p.reducers.size === 0) return;
    while (this.#snapshotting) await this.#snapshotting;
    // The bases: in a synced log, the outbox may yet be rejected.
    const reducers = [...this.#p.reducers.values()].filter((r) => !r.base.failure);
    // The reducers' keys come after the tables'.
    const keys = this.#core.snapshotKeys(...reducerIds(reducers), false);
    this.#snapshotting = writeSnapshots(this.#core, keys.slice(keys.length - reducers.length), reducers.map((r) => sealSnapshot(r.base.seq, r.base.state)))
      .then((seq) => {
        this.#snapshotAt = seq;
        if (this.#setId) this.sync?.share(this.#setId, seq, () => this.#snapshotSet());
      })
      .finally(() => {
        this.#snapshotting = null;
      });
    return this.#snapshotting;
  }

  // Every projection's base for the server, or undefined when a reducer's state is not plain
  // JSON data (or failed): then new devices fold from the events.
  #snapshotSet() {
    const reducers = [...this.#p.reducers.values()];
    const at = reducers[0]?.base.seq ?? 0;
    const states = [];
    for (const r of reducers) {
      const text = r.base.failure || r.base.seq !== at ? null : plainJson(r.base.state);
      if (text === null) return undefined;
      states.push(text);
    }
    return this.#core.snapshotSet(this.#p.schemas.salt(reducers), ...reducerIds(reducers), states, at);
  }

  #maybeSnapshot(seq) {
    if (this.#snapshotDue || this.#snapshotting || seq - this.#snapshotAt < this.#snapshotEvery) return;
    // Right after the fold that crossed the mark, not inside it.
    this.#snapshotDue = true;
    setTimeout(() => {
      this.#snapshotDue = false;
      if (this.closed) return;
      this.snapshot().catch((e) => this.closed || console.warn("logfold: snapshot failed:", e));
    }, 0);
  }

  // retention: the sync leader drops the confirmed history neither `keepEvents` nor `keepDays`
  // keeps, when a round leaves nothing pending (the tables are at the confirmed head, so their
  // snapshots can be written) and the log grew `snapshotEvery` events (at most 10,000) since
  // it last looked.
  async #retain(status) {
    const keep = this.#retention;
    const confirmed = status.confirmed;
    if (this.#retaining || !status.leader || status.state !== "online" || status.pending > 0) return;
    if (confirmed < this.#retainedAt + Math.min(this.#snapshotEvery, keep.keepEvents ?? Infinity, 10_000)) return;
    this.#retaining = true;
    this.#retainedAt = confirmed;
    try {
      let before = keep.keepEvents === undefined ? confirmed + 1 : confirmed - keep.keepEvents + 1;
      if (keep.keepDays !== undefined) before = Math.min(before, await this.#firstSince(Date.now() - keep.keepDays * DAY_MS, confirmed));
      if (before > this.start) await this.truncateBefore(before);
    } catch (e) {
      if (!this.closed) console.warn("logfold: retention could not drop history:", e);
    } finally {
      this.#retaining = false;
    }
  }

  // The first confirmed position appended at `time` or later (confirmed + 1 if none): a binary
  // search over the events' times, which follow the server's order closely but not exactly
  // (they are the appending devices' clocks).
  async #firstSince(time, confirmed) {
    let [lo, hi] = [this.start, confirmed + 1];
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const [e] = await this.read({ after: mid - 1, limit: 1 });
      if (!e || e.time >= time) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  // Without `after`, reads start at the first position kept (see truncateBefore).
  async read(options) {
    const after = position(options?.after, "after", -1);
    const limit = position(options?.limit, "limit", 1000);
    const schemas = this.#p.schemas;
    return JSON.parse(await this.#core.read(after, limit)).map((e) => schemas.read(e));
  }

  /** The first position this log keeps: 1, unless {@link truncateBefore} dropped some. */
  get start() {
    return this.#core.start;
  }

  /**
   * Drops the confirmed history before `seq` from this browser (a synced log only: the server
   * keeps it all), whole segments at a time and never past the snapshots it writes first, so
   * every projection opens from one. Resolves to `{ start, dropped }`.
   */
  async truncateBefore(seq) {
    if (!(Number.isSafeInteger(seq) && seq >= 1)) throw invalidArgument("seq", "must be a positive integer");
    if (!this.sync) throw invalidArgument("truncateBefore", "only a synced log drops history (the server keeps it); this log has no other copy");
    await this.snapshot();
    let upto = Infinity;
    if (this.#p.tableNames.size > 0) upto = this.#snapshotAt;
    for (const [name, r] of this.#p.reducers) {
      if (r.base.failure) throw invalidArgument("truncateBefore", `reducer ${name} failed, so it has no snapshot to fold on from`);
      upto = Math.min(upto, r.base.seq);
    }
    // The projections' states where the cut ends are kept as their base snapshots, written
    // with the cut: time travel works from the first position kept on, however far their
    // snapshots move. If segments were merged meanwhile, the cut ends elsewhere: again.
    // A cut with no base snapshots: where another tab cut further, or a log cut without them.
    const plainCut = (cut) => this.#core.truncateBefore(cut + 1, 0, undefined, [], new Uint32Array(), []);
    for (let attempt = 0; ; attempt++) {
      const cut = await this.#core.cutPoint(Math.min(seq, upto + 1));
      if (cut < this.start) return plainCut(cut);
      let past;
      try {
        past = await this.#past(cut);
      } catch (e) {
        // A log cut by a release before base snapshots has no state below its snapshots: it
        // cuts without one, as that release did (time travel below them stays TRUNCATED).
        if (e?.code !== "TRUNCATED") throw e;
        return plainCut(cut);
      }
      const { view, states } = past;
      const reducers = [...this.#p.reducers.values()];
      for (const r of reducers) {
        const failure = states.get(r.name).failure;
        if (failure) throw invalidArgument("truncateBefore", `reducer ${r.name} fails at position ${failure.seq}, before the cut, so it has no state to keep there`);
      }
      const values = reducers.map((r) => sealSnapshot(cut, states.get(r.name).state));
      const report = await this.#core.truncateBefore(cut + 1, cut, view, ...reducerIds(reducers), values);
      if (report.dropped > 0 || attempt === 2) return report;
    }
  }

  async *events(options) {
    // Without `after`, the first page starts at the first position kept, however far another
    // tab has cut meanwhile.
    let after = options?.after === undefined ? undefined : position(options.after, "after", 0);
    for (;;) {
      const page = await this.read(after === undefined ? { limit: 1000 } : { after, limit: 1000 });
      if (page.length === 0) return;
      yield* page;
      after = page[page.length - 1].seq;
    }
  }

  /** Batches the sync server rejected, kept until dismissed: `[{ id, batch, events, reason, message, currentVersion, details, time }]`. */
  async rejections() {
    return storedRejections(this.#core);
  }

  /** Forgets a rejection; resolves to whether there was one. */
  dismissRejection(id) {
    if (!Number.isSafeInteger(id)) return Promise.reject(invalidArgument("id", "must be a rejection's id"));
    return this.#core.dismissRejection(id);
  }

  version(stream) {
    if (typeof stream !== "string") return Promise.reject(invalidArgument("stream", "must be a string"));
    return this.#core.version(stream);
  }

  compact() {
    return this.#core.compact();
  }

  stats() {
    return this.#core.stats();
  }

  async close() {
    if (this.closed) return;
    clearInterval(this.#riskTimer);
    // Appends of this tick are not in wasm yet: send them, so close() waits for them too.
    const flushed = this.#flush();
    globalThis.document?.removeEventListener("visibilitychange", this.#onVisible);
    this.sync?.close();
    await flushed.catch(() => {});
    if (this.#p.seq > this.#snapshotAt) await this.snapshot().catch((e) => console.warn("logfold: snapshot at close failed:", e));
    if (this.#markTimer !== null) this.#markNow();
    await this.#core.close();
    this.#channel?.close();
    this.#channel = null;
    await flushed;
  }
}

export const Logfold = {
  async open(options) {
    await load();
    const { name, durability = "strict", onClose, projections, onProgress, snapshotEvery = 10_000, sync, onStorageRisk, storageRiskAfter = DAY_MS, verify = "background", onCorrupt, schemas, upcast, unknownEvents, retention } = options ?? {};
    if (typeof name !== "string" || name === "") throw invalidArgument("name", "must be a non-empty string");
    if (onClose !== undefined && typeof onClose !== "function") throw invalidArgument("onClose", "must be a function");
    if (onProgress !== undefined && typeof onProgress !== "function") throw invalidArgument("onProgress", "must be a function");
    if (onStorageRisk !== undefined && typeof onStorageRisk !== "function") throw invalidArgument("onStorageRisk", "must be a function");
    if (verify !== "background" && verify !== "full") throw invalidArgument("verify", 'must be "background" or "full"');
    if (onCorrupt !== undefined && typeof onCorrupt !== "function") throw invalidArgument("onCorrupt", "must be a function");
    if (!(Number.isFinite(storageRiskAfter) && storageRiskAfter >= 0)) throw invalidArgument("storageRiskAfter", "must be a non-negative number of milliseconds");
    if (!(snapshotEvery === Infinity || (Number.isSafeInteger(snapshotEvery) && snapshotEvery > 0))) {
      throw invalidArgument("snapshotEvery", "must be a positive integer (events) or Infinity");
    }
    const syncing = syncOptions(sync, invalidArgument);
    checkRetention(retention, syncing);
    const { tables, reducers } = splitProjections(projections);
    const projector = new Projector(Object.keys(tables), reducers, new Schemas(schemas, upcast, unknownEvents));
    projector.onProgress = onProgress;
    // Read before the log's head: marks are written after commits, so every position up to
    // this mark was stored before open looks, however many tabs append meanwhile.
    const mark = readMark(name);
    // A new synced log starts from the server's snapshot set, if it has one for this app.
    let setId, boot;
    if (syncing && (Object.keys(tables).length > 0 || reducers.length > 0)) {
      setId = snapshotSetId(JSON.stringify(tables), ...reducerIds(reducers), projector.schemas.salt(reducers));
      if (syncing.snapshots.boot && (await mayBeNew(name))) {
        boot = await fetchSnapshotSet(syncing, setId);
      }
    }
    const openCore = () =>
      openLog(
        name,
        durability,
        onClose,
        JSON.stringify(tables),
        ...reducerIds(reducers),
        projector.hooks(),
        syncing !== undefined,
        syncing?.maxPushBytes ?? 0,
        boot?.bytes,
        boot?.logId,
      );
    let core;
    for (let attempt = 0; ; attempt++) {
      try {
        core = await openCore();
        break;
      } catch (e) {
        // A projection needs history this browser dropped (truncateBefore, or a start from a
        // snapshot set): the server keeps it all, so it is pulled back, once online.
        if (e?.code !== "TRUNCATED" || !syncing || attempt === 3) throw e;
        if (!(await pullBack(syncing, e.details, (logId, pages) => backfill(name, logId, pages)))) throw e;
        boot = undefined;
      }
    }
    // A history written without sync moved to the outbox: the confirmed log starts again.
    const migrated = core.stats().eventsMigrated > 0;
    if (migrated) writeMark(name, null);
    // A tab that just destroyed the log removed the mark, but this tab's localStorage may
    // hear of it a moment later: look again before calling it a loss.
    if (!migrated && mark > core.head && (await markAfter(name, 100)) !== 0) {
      await core.close();
      throw lostError(core.head, mark);
    }
    if (verify === "full") {
      try {
        await core.verifyRest();
      } catch (e) {
        await core.close();
        throw e;
      }
    }
    if (syncing) {
      // One local log syncs with one server log: another would merge two logs into one.
      const bound = await claimMark(core, "syncLog", syncing.log);
      if (bound !== syncing.log) {
        await core.close();
        throw invalidArgument("sync.log", `this log syncs with server log "${bound}", not "${syncing.log}": open another local log name for it`);
      }
    }
    writeMark(name, core.head);
    return new Log(core, projector, snapshotEvery, syncing, { onStorageRisk, after: storageRiskAfter }, onCorrupt, setId, retention);
  },

  async destroy(name) {
    await load();
    if (typeof name !== "string" || name === "") throw invalidArgument("name", "must be a non-empty string");
    await deleteDatabase(name);
    writeMark(name, null);
  },

  async repair(name) {
    await load();
    if (typeof name !== "string" || name === "") throw invalidArgument("name", "must be a non-empty string");
    const report = await repair(name);
    const mark = readMark(name);
    if (report.dropped === null && mark > report.head) report.dropped = { from: report.head + 1, to: mark };
    writeMark(name, null);
    writeMark(name, report.head);
    return report;
  },
};
