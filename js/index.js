// logfold's JavaScript entry point: a thin layer over the wasm core. It checks what only JS can
// see (functions, BigInt, cycles, Map/Set in data), sends each batch as one JSON string, and
// turns the core's JSON answers back into objects.
import init, { LogCore, setErrorClass, destroyLog, repairLog } from "./logfold.js";

/** Every error logfold throws: a real Error with a stable `code` and `details`. */
export class LogfoldError extends Error {
  constructor(code, message, details) {
    super(message);
    this.name = "LogfoldError";
    this.code = code;
    this.details = details ?? {};
  }
}

let ready;
function load() {
  ready ??= init().then(() => setErrorClass(LogfoldError));
  return ready;
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
      if (proto !== Object.prototype && proto !== null) {
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
const markKey = (name) => `logfold:head:${name}`;

function readMark(name) {
  try {
    return Number(globalThis.localStorage?.getItem(markKey(name)) ?? 0) || 0;
  } catch {
    return 0;
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

function lostError(head, mark) {
  const reason = "positions the log once stored are gone: the browser discarded or reset this origin's IndexedDB (Chromium deletes it when it finds it damaged after a crash)";
  return new LogfoldError(
    "CORRUPT",
    `the log's head is ${head} but it had stored events up to ${mark}: ${reason}; see Logfold.repair`,
    { from: head + 1, to: mark, reason },
  );
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

  constructor(core) {
    this.#core = core;
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
    return new Promise((resolve, reject) => {
      if (this.#pending.push({ wire, streams, versions, single, resolve, reject }) === 1) {
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
        JSON.stringify(calls.flatMap((c) => c.wire)),
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
        meta: c.wire[j].meta ?? null,
        time: answer.time,
        origin,
        seq,
        offset: null,
      }));
      c.resolve(c.single ? events[0] : events);
    });
    if (stored) writeMark(this.name, this.#core.head);
  }

  async read(options) {
    const after = position(options?.after, "after", 0);
    const limit = position(options?.limit, "limit", 1000);
    return JSON.parse(await this.#core.read(after, limit));
  }

  async *events(options) {
    let after = position(options?.after, "after", 0);
    for (;;) {
      const page = await this.read({ after, limit: 1000 });
      if (page.length === 0) return;
      yield* page;
      after = page[page.length - 1].seq;
    }
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
    // Appends of this tick are not in wasm yet: send them, so close() waits for them too.
    const flushed = this.#flush();
    await this.#core.close();
    await flushed;
  }
}

export const Logfold = {
  async open(options) {
    await load();
    const { name, durability = "strict", onClose } = options ?? {};
    if (typeof name !== "string" || name === "") throw invalidArgument("name", "must be a non-empty string");
    if (onClose !== undefined && typeof onClose !== "function") throw invalidArgument("onClose", "must be a function");
    // Read before the log's head: marks are written after commits, so every position up to
    // this mark was stored before open looks, however many tabs append meanwhile.
    const mark = readMark(name);
    const core = await LogCore.open(name, durability, onClose);
    if (mark > core.head) {
      await core.close();
      throw lostError(core.head, mark);
    }
    writeMark(name, core.head);
    return new Log(core);
  },

  async destroy(name) {
    await load();
    if (typeof name !== "string" || name === "") throw invalidArgument("name", "must be a non-empty string");
    await destroyLog(name);
    writeMark(name, null);
  },

  async repair(name) {
    await load();
    if (typeof name !== "string" || name === "") throw invalidArgument("name", "must be a non-empty string");
    const report = await repairLog(name);
    const mark = readMark(name);
    if (report.dropped === null && mark > report.head) report.dropped = { from: report.head + 1, to: mark };
    writeMark(name, null);
    writeMark(name, report.head);
    return report;
  },
};
