/**
 * logfold: an offline-first event store for the web. An append-only event log in IndexedDB
 * (the source of truth), written and read through WebAssembly.
 */

/** A plain JSON value: what `data` and `meta` may hold. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json | undefined };

/** How hard a commit works before it is acknowledged. See README, "Durability". */
export type Durability = "strict" | "relaxed";

/** The stable codes of {@link LogfoldError}. */
export type ErrorCode =
  | "INVALID_EVENT"
  | "INVALID_ARGUMENT"
  | "CONFLICT"
  | "QUOTA_EXCEEDED"
  | "CORRUPT"
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

/** Details carried by each error code. */
export interface ErrorDetails {
  INVALID_EVENT: { index: number; field: string; reason: string };
  INVALID_ARGUMENT: { argument: string };
  CONFLICT: { stream: string; expected: number | "none"; actual: number };
  QUOTA_EXCEEDED: { name: string };
  CORRUPT: { from: number; to: number; reason: string };
  UNSUPPORTED_FORMAT: { format: number };
  CLOSED: { reason: "closed" | "versionchange" | "synced" };
  STORAGE: { name: string };
  INVALID_PROJECTION: { projection: string; path: string };
  PROJECTION_FAILED: { projection: string; seq: number; type: string; error: unknown };
  UNAUTHORIZED: { status: 401 };
  FORBIDDEN: { status: 403 };
  NETWORK: {};
  SERVER: { status: number; code?: string };
  FENCED: {};
  SYNC_PROTOCOL: {};
  /** The server lost confirmed events (`confirmed`, `serverHead`), or holds another log under this name (`expected`, `actual` identities); from `settled`, the `status`. */
  DIVERGED: { confirmed?: number; serverHead?: number; expected?: string; actual?: string; status?: SyncStatus };
  TIMEOUT: { status: SyncStatus };
}

/**
 * Every error logfold throws. `code` is stable; `message` is for people. Declared as an
 * interface plus a constructor (not a generic class) so that `err instanceof LogfoldError`
 * narrows to a typed error instead of `LogfoldError<any>`.
 */
export interface LogfoldError<C extends ErrorCode = ErrorCode> extends Error {
  readonly name: "LogfoldError";
  readonly code: C;
  readonly details: ErrorDetails[C];
}

export declare const LogfoldError: {
  new <C extends ErrorCode>(code: C, message: string, details: ErrorDetails[C]): LogfoldError<C>;
  readonly prototype: LogfoldError;
};

/** An event as the app appends it. */
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
  /** 128-bit id made by this client (UUIDv7 text); the idempotency key. */
  id: string;
  stream: string;
  /** 1-based position in its stream. */
  version: number;
  type: string;
  data: D;
  meta: Json | null;
  /** Milliseconds since the Unix epoch when it was appended. */
  time: number;
  /** The client id that appended it. */
  origin: string;
  /** Position in the log: the order tables fold in. With sync, provisional while pending. */
  seq: number;
  /** The sync server's offset (equal to `seq`) once confirmed; `null` while pending, and without sync. */
  offset: number | null;
}

/** A stream's expected version: its exact version, or `"none"` for a stream with no events yet. */
export type ExpectedVersion = number | "none";

export interface AppendOptions {
  /** Checked against the stream's version; only for a batch with one stream. */
  expectedVersion?: ExpectedVersion;
  /** Per-stream expectations, for batches across several streams. */
  expectedVersions?: Record<string, ExpectedVersion>;
}

/**
 * Where an operation takes a value: an event field (`"stream"`, `"type"`, `"id"`, `"seq"`,
 * `"version"`, `"time"`, `"origin"`, `"data"`, `"data.a.b"`, `"meta"`, `"meta.a"`), or a
 * constant: any other string, a number, boolean or null, or `{ value: anything }`.
 */
export type Source = string | number | boolean | null | { value: Json };

/** One change to one row. `delete: true` excludes the others. */
export interface Operation {
  /** The row's key (default: the table's `key`). */
  row?: Source;
  /** Fields set from sources. */
  set?: Record<string, Source>;
  /** Numbers added to fields; a missing row or field starts from 0. */
  add?: Record<string, Source>;
  /** Numbers subtracted from fields. */
  subtract?: Record<string, Source>;
  /** Values appended to list fields. */
  append?: Record<string, Source>;
  /** Fields increased by one. */
  count?: string | string[];
  /** Removes the row. */
  delete?: true;
}

/** A declarative table, folded in wasm: per event type, the operations on its rows. */
export interface TableDefinition {
  /** The row key when an operation names no `row` (default `"stream"`). */
  key?: Source;
  on: Record<string, Operation | Operation[]>;
}

/** A JS reducer: `apply` returns the new state and must not change `state` in place. */
export interface ReducerDefinition<S = unknown> {
  /** Your number for this reducer's logic: change it to rebuild from the log. */
  version: number;
  /** The state before any event, or a function returning it. */
  init: S | (() => S);
  apply(state: S, event: StoredEvent): S;
}

export type ProjectionDefinition = TableDefinition | ReducerDefinition<any>;

/** A row of a table: its fields as set by the operations. */
export type Row = { [field: string]: Json };
export type Key = string | number;

export interface ScanOptions {
  /** The first key (inclusive). */
  from?: Key;
  /** The key to stop before (exclusive). */
  to?: Key;
  /** Only string keys starting with this. */
  prefix?: string;
  limit?: number;
  /** Highest key first. */
  reverse?: boolean;
  /** Only rows whose fields equal these values. */
  where?: Row;
}

/** A declarative table's rows, kept up to date in memory. Keys order numbers before strings. */
export interface Table {
  readonly name: string;
  get(key: Key): Row | undefined;
  scan(options?: ScanOptions): { key: Key; row: Row }[];
  filter(where: Row, options?: Omit<ScanOptions, "where">): { key: Key; row: Row }[];
  count(): number;
  /** Events an operation could not apply (missing field, wrong type): the row was left as it was. */
  errors(): ProjectionErrors;
}

export interface ProjectionErrors {
  /** How many in all (the list keeps the latest 100). */
  count: number;
  errors: { seq: number; type: string; message: string }[];
  /** For reducers: whether it stopped at an event that threw. */
  failed?: boolean;
}

/** What a subscriber of a table hears: the rows that changed (`row` undefined when deleted). */
export interface TableChange {
  seq: number;
  changes: { key: Key; row: Row | undefined }[];
}

/** What a subscriber of a reducer hears: its new state. */
export interface StateChange<S = unknown> {
  seq: number;
  state: S;
}

/** Read-only projections as of a past position. */
export interface PastTables {
  readonly seq: number;
  table(name: string): Table;
  state<S = unknown>(name: string): S;
}

export interface OpenOptions {
  /** The log's name; one IndexedDB database per name and origin. */
  name: string;
  /** `"strict"` (default): an acknowledged append survives an OS crash. */
  durability?: Durability;
  /** Called once when the log closes by itself (another tab upgraded or destroyed it). */
  onClose?: (reason: "versionchange" | "synced") => void;
  /** Tables and reducers folded from the log, by name. */
  projections?: Record<string, ProjectionDefinition>;
  /** Progress of folding the log at open (a rebuild without a snapshot reports many). */
  onProgress?: (progress: { done: number; total: number }) => void;
  /** Write projection snapshots every this many events (default 10,000), and at close. */
  snapshotEvery?: number;
  /** Sync with a logfold server. Once a log has synced, its appends wait in the outbox until pushed. */
  sync?: SyncOptions;
}

export interface SyncOptions {
  /** The sync server, e.g. `"https://sync.example.com"` or `location.origin`. */
  url: string;
  /** The log's name on the server. */
  log: string;
  /** A bearer token; or `getToken`, called first and again after a 401. */
  token?: string;
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
}

/** A batch the server refused: it left the outbox and the tables. */
export interface Rejection {
  /** Pass to `dismissRejection`. */
  id: number;
  batch: number;
  /** `depends`: its expected versions counted on events of an earlier rejected batch. */
  reason: "conflict" | "invalid_event" | "invalid_batch" | "depends";
  message: string;
  /** For a conflict, the stream's version on the server. */
  currentVersion: number | null;
  details: Json;
  /** When it was rejected (ms since the Unix epoch). */
  time: number;
  /** Its events as they were shown, with provisional `seq` and `version`. */
  events: StoredEvent[];
}

export interface SyncStatus {
  state: "online" | "offline" | "syncing" | "error" | "paused";
  /** Whether this tab is the one that syncs (one per log and origin). */
  leader: boolean;
  /** Events in the outbox. */
  pending: number;
  /** The confirmed head: every position up to it is final. */
  confirmed: number;
  /** The server's head as last heard, or null. */
  serverHead: number | null;
  lastError: { code: ErrorCode; message: string } | null;
  /** When a sync round last succeeded (ms since the Unix epoch). */
  lastSuccess: number | null;
  /** The sync leader's epoch. */
  epoch: number;
}

export interface Sync {
  readonly status: SyncStatus;
  /** Calls back on every status change; returns unsubscribe. */
  subscribe(callback: (status: SyncStatus) => void): () => void;
  /** Push and pull now; resolves after that round. */
  now(): Promise<SyncStatus>;
  pause(): void;
  resume(): void;
  /** Resolves once nothing is pending and the confirmed log is at the server's head. */
  settled(options?: { timeout?: number }): Promise<SyncStatus>;
}

export interface ReadOptions {
  /** Return events with `seq` greater than this (default 0). */
  after?: number;
  /** At most this many events (default 1000). */
  limit?: number;
}

/** Counters of this handle since it opened. */
export interface LogStats {
  transactions: number;
  segmentsWritten: number;
  segmentsMerged: number;
  compactions: number;
  eventsAppended: number;
  /** Events folded into the projections from IndexedDB (at open, and from other tabs). */
  eventsReplayed: number;
  snapshotsLoaded: number;
  /** Snapshots found damaged or ahead of the log, and not used. */
  snapshotsDiscarded: number;
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
}

/** What {@link Logfold.repair} did. */
export interface RepairReport {
  /** The head after repair: every event up to it is intact. */
  head: number;
  /** Positions dropped, or null when nothing was damaged. */
  dropped: { from: number; to: number } | null;
}

/** An open log. */
export interface Log {
  readonly name: string;
  /** This client's id: the `origin` of its events. */
  readonly clientId: string;
  /** The highest position this handle has seen (after open, appends and reads). */
  readonly head: number;
  readonly closed: boolean;
  /** Appends one event atomically. */
  append<D extends Json>(event: NewEvent<D>, options?: AppendOptions): Promise<StoredEvent<D>>;
  /** Appends a batch atomically: all events or none. */
  append<D extends Json>(events: NewEvent<D>[], options?: AppendOptions): Promise<StoredEvent<D>[]>;
  /** Events by position. */
  read(options?: ReadOptions): Promise<StoredEvent[]>;
  /** Every event after `after`, in order, read in pages. */
  events(options?: { after?: number }): AsyncIterableIterator<StoredEvent>;
  /** The stream's current version (0 if it has no events). */
  version(stream: string): Promise<number>;
  /** Merges small segments and checkpoints stream versions now (it also happens on its own). */
  compact(): Promise<void>;
  stats(): LogStats;
  /** A declarative table. Up to date when `append` resolves. */
  table(name: string): Table;
  /** A reducer's state. Throws `PROJECTION_FAILED` once its `apply` threw. */
  state<S = unknown>(name: string): S;
  projectionErrors(name: string): ProjectionErrors;
  /** Calls back once per committed append or received batch that changes it; returns unsubscribe. */
  subscribe(name: string, callback: (change: TableChange | StateChange) => void): () => void;
  /** Read-only projections as of position `seq`. */
  tablesAt(seq: number): Promise<PastTables>;
  /** Writes projection snapshots now. */
  snapshot(): Promise<void>;
  /** Folds other tabs' appends now (they also signal them). */
  refresh(): Promise<void>;
  /** Sync status and control; undefined for a log that has never synced. */
  readonly sync: Sync | undefined;
  /** Rejected batches kept until dismissed. */
  rejections(): Promise<Rejection[]>;
  /** Forgets a rejection; resolves to whether there was one. */
  dismissRejection(id: number): Promise<boolean>;
  /** Waits for pending appends, then closes. Later calls throw `CLOSED`. */
  close(): Promise<void>;
}

export declare const Logfold: {
  /** Opens (creating if needed) and verifies the log. Throws `CORRUPT` or `UNSUPPORTED_FORMAT`. */
  open(options: OpenOptions): Promise<Log>;
  /** Deletes the log's database. Waits until every tab has closed it. */
  destroy(name: string): Promise<void>;
  /** Drops the first damaged segment and everything after it, keeping the intact prefix. */
  repair(name: string): Promise<RepairReport>;
};
