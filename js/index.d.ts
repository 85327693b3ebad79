/**
 * logfold: an offline-first event store for the web. An append-only event log in IndexedDB
 * (the source of truth), written and read through WebAssembly, folded into state tables that
 * are read synchronously, and optionally synced with a `logfold-server`.
 *
 * Start with {@link Logfold.open}; the {@link Log} it returns appends, reads, folds and syncs.
 * Every failure is a {@link LogfoldError} with a stable {@link ErrorCode}.
 *
 * Examples write `// → value` after an expression to show what it evaluates to (the package's
 * tests run every example and check each of these).
 *
 * @example
 * ```js
 * import { Logfold } from "logfold";
 *
 * const log = await Logfold.open({
 *   name: "todos",
 *   projections: { todos: { on: { Added: { set: { title: "data.title", done: false } }, Done: { set: { done: true } } } } },
 * });
 * await log.append({ stream: "todo-1", type: "Added", data: { title: "Buy milk" } });
 * await log.append({ stream: "todo-1", type: "Done" });
 * log.table("todos").get("todo-1"); // → { title: "Buy milk", done: true }
 * ```
 *
 * @module logfold
 */

/**
 * A plain JSON value: what `data` and `meta` may hold. Anything else (functions, `BigInt`,
 * `NaN`, ±`Infinity`, cycles, `undefined` inside arrays, `Map`, `Set`, `Date` and other class
 * instances) is refused at append with `INVALID_EVENT`. `undefined` object properties are
 * dropped, as `JSON.stringify` does.
 */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json | undefined };

/**
 * How hard a commit works before `append` resolves. `"strict"` (the default): after the browser
 * flushed the write to disk, so it survives an OS crash or power loss. `"relaxed"`: once the
 * write is handed to the OS, which survives a browser crash but not an OS crash. A batch is never
 * half-stored in either mode.
 */
export type Durability = "strict" | "relaxed";

/** The stable codes of {@link LogfoldError}; {@link ErrorDetails} says what each carries. */
export type ErrorCode =
  | "INVALID_EVENT"
  | "INVALID_ARGUMENT"
  | "CONFLICT"
  | "QUOTA_EXCEEDED"
  | "CORRUPT"
  | "TRUNCATED"
  | "UNSUPPORTED_FORMAT"
  | "CLOSED"
  | "STORAGE"
  | "INVALID_PROJECTION"
  | "PROJECTION_FAILED"
  | "UNAUTHORIZED"
  | "FORBIDDEN"
  | "NETWORK"
  | "SERVER"
  | "FENCED"
  | "SYNC_PROTOCOL"
  | "DIVERGED"
  | "TIMEOUT";

/** The `details` each error code carries, by code. */
export interface ErrorDetails {
  /** An event breaks a rule (see {@link Json} and {@link NewEvent}). */
  INVALID_EVENT: {
    /** The event's index in the batch. */
    index: number;
    /** The path of the fault, e.g. `data.items[3]` or `stream`. */
    field: string;
    /** Why it is refused. */
    reason: string;
  };
  /** An option or argument does not fit. */
  INVALID_ARGUMENT: {
    /** Its name, e.g. `expectedVersion` or `sync.log`. */
    argument: string;
  };
  /** A stream is not at the expected version. */
  CONFLICT: {
    /** The stream. */
    stream: string;
    /** The version the call expected. */
    expected: number | "none";
    /** The stream's version. */
    actual: number;
  };
  /** The browser refused to store more. */
  QUOTA_EXCEEDED: {
    /** The DOMException's name. */
    name: string;
  };
  /** A stored segment is damaged, or positions the log once stored are gone. See {@link Logfold.repair}. */
  CORRUPT: {
    /** The first position affected (0 when a sync record is damaged, not a segment). */
    from: number;
    /** The last position affected (0 when a sync record is damaged). */
    to: number;
    /** What was wrong. */
    reason: string;
    /** A damaged sync record's store: `"outbox"`, `"rejections"` or `"meta"`. */
    store?: "outbox" | "rejections" | "meta";
    /** A damaged sync record's key: its batch number (0 when not one record's). */
    key?: number;
  };
  /** The positions asked for were dropped by {@link Log.truncateBefore}. */
  TRUNCATED: {
    /** The first position the log keeps. */
    start: number;
    /** The first position asked for (by a read, `tablesAt`, or a projection with no snapshot after the cut). */
    needed: number;
  };
  /** The log was written by a newer logfold. */
  UNSUPPORTED_FORMAT: {
    /** The segment format it found. */
    format: number;
  };
  /** The log is closed. */
  CLOSED: {
    /** By `close()`, by another tab deleting or upgrading it, or by another tab making it synced. */
    reason: "closed" | "versionchange" | "synced" | "truncated";
  };
  /** Any other IndexedDB failure. */
  STORAGE: {
    /** The DOMException's name; `"NotSupportedError"` where there is no IndexedDB (Node, SSR). */
    name: string;
  };
  /** A projection definition is not valid. */
  INVALID_PROJECTION: {
    /** The projection's name. */
    projection: string;
    /** Where the problem is, e.g. `projections.accounts.on.Deposited.add.balance`. */
    path: string;
  };
  /** A JS reducer's `apply` threw; read with {@link Log.state}. */
  PROJECTION_FAILED: {
    /** The reducer's name. */
    projection: string;
    /** The position of the event it threw on. */
    seq: number;
    /** That event's type. */
    type: string;
    /** What `apply` threw. */
    error: unknown;
  };
  /** The sync server refused the token (after one `getToken` retry). */
  UNAUTHORIZED: {
    /** The HTTP status. */
    status: 401;
  };
  /** The sync server refused the token's scope for this log. */
  FORBIDDEN: {
    /** The HTTP status. */
    status: 403;
  };
  /** The sync server could not be reached. */
  NETWORK: {};
  /** The sync server answered with an error. */
  SERVER: {
    /** The HTTP status. */
    status: number;
    /** The server's error code, when it gave one. */
    code?: string;
    /** How long the server asked to wait (its `Retry-After`), in ms, when it said. */
    retryAfterMs?: number;
  };
  /** A sync step of a tab that is no longer the sync leader (it steps down). */
  FENCED: {};
  /** A sync server answer that does not fit the log. */
  SYNC_PROTOCOL: {};
  /** The server lost confirmed events (`confirmed`, `serverHead`), or holds another log under this name (`expected`, `actual` identities); from `settled`, the `status`. */
  DIVERGED: {
    /** This log's confirmed head. */
    confirmed?: number;
    /** The server log's head, below it. */
    serverHead?: number;
    /** The server log identity this log confirmed from. */
    expected?: string;
    /** The identity the server has now. */
    actual?: string;
    /** The sync status (from {@link Sync.settled}). */
    status?: SyncStatus;
  };
  /** {@link Sync.settled} waited longer than its `timeout`. */
  TIMEOUT: {
    /** The sync status then. */
    status: SyncStatus;
  };
}

/**
 * Every error logfold throws. `code` is stable; `message` is for people. Declared as an
 * interface plus a constructor (not a generic class) so that `err instanceof LogfoldError`
 * narrows to a typed error instead of `LogfoldError<any>`.
 *
 * A refused call changes nothing: no event of its batch is stored and stream versions are
 * untouched.
 *
 * @example
 * ```js
 * import { Logfold, LogfoldError } from "logfold";
 *
 * const log = await Logfold.open({ name: "ledger" });
 * await log.append({ stream: "acct-1", type: "Opened" }, { expectedVersion: "none" });
 * try {
 *   await log.append({ stream: "acct-1", type: "Opened" }, { expectedVersion: "none" });
 * } catch (e) {
 *   e instanceof LogfoldError; // → true
 *   e.code; // → "CONFLICT"
 *   e.details; // → { stream: "acct-1", expected: "none", actual: 1 }
 * }
 * await log.version("acct-1"); // → 1
 * ```
 *
 * @example
 * Data must be plain JSON; the error names the event and the path:
 * ```js
 * const log = await Logfold.open({ name: "ledger" });
 * const error = await log.append([{ stream: "a", type: "T" }, { stream: "a", type: "T", data: { at: new Date() } }]).catch((e) => e);
 * error.code; // → "INVALID_EVENT"
 * error.details.index; // → 1
 * error.details.field; // → "data.at"
 * log.head; // → 0
 * ```
 */
export interface LogfoldError<C extends ErrorCode = ErrorCode> extends Error {
  /** Always `"LogfoldError"`. */
  readonly name: "LogfoldError";
  /** What went wrong, stable across versions. */
  readonly code: C;
  /** Facts about the failure; what they are depends on `code` (see {@link ErrorDetails}). */
  readonly details: ErrorDetails[C];
}

/** The constructor of {@link LogfoldError}: use it with `instanceof`. */
export declare const LogfoldError: {
  /** Makes an error as logfold does (for tests and wrappers). */
  new <C extends ErrorCode>(code: C, message: string, details: ErrorDetails[C]): LogfoldError<C>;
  /** What `instanceof` checks: one type per code, so that testing `code` narrows `details`. */
  readonly prototype: { [C in ErrorCode]: LogfoldError<C> }[ErrorCode];
};

/**
 * An event as the app appends it. `stream` and `type` must be non-empty strings of at most 256
 * bytes without control characters; an event may be at most 1 MiB (names, data and meta).
 */
export interface NewEvent<D extends Json = Json> {
  /** The stream (aggregate) it belongs to, e.g. `account-42`. Non-empty. */
  stream: string;
  /** Its type, e.g. `Deposited`. Non-empty. */
  type: string;
  /** The payload: plain JSON. Omitted is stored as `null`. */
  data?: D;
  /** Optional app metadata: plain JSON. */
  meta?: Json;
}

/** An event as stored in the log. */
export interface StoredEvent<D extends Json = Json> {
  /** 128-bit id made by this client (UUIDv7 text, time-ordered); the idempotency key for sync. */
  id: string;
  /** The stream it belongs to. */
  stream: string;
  /** 1-based position in its stream. With sync, provisional while pending. */
  version: number;
  /** Its type. */
  type: string;
  /** The payload as appended (`null` when omitted), brought up to this app's schema by its upcasters when older. */
  data: D;
  /** The app metadata as appended, or `null`. */
  meta: Json | null;
  /** The schema of `data` (see {@link OpenOptions.schemas}): 1 unless the app that wrote it named one. Reducers see it on events of a type with a schema. */
  schema?: number;
  /** Milliseconds since the Unix epoch when it was appended. */
  time: number;
  /** The client id that appended it (see {@link Log.clientId}). */
  origin: string;
  /** Position in the log: the order tables fold in. With sync, provisional while pending. */
  seq: number;
  /** The sync server's offset (equal to `seq`) once confirmed; `null` while pending, and without sync. */
  offset: number | null;
}

/** A stream's expected version: its exact version, or `"none"` for a stream with no events yet. */
export type ExpectedVersion = number | "none";

/** Optimistic concurrency for {@link Log.append}: give one of the two, or neither. */
export interface AppendOptions {
  /** Checked against the stream's version; only for a batch with one stream. */
  expectedVersion?: ExpectedVersion;
  /** Per-stream expectations, for batches across several streams. */
  expectedVersions?: Record<string, ExpectedVersion>;
}

/**
 * Where an operation takes a value: an event field (`"stream"`, `"type"`, `"id"`, `"seq"`,
 * `"version"`, `"time"`, `"origin"`, `"data"`, `"data.a.b"`, `"meta"`, `"meta.a"`), or a
 * constant: any other string, a number, boolean or null, or `{ value: anything }` (e.g.
 * `{ value: "stream" }` for the literal string).
 */
export type Source = string | number | boolean | null | {
  /** A constant, taken as it is. */
  value: Json;
};

/**
 * One change to one row. `delete: true` excludes the others. An operation whose source field
 * is missing, whose number is not a number, or whose target field has another type changes
 * nothing (it is checked whole first) and is recorded in {@link Table.errors}.
 */
export interface Operation {
  /** The row's key (default: the table's `key`). */
  row?: Source;
  /** Fields set from sources. */
  set?: Record<string, Source>;
  /** Numbers added to fields; a missing row or field starts from 0. */
  add?: Record<string, Source>;
  /** Numbers subtracted from fields. */
  subtract?: Record<string, Source>;
  /** Values appended to list fields (a missing one starts empty). */
  append?: Record<string, Source>;
  /** Fields increased by one. */
  count?: string | string[];
  /** Removes the row. */
  delete?: true;
}

/**
 * A declarative table, folded in wasm (the fast path): per event type, the operations on its
 * rows. Numbers are f64, exact for integers below 2^53 (keep money in cents). A definition that
 * is not valid fails {@link Logfold.open} with `INVALID_PROJECTION`.
 *
 * @example
 * ```js
 * const log = await Logfold.open({
 *   name: "ledger",
 *   projections: {
 *     accounts: {
 *       key: "data.account", // the row an operation changes, unless it names its own `row`
 *       on: {
 *         Opened: { set: { owner: "data.owner", balance: 0 } },
 *         Deposited: { add: { balance: "data.amount" }, count: "movements" },
 *         Transferred: [
 *           { row: "data.from", subtract: { balance: "data.amount" } },
 *           { row: "data.to", add: { balance: "data.amount" } },
 *         ],
 *         Closed: { delete: true },
 *       },
 *     },
 *   },
 * });
 * await log.append([
 *   { stream: "acct-1", type: "Opened", data: { account: "acct-1", owner: "Ada" } },
 *   { stream: "acct-2", type: "Opened", data: { account: "acct-2", owner: "Bob" } },
 *   { stream: "acct-1", type: "Deposited", data: { account: "acct-1", amount: 1250 } },
 *   { stream: "acct-1", type: "Transferred", data: { from: "acct-1", to: "acct-2", amount: 250 } },
 * ]);
 * log.table("accounts").get("acct-1"); // → { owner: "Ada", balance: 1000, movements: 1 }
 * log.table("accounts").get("acct-2"); // → { owner: "Bob", balance: 250 }
 * await log.append({ stream: "acct-2", type: "Closed", data: { account: "acct-2" } });
 * log.table("accounts").get("acct-2"); // → undefined
 * ```
 */
export interface TableDefinition {
  /** The row key when an operation names no `row` (default `"stream"`). */
  key?: Source;
  /** The operations to run per event type; event types not listed change nothing. */
  on: Record<string, Operation | Operation[]>;
}

/**
 * A JS reducer, for state a table cannot express: `apply` returns the new state and must not
 * change `state` in place (a synced log keeps earlier states). A reducer whose `apply` throws is
 * marked failed: {@link Log.state} throws `PROJECTION_FAILED`, and the log and the other
 * projections go on.
 *
 * @example
 * ```js
 * const log = await Logfold.open({
 *   name: "ledger",
 *   projections: {
 *     total: {
 *       version: 1, // your number: change it when `apply` changes, and the state is rebuilt
 *       init: 0,
 *       apply: (total, e) => (e.type === "Deposited" ? total + e.data.amount : total),
 *     },
 *   },
 * });
 * await log.append([
 *   { stream: "acct-1", type: "Deposited", data: { amount: 1250 } },
 *   { stream: "acct-2", type: "Deposited", data: { amount: 250 } },
 * ]);
 * log.state("total"); // → 1500
 * ```
 */
export interface ReducerDefinition<S = unknown> {
  /** Your number for this reducer's logic: change it to rebuild from the log. */
  version: number;
  /** The state before any event, or a function returning it. */
  init: S | (() => S);
  /** Returns the state after `event`; must not change `state`. */
  apply(state: S, event: StoredEvent): S;
}

/** A projection: a declarative table or a JS reducer. */
export type ProjectionDefinition = TableDefinition | ReducerDefinition<any>;

/** A row of a table: its fields as set by the operations. */
export type Row = { [field: string]: Json };
/** A row key. Numbers order before strings, as in IndexedDB. */
export type Key = string | number;

/** Which rows {@link Table.scan} returns, in key order. */
export interface ScanOptions {
  /** The first key (inclusive). */
  from?: Key;
  /** The key to stop before (exclusive). */
  to?: Key;
  /** Only string keys starting with this. */
  prefix?: string;
  /** At most this many rows. */
  limit?: number;
  /** Highest key first. */
  reverse?: boolean;
  /** Only rows whose fields equal these values. */
  where?: Row;
}

/**
 * A declarative table's rows, kept up to date in memory (reads are synchronous). Keys order
 * numbers before strings.
 *
 * @example
 * ```js
 * const log = await Logfold.open({
 *   name: "shop",
 *   projections: { items: { on: { Added: { set: { name: "data.name", shelf: "data.shelf" } } } } },
 * });
 * await log.append([
 *   { stream: "item-3", type: "Added", data: { name: "pear", shelf: "B" } },
 *   { stream: "item-1", type: "Added", data: { name: "apple", shelf: "A" } },
 *   { stream: "item-2", type: "Added", data: { name: "fig", shelf: "B" } },
 *   { stream: "tool-1", type: "Added", data: { name: "knife", shelf: "C" } },
 * ]);
 * const items = log.table("items");
 * items.get("item-1"); // → { name: "apple", shelf: "A" }
 * items.get("item-9"); // → undefined
 * items.count(); // → 4
 * items.scan({ prefix: "item-", limit: 2 }).map((r) => r.key); // → ["item-1", "item-2"]
 * items.scan({ from: "item-2", to: "tool-1" }).map((r) => r.key); // → ["item-2", "item-3"]
 * items.scan({ reverse: true, limit: 1 }); // → [{ key: "tool-1", row: { name: "knife", shelf: "C" } }]
 * items.filter({ shelf: "B" }).map((r) => r.row.name); // → ["fig", "pear"]
 * ```
 */
export interface Table {
  /** The projection's name. */
  readonly name: string;
  /** The row with `key`, or `undefined`. */
  get(key: Key): Row | undefined;
  /** Rows in key order (see {@link ScanOptions}). */
  scan(options?: ScanOptions): {
    /** The row's key. */
    key: Key;
    /** The row's fields. */
    row: Row;
  }[];
  /** Rows whose fields equal those of `where`, in key order. */
  filter(where: Row, options?: Omit<ScanOptions, "where">): {
    /** The row's key. */
    key: Key;
    /** The row's fields. */
    row: Row;
  }[];
  /** How many rows it has. */
  count(): number;
  /**
   * Events an operation could not apply (missing field, wrong type): the row was left as it was.
   *
   * @example
   * ```js
   * const log = await Logfold.open({
   *   name: "ledger",
   *   projections: { balances: { on: { Deposited: { add: { balance: "data.amount" } } } } },
   * });
   * await log.append({ stream: "acct-1", type: "Deposited", data: { amount: "ten" } });
   * log.table("balances").get("acct-1"); // → undefined
   * const { count, errors } = log.table("balances").errors();
   * count; // → 1
   * errors[0].seq; // → 1
   * errors[0].type; // → "Deposited"
   * ```
   */
  errors(): ProjectionErrors;
}

/** What a projection could not apply. */
export interface ProjectionErrors {
  /** How many in all (the list keeps the latest 100). */
  count: number;
  /** The latest ones. */
  errors: {
    /** The event's position. */
    seq: number;
    /** The event's type. */
    type: string;
    /** What was wrong. */
    message: string;
  }[];
  /** For reducers: whether it stopped at an event that threw. */
  failed?: boolean;
}

/** What a subscriber of a table hears: the rows that changed (`row` undefined when deleted). */
export interface TableChange {
  /** The log's position after the change. */
  seq: number;
  /** Each changed row once. */
  changes: {
    /** The row's key. */
    key: Key;
    /** Its new fields, or `undefined` when it was deleted. */
    row: Row | undefined;
  }[];
}

/** What a subscriber of a reducer hears: its new state. */
export interface StateChange<S = unknown> {
  /** The log's position after the change. */
  seq: number;
  /** The reducer's new state. */
  state: S;
}

/** Read-only projections as of a past position, from {@link Log.tablesAt}. */
export interface PastTables {
  /** The position they were folded up to. */
  readonly seq: number;
  /** A declarative table as it was at `seq`. */
  table(name: string): Table;
  /** A reducer's state as it was at `seq`. */
  state<S = unknown>(name: string): S;
}

/** What {@link Log.truncateBefore} did. */
export interface TruncateReport {
  /** The first position the log keeps now. */
  start: number;
  /** How many positions this call dropped. */
  dropped: number;
}

/** Options of {@link Logfold.open}. */
export interface OpenOptions {
  /** The log's name; one IndexedDB database (`logfold:<name>`) per name and origin. */
  name: string;
  /** `"strict"` (default): an acknowledged append survives an OS crash. */
  durability?: Durability;
  /**
   * Called once when the log closes by itself: `"versionchange"` when another tab deletes or
   * upgrades its database (the log closes at once rather than block it); `"synced"` when another
   * tab opened it with `sync` while this one had it open without (this tab's next write closes it,
   * writing nothing); `"truncated"` when another tab dropped history ({@link Log.truncateBefore})
   * that this tab had not folded yet (reopen it: it starts from the snapshots).
   */
  onClose?: (reason: "versionchange" | "synced" | "truncated") => void;
  /** Tables and reducers folded from the log, by name. */
  projections?: Record<string, ProjectionDefinition>;
  /** Progress of folding the log at open (a rebuild without a snapshot reports many). */
  onProgress?: (progress: { done: number; total: number }) => void;
  /** Write projection snapshots every this many events (default 10,000), and at close. */
  snapshotEvery?: number;
  /** Sync with a logfold server. Once a log has synced, its appends wait in the outbox until pushed. */
  sync?: SyncOptions;
  /**
   * Called when {@link StorageReport.atRisk} changes: events only this browser has are older
   * than `storageRiskAfter` and the origin's storage is not persisted, so the browser may evict
   * them (Safari does after 7 days without a visit). Checked at open, every minute, and by
   * {@link Log.storage} and {@link Log.persist}.
   */
  onStorageRisk?: (report: StorageReport) => void;
  /** How old an unsynced event may get before it counts as at risk, in ms (default a day). */
  storageRiskAfter?: number;
  /**
   * `"background"` (default): `open` verifies only the segments it reads (from the oldest
   * snapshot or stream-version checkpoint it needs to the head) and checks the rest after it
   * returns, so its time does not grow with the log; damage found then goes to `onCorrupt` and
   * {@link Log.verified}. `"full"`: `open` checks every segment first and throws `CORRUPT`.
   */
  verify?: "background" | "full";
  /**
   * The schema number this app writes per event type (default 1). Each appended event of a
   * listed type carries it (as `meta.$schema`, which `read` shows as `schema` and takes out of
   * `meta`; such an event's `meta` must be an object or absent).
   *
   * @example
   * ```js
   * import { Logfold } from "logfold";
   *
   * // Version 1 of an app wrote amounts in euros; version 2 writes cents.
   * const v1 = await Logfold.open({ name: "evolving" });
   * await v1.append({ stream: "a", type: "Paid", data: { euros: 3 } });
   * await v1.close();
   *
   * const v2 = await Logfold.open({
   *   name: "evolving",
   *   schemas: { Paid: 2 },
   *   upcast: { Paid: { 1: (d) => ({ cents: d.euros * 100 }) } },
   *   projections: { paid: { version: 1, init: 0, apply: (sum, e) => sum + e.data.cents } },
   * });
   * await v2.append({ stream: "a", type: "Paid", data: { cents: 50 } });
   * v2.state("paid"); // → 350
   * (await v2.read()).map((e) => [e.schema, e.data.cents]); // → [[2, 300], [2, 50]]
   * await v2.close();
   * ```
   */
  schemas?: Record<string, number>;
  /**
   * Per event type, per schema `n` below the one in `schemas`: `(data) => data` of schema
   * `n + 1`. They run before every projection (tables, reducers, `tablesAt`) and before
   * `read`, on stored, pulled and other tabs' events alike.
   */
  upcast?: Record<string, Record<number, (data: any) => Json>>;
  /**
   * What projections do with an event of a newer schema than this app knows (a newer version
   * of the app wrote it, in another tab or on another device): `"skip"` it (default), `"fail"`
   * (a table records it among its fold errors, a reducer stops with `PROJECTION_FAILED`), or a
   * function that returns the data to fold (at this app's schema) or `null` to skip it. It is
   * given `{ type, schema, data }` (reducers give the whole event). `read` returns such events as
   * they were written.
   */
  unknownEvents?: "skip" | "fail" | ((event: { type: string; schema: number; data: Json }) => Json | null);
  /**
   * Called with the error if the check after open finds damage (`CORRUPT`) or a segment of a
   * newer format (`UNSUPPORTED_FORMAT`); by default a console warning.
   */
  onCorrupt?: (error: LogfoldError) => void;
  /**
   * For a synced log: drop the confirmed history that neither the last `keepEvents` events nor
   * the events appended in the last `keepDays` days hold, as {@link Log.truncateBefore} does.
   * The sync leader tab looks when a round leaves nothing pending, once the log has grown
   * the least of `snapshotEvery`, `keepEvents` and 10,000 events since it last looked.
   * Times are the appending devices' clocks, so the day boundary is approximate. A log without
   * sync refuses it with `INVALID_ARGUMENT`.
   */
  retention?: {
    /** Keep at least the last this many confirmed events. */
    keepEvents?: number;
    /** Keep at least the events appended in the last this many days (fractions allowed). */
    keepDays?: number;
  };
}

/** What {@link Log.storage} reports. */
export interface StorageReport {
  /** Whether the browser keeps this origin's storage under pressure (`navigator.storage.persisted()`). */
  persisted: boolean;
  /** Bytes this origin uses, as the browser estimates (`null` where it cannot say). */
  usage: number | null;
  /** Bytes this origin may use (`null` where the browser cannot say). */
  quota: number | null;
  /** Events only this browser has: the outbox of a synced log, every event of a log without sync. */
  unsynced: number;
  /** The oldest of those events' `time`, or `null` when there are none. */
  oldestUnsynced: number | null;
  /** Storage is not persisted and an unsynced event is older than `storageRiskAfter`. */
  atRisk: boolean;
}

/**
 * How a log syncs with a `logfold-server` (see README, "Sync").
 *
 * @example
 * ```js
 * const log = await Logfold.open({
 *   name: "ledger",
 *   sync: {
 *     url: "https://sync.example.com", // its --cors-origin lists this page's origin
 *     log: "ledger",
 *     getToken: async () => "example-token", // yours: e.g. ask your backend; called again after a 401
 *     onRejected: (rejection) => console.warn(rejection.message),
 *   },
 * });
 * await log.append({ stream: "acct-1", type: "Opened" });
 * const status = await log.sync.settled();
 * status.pending; // → 0
 * status.confirmed; // → 1
 * (await log.read())[0].offset; // → 1
 * ```
 */
export interface SyncOptions {
  /** The sync server, e.g. `"https://sync.example.com"` or `location.origin`. */
  url: string;
  /** The log's name on the server. */
  log: string;
  /** A bearer token; or `getToken`, called first and again after a 401. */
  token?: string;
  /**
   * Returns a bearer token; called before the first request and again after a 401. It has
   * `timeout` ms: later, or failing with a `TypeError` (as `fetch` does offline), the round
   * fails as `NETWORK`; any other failure as `UNAUTHORIZED`. Sync retries with backoff and
   * calls it again, so one that waits on the user (a login) should give every call the same
   * pending promise.
   */
  getToken?: () => string | Promise<string>;
  /** Follow the live tail while online (default true); otherwise pull every 2 s. */
  live?: boolean;
  /** Every open tab hears of every rejected batch. */
  onRejected?: (rejection: Rejection) => void;
  /**
   * A rejection was wrong after all: a late attempt of the batch was accepted, its events are
   * confirmed and the record is gone. Called with the rejection's `id`, in every open tab.
   */
  onRetracted?: (id: number) => void;
  /**
   * The largest push request body (default 4 MiB, at least 64 KiB); keep it at most the
   * server's `--max-body`. A synced batch that could not be pushed in one body, or holds over
   * 10,000 events, is refused at append with `INVALID_ARGUMENT`.
   */
  maxPushBytes?: number;
  /**
   * Milliseconds a sync request may go without progress (its answer's head, a chunk of its
   * body) before it is abandoned as `NETWORK` and tried again with backoff (default 30,000; from
   * 100 to 2^31 - 1). A push gets longer for its answer by its size, at 32 kB/s. The live tail
   * is replaced when it hears nothing, not even the server's keep-alive comments, for three of
   * their intervals (the server says which; 15 s by default) or this, whichever is longer. A
   * network that drops packets leaves a connection open with nothing coming back; without a
   * limit, sync would wait on it forever.
   */
  timeout?: number;
  /**
   * Snapshot sets on the server: `true`, or options (default `false`: off). A new device (no log
   * of this name in the origin yet) asks the server for the newest set of exactly this app's
   * projections, event schemas and projection code, and starts from it: its tables are there at
   * once and it pulls only the events after the set. Like a log after
   * {@link Log.truncateBefore}, it keeps no events before the set ({@link Log.start}); for a
   * projection added or changed by a later release, `open` pulls them back from the server
   * first (offline it throws `TRUNCATED`). The sync leader shares its own set as the log
   * grows. Reducer states are shared only when they are plain JSON data (objects, arrays,
   * strings, finite numbers, booleans, null); with any other reducer state, no set is shared.
   */
  snapshots?:
    | boolean
    | {
        /** Start a new log from the server's set (default true). */
        boot?: boolean;
        /** Upload this app's set (the leader tab, default true). */
        share?: boolean;
        /**
         * Upload once the log has grown this many events past the last set (default 50,000).
         * The last set shared is remembered by the origin (in `localStorage`), across reloads.
         */
        every?: number;
        /** How long a new log waits for the server's answer, in ms (default 5,000); then it pulls it all. */
        timeout?: number;
      };
}

/**
 * A batch the server refused: it left the outbox and the tables, and is kept until
 * {@link Log.dismissRejection}.
 */
export interface Rejection {
  /** Pass to `dismissRejection`. */
  id: number;
  /** The batch's number in this client's outbox. */
  batch: number;
  /** `depends`: its expected versions counted on events of an earlier rejected batch. */
  reason: "conflict" | "invalid_event" | "invalid_batch" | "depends";
  /** For people. */
  message: string;
  /** For a conflict, the stream's version on the server. */
  currentVersion: number | null;
  /** The server's details of the refusal. */
  details: Json;
  /** When it was rejected (ms since the Unix epoch). */
  time: number;
  /** Its events as they were shown, with provisional `seq` and `version`. */
  events: StoredEvent[];
}

/** Where sync stands, as this tab sees it ({@link Sync.status}). */
export interface SyncStatus {
  /**
   * `syncing`: a round is under way; `online`: the last round succeeded (the leader then follows
   * the live tail); `offline`: the server could not be reached (or the browser went offline),
   * retried with backoff; `error`: another failure (see `lastError`), retried too unless it is
   * `FORBIDDEN` or `DIVERGED`; `paused`: after {@link Sync.pause}.
   */
  state: "online" | "offline" | "syncing" | "error" | "paused";
  /** Whether this tab is the one that syncs (one per log and origin). */
  leader: boolean;
  /** Events in the outbox. */
  pending: number;
  /** The confirmed head: every position up to it is final. */
  confirmed: number;
  /** The server's head as last heard, or null. */
  serverHead: number | null;
  /** The last failure, until a round succeeds. */
  lastError: {
    /** As a {@link LogfoldError}'s. */
    code: ErrorCode;
    /** For people. */
    message: string;
  } | null;
  /** When a sync round last succeeded (ms since the Unix epoch). */
  lastSuccess: number | null;
  /** The sync leader's epoch. */
  epoch: number;
}

/**
 * Sync status and control of a synced log ({@link Log.sync}).
 *
 * @example
 * ```js
 * const log = await Logfold.open({ name: "notes", sync: { url: "https://sync.example.com", log: "notes" } });
 * const states = [];
 * const off = log.sync.subscribe((status) => states.push(status.state));
 * log.sync.pause(); // every tab of this origin stops syncing; appends go on into the outbox
 * log.sync.status.state; // → "paused"
 * await log.append({ stream: "note-1", type: "Written", data: { text: "hi" } });
 * log.sync.status.pending; // → 1
 * log.sync.resume();
 * await log.sync.settled({ timeout: 10000 });
 * log.sync.status.pending; // → 0
 * states.includes("paused"); // → true
 * off();
 * ```
 */
export interface Sync {
  /** A copy of the current status. */
  readonly status: SyncStatus;
  /** Calls back on every status change; returns unsubscribe. */
  subscribe(callback: (status: SyncStatus) => void): () => void;
  /**
   * Push and pull now (and retry at once after a failure); resolves with the status after that
   * round. Also restarts sync stopped by `FORBIDDEN` or `DIVERGED`.
   *
   * @example
   * ```js
   * const log = await Logfold.open({ name: "notes", sync: { url: "https://sync.example.com", log: "notes" } });
   * await log.append({ stream: "note-1", type: "Written" });
   * await log.sync.now();
   * await log.sync.settled();
   * log.sync.status.confirmed; // → 1
   * ```
   */
  now(): Promise<SyncStatus>;
  /** Stops pushing and pulling in every tab of this origin (kept across reloads) until `resume()`. */
  pause(): void;
  /** Starts again after `pause()`, `FORBIDDEN` or `DIVERGED`, whichever tab paused. */
  resume(): void;
  /**
   * Resolves once nothing is pending, the confirmed log is at the server's head and `state` is
   * not `"syncing"` (a round has ended). Rejects with
   * `TIMEOUT` after `timeout` ms (default 30,000), and at once with `DIVERGED` if the server no
   * longer holds this log.
   */
  settled(options?: { timeout?: number }): Promise<SyncStatus>;
}

/** Which events {@link Log.read} returns. */
export interface ReadOptions {
  /** Return events with `seq` greater than this (default: from {@link Log.start}). Below `start - 1`: `TRUNCATED`. */
  after?: number;
  /** At most this many events (default 1000). */
  limit?: number;
}

/** Counters of this handle since it opened. */
export interface LogStats {
  /** IndexedDB transactions that appended. */
  transactions: number;
  /** Segments written by appends. */
  segmentsWritten: number;
  /** Segments merged by compaction. */
  segmentsMerged: number;
  /** Compaction runs. */
  compactions: number;
  /** Events this handle appended. */
  eventsAppended: number;
  /** Events folded into the projections from IndexedDB (at open, and from other tabs). */
  eventsReplayed: number;
  /** Projection snapshots used at open. */
  snapshotsLoaded: number;
  /** Snapshots found damaged or ahead of the log, and not used. */
  snapshotsDiscarded: number;
  /** Projection snapshots written. */
  snapshotsWritten: number;
  /** Projections that had no usable snapshot at open and were folded from the start. */
  projectionsRebuilt: number;
  /** Sync: times the outbox overlay was rolled back and applied on a new base. */
  overlayRebuilds: number;
  /** Sync: outbox events folded into the overlay. */
  overlayEvents: number;
  /** Sync: confirmed events folded into the base after open. */
  baseEvents: number;
  /** Sync: events this tab pulled into the confirmed log. */
  eventsPulled: number;
  /** Sync: events of a log used without sync that became the outbox at this open. */
  eventsMigrated: number;
  /** Stream-version stores found damaged at open and rebuilt from the log (nothing is lost). */
  streamsRebuilt: number;
  /** The server offset this open started a new log from, with the server's snapshot set (0: none). */
  snapshotSetAt: number;
}

/** What {@link Logfold.repair} did. */
export interface RepairReport {
  /** The head after repair: every event up to it is intact. */
  head: number;
  /** Positions dropped, or null when nothing was damaged. */
  dropped: {
    /** The first position dropped. */
    from: number;
    /** The last position dropped. */
    to: number;
  } | null;
  /**
   * The sync records dropped or rewritten because they could not be read, e.g. `"outbox 6"`
   * (a pending batch, whose events are lost with its record), `"rejections 3"`, `"meta nextBatch"`.
   */
  records: string[];
}

/** An open log, from {@link Logfold.open}. */
export interface Log {
  /** The name it was opened with. */
  readonly name: string;
  /** This client's id: the `origin` of its events. It persists across opens of the log. */
  readonly clientId: string;
  /** The highest position this handle has seen (after open, appends and reads). */
  readonly head: number;
  /** Whether the log is closed (by `close()` or by itself, see `onClose`). */
  readonly closed: boolean;
  /**
   * Settles once the segments `open` did not need to read are checked (see
   * {@link OpenOptions.verify}): `null` when they are intact, else the error: `CORRUPT` or
   * `UNSUPPORTED_FORMAT` (also given to `onCorrupt`; {@link Logfold.repair} recovers from
   * damage), `STORAGE` if IndexedDB failed (the rest stays unchecked; a warning says so), or
   * `CLOSED` if the log closed first. It never rejects.
   *
   * @example
   * ```js
   * import { Logfold } from "logfold";
   *
   * const log = await Logfold.open({ name: "checked" });
   * await log.append({ stream: "s", type: "Noted" });
   * await log.verified; // → null
   * await log.close();
   * ```
   */
  readonly verified: Promise<LogfoldError | null>;
  /**
   * Appends one event atomically. Resolves once it is stored (see {@link Durability}) and the
   * projections show it; the event shares `data` with the object passed in. Appends made in
   * the same tick share one transaction, and each still succeeds or fails alone.
   *
   * @example
   * ```js
   * const log = await Logfold.open({ name: "ledger" });
   * const opened = await log.append({ stream: "acct-1", type: "Opened", data: { owner: "Ada" } }, { expectedVersion: "none" });
   * opened.version; // → 1
   * opened.seq; // → 1
   * opened.origin === log.clientId; // → true
   * const deposit = await log.append({ stream: "acct-1", type: "Deposited", data: { amount: 1250 } }, { expectedVersion: 1 });
   * deposit.version; // → 2
   * deposit.offset; // → null
   * ```
   */
  append<D extends Json>(event: NewEvent<D>, options?: AppendOptions): Promise<StoredEvent<D>>;
  /**
   * Appends a batch atomically: all events or none, in one transaction.
   *
   * @example
   * ```js
   * const log = await Logfold.open({ name: "ledger" });
   * const [a, b] = await log.append(
   *   [
   *     { stream: "acct-1", type: "Opened" },
   *     { stream: "acct-2", type: "Opened" },
   *   ],
   *   { expectedVersions: { "acct-1": "none", "acct-2": "none" } },
   * );
   * [a.seq, b.seq]; // → [1, 2]
   * [a.version, b.version]; // → [1, 1]
   * ```
   */
  append<D extends Json>(events: NewEvent<D>[], options?: AppendOptions): Promise<StoredEvent<D>[]>;
  /**
   * Events by position: those with `seq > after`, in order, at most `limit`.
   *
   * @example
   * ```js
   * const log = await Logfold.open({ name: "chat" });
   * await log.append(["hi", "hello", "bye"].map((text) => ({ stream: "room-1", type: "Said", data: { text } })));
   * const page = await log.read({ after: 1, limit: 1 });
   * page.map((e) => [e.seq, e.data.text]); // → [[2, "hello"]]
   * (await log.read()).length; // → 3
   * ```
   */
  read(options?: ReadOptions): Promise<StoredEvent[]>;
  /**
   * The first position this log keeps: 1, unless {@link Log.truncateBefore} dropped some or the
   * log started from the server's snapshot set (see {@link SyncOptions.snapshots}).
   */
  readonly start: number;
  /**
   * Drops the confirmed history before `seq` from this browser, for a synced log (the server
   * keeps it all; a log without sync refuses with `INVALID_ARGUMENT`). It writes every
   * projection's snapshot first and never cuts past them, nor past the stream versions'
   * checkpoint, and drops whole segments, so `start` may stay a little below `seq`. The outbox is
   * not touched. The projections' states at the cut are kept as their base snapshots, so
   * `tablesAt` works from `start - 1` on (the first cut of a long log folds it once to get them).
   * Afterwards `read` below `start` and `tablesAt` below `start - 1` throw `TRUNCATED`. (A log
   * cut by an earlier logfold, which kept no base snapshots, cuts again without them: there
   * `tablesAt` below the projections' snapshots throws `TRUNCATED`.) A reducer state at the cut
   * that IndexedDB cannot store (one holding a function) fails the cut with `STORAGE`, dropping
   * nothing.
   * Opening the log with a projection that has no snapshot after the cut (a new or changed
   * definition) pulls the dropped history back from the server first; with the server out of
   * reach it throws `TRUNCATED`.
   *
   * @example
   * ```js
   * import { Logfold } from "logfold";
   *
   * const log = await Logfold.open({ name: "kept-local" }); // a log without sync refuses
   * (await log.truncateBefore(10).catch((e) => e.code)); // → "INVALID_ARGUMENT"
   * log.start; // → 1
   * await log.close();
   * ```
   */
  truncateBefore(seq: number): Promise<TruncateReport>;
  /**
   * Every event after `after`, in order, read in pages.
   *
   * @example
   * ```js
   * const log = await Logfold.open({ name: "chat" });
   * await log.append(["hi", "hello", "bye"].map((text) => ({ stream: "room-1", type: "Said", data: { text } })));
   * const texts = [];
   * for await (const event of log.events({ after: 1 })) texts.push(event.data.text);
   * texts; // → ["hello", "bye"]
   * ```
   */
  events(options?: { after?: number }): AsyncIterableIterator<StoredEvent>;
  /**
   * The stream's current version (0 if it has no events), read from IndexedDB so other tabs'
   * appends count.
   *
   * @example
   * ```js
   * const log = await Logfold.open({ name: "ledger" });
   * await log.append([{ stream: "acct-1", type: "Opened" }, { stream: "acct-1", type: "Deposited" }]);
   * await log.version("acct-1"); // → 2
   * await log.version("acct-2"); // → 0
   * ```
   */
  version(stream: string): Promise<number>;
  /** Merges small segments and checkpoints stream versions now (it also happens on its own). */
  compact(): Promise<void>;
  /**
   * Counters of this handle.
   *
   * @example
   * ```js
   * const log = await Logfold.open({ name: "ledger" });
   * await log.append([{ stream: "a", type: "T" }, { stream: "b", type: "T" }]);
   * log.stats().eventsAppended; // → 2
   * ```
   */
  stats(): LogStats;
  /**
   * What the browser keeps and whether it may evict it (see {@link StorageReport}). To ask for
   * storage that is kept, call {@link Log.persist}.
   *
   * @example
   * ```js
   * const log = await Logfold.open({ name: "notes" });
   * await log.append({ stream: "note-1", type: "Written", data: { text: "hello" } });
   * const report = await log.storage();
   * report.unsynced; // → 1
   * report.usage > 0; // → true
   * ```
   */
  storage(): Promise<StorageReport>;
  /**
   * Asks the browser to keep this origin's storage (`navigator.storage.persist()`), and resolves
   * to whether it will. Browsers decide by their own rules (Chromium grants it to installed or
   * often-used sites; Firefox asks the user), so call it after a user action.
   */
  persist(): Promise<boolean>;
  /**
   * A declarative table (see {@link Table}). Up to date when `append` resolves; throws
   * `INVALID_ARGUMENT` for an unknown name or a reducer.
   */
  table(name: string): Table;
  /**
   * A reducer's state (see {@link ReducerDefinition}). Throws `PROJECTION_FAILED` once its
   * `apply` threw.
   *
   * @example
   * ```js
   * const log = await Logfold.open({
   *   name: "ledger",
   *   projections: { biggest: { version: 1, init: 0, apply: (max, e) => Math.max(max, e.data.amount) } },
   * });
   * await log.append([{ stream: "a", type: "Paid", data: { amount: 30 } }, { stream: "b", type: "Paid", data: { amount: 70 } }]);
   * log.state("biggest"); // → 70
   * ```
   */
  state<S = unknown>(name: string): S;
  /** What a projection could not apply (see {@link Table.errors}); for a reducer, whether it failed. */
  projectionErrors(name: string): ProjectionErrors;
  /**
   * Calls back once per committed append or received batch that changes the projection: a
   * {@link TableChange} for a table, a {@link StateChange} for a reducer. Callbacks run in a
   * microtask after the change. Returns the function that unsubscribes.
   *
   * @example
   * ```js
   * const log = await Logfold.open({
   *   name: "shop",
   *   projections: { carts: { on: { Added: { add: { items: "data.n" } }, Emptied: { delete: true } } } },
   * });
   * const heard = [];
   * const off = log.subscribe("carts", (change) => heard.push(change));
   * await log.append({ stream: "cart-1", type: "Added", data: { n: 2 } });
   * await log.append({ stream: "cart-1", type: "Emptied" });
   * heard; // → [{ seq: 1, changes: [{ key: "cart-1", row: { items: 2 } }] }, { seq: 2, changes: [{ key: "cart-1", row: undefined }] }]
   * off();
   * await log.append({ stream: "cart-2", type: "Added", data: { n: 1 } });
   * heard.length; // → 2
   * ```
   */
  subscribe(name: string, callback: (change: TableChange | StateChange) => void): () => void;
  /**
   * Read-only projections as of position `seq` (time travel), folded from the newest snapshot
   * at or below it.
   *
   * @example
   * ```js
   * const log = await Logfold.open({
   *   name: "ledger",
   *   projections: {
   *     balances: { on: { Deposited: { add: { balance: "data.amount" } } } },
   *     deposits: { version: 1, init: 0, apply: (n, e) => n + 1 },
   *   },
   * });
   * await log.append({ stream: "acct-1", type: "Deposited", data: { amount: 100 } });
   * await log.append({ stream: "acct-1", type: "Deposited", data: { amount: 50 } });
   * const past = await log.tablesAt(1);
   * past.seq; // → 1
   * past.table("balances").get("acct-1"); // → { balance: 100 }
   * past.state("deposits"); // → 1
   * log.table("balances").get("acct-1"); // → { balance: 150 }
   * ```
   */
  tablesAt(seq: number): Promise<PastTables>;
  /** Writes projection snapshots now (they are also written every `snapshotEvery` events and at close). */
  snapshot(): Promise<void>;
  /** Folds other tabs' appends now (they also signal them). */
  refresh(): Promise<void>;
  /** Sync status and control; undefined for a log that has never synced. */
  readonly sync: Sync | undefined;
  /**
   * Rejected batches kept until dismissed; every open tab's `onRejected` also hears of each.
   *
   * @example
   * Two devices (here two local logs of one page) append to the same new stream; the second to
   * push is rejected:
   * ```js
   * const sync = { url: "https://sync.example.com", log: "ledger" };
   * const phone = await Logfold.open({ name: "phone", sync });
   * const laptop = await Logfold.open({ name: "laptop", sync });
   * laptop.sync.pause();
   * await phone.append({ stream: "acct-1", type: "Opened", data: { owner: "Ada" } }, { expectedVersion: "none" });
   * await phone.sync.settled();
   * await laptop.append({ stream: "acct-1", type: "Opened", data: { owner: "Bob" } }, { expectedVersion: "none" });
   * laptop.sync.resume();
   * await laptop.sync.settled();
   * const [rejection] = await laptop.rejections();
   * rejection.reason; // → "conflict"
   * rejection.currentVersion; // → 1
   * rejection.events.map((e) => e.data.owner); // → ["Bob"]
   * (await laptop.read()).map((e) => e.data.owner); // → ["Ada"]
   * await laptop.dismissRejection(rejection.id); // → true
   * await laptop.rejections(); // → []
   * ```
   */
  rejections(): Promise<Rejection[]>;
  /** Forgets a rejection; resolves to whether there was one. */
  dismissRejection(id: number): Promise<boolean>;
  /** Waits for pending appends, writes snapshots, then closes. Later calls throw `CLOSED`. */
  close(): Promise<void>;
}

/**
 * Opens, deletes and repairs logs.
 *
 * @namespace
 */
export declare const Logfold: {
  /**
   * Opens (creating if needed) the log `name` and brings its projections up to date, each from
   * its snapshot and the events after it. It verifies the segments it reads (checksums, no gap,
   * the last ending at the head) and, unless `verify: "full"`, checks the others after it
   * returns (see {@link Log.verified}). Throws `CORRUPT` (see {@link Logfold.repair}),
   * `UNSUPPORTED_FORMAT`, `INVALID_PROJECTION` or `INVALID_ARGUMENT`.
   *
   * @example
   * ```js
   * import { Logfold } from "logfold";
   *
   * const log = await Logfold.open({ name: "notes", durability: "strict" });
   * await log.append({ stream: "note-1", type: "Written", data: { text: "hello" } });
   * await log.close();
   * log.closed; // → true
   *
   * const again = await Logfold.open({ name: "notes" });
   * again.head; // → 1
   * (await again.read())[0].data; // → { text: "hello" }
   * ```
   */
  open(options: OpenOptions): Promise<Log>;
  /**
   * Deletes the log's database. Waits until every tab has closed it (open ones close with
   * `onClose("versionchange")`).
   *
   * @example
   * ```js
   * const log = await Logfold.open({ name: "scratch" });
   * await log.append({ stream: "s", type: "T" });
   * await log.close();
   * await Logfold.destroy("scratch");
   * (await Logfold.open({ name: "scratch" })).head; // → 0
   * ```
   */
  destroy(name: string): Promise<void>;
  /**
   * Drops the first damaged segment and everything after it, keeping the intact prefix (the
   * next `open` rebuilds the stream versions); for a log that `open` refused with `CORRUPT`.
   * Export what `read` can still reach first if the later events matter. A log with no damage
   * is left as it is.
   *
   * @example
   * ```js
   * const log = await Logfold.open({ name: "ledger" });
   * await log.append([{ stream: "a", type: "T" }, { stream: "a", type: "T" }]);
   * await log.close();
   * await Logfold.repair("ledger"); // → { head: 2, dropped: null, records: [] }
   * ```
   */
  repair(name: string): Promise<RepairReport>;
};
