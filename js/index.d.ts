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
  | "STORAGE";

/** Details carried by each error code. */
export interface ErrorDetails {
  INVALID_EVENT: { index: number; field: string; reason: string };
  INVALID_ARGUMENT: { argument: string };
  CONFLICT: { stream: string; expected: number | "none"; actual: number };
  QUOTA_EXCEEDED: { name: string };
  CORRUPT: { from: number; to: number; reason: string };
  UNSUPPORTED_FORMAT: { format: number };
  CLOSED: { reason: "closed" | "versionchange" };
  STORAGE: { name: string };
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
  /** Position in the log: the order tables fold in. */
  seq: number;
  /** The sync server's offset once confirmed; `null` without a sync server. */
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

export interface OpenOptions {
  /** The log's name; one IndexedDB database per name and origin. */
  name: string;
  /** `"strict"` (default): an acknowledged append survives an OS crash. */
  durability?: Durability;
  /** Called once when the log closes by itself (another tab upgraded or destroyed it). */
  onClose?: (reason: "versionchange") => void;
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
  /** Merges small segments now (it also happens on its own). */
  compact(): Promise<void>;
  stats(): LogStats;
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
