/**
 * logfold/react: React hooks over an open {@link Log}, built on `useSyncExternalStore`. Each
 * re-renders its component when what it returns changes, and returns the same object until then.
 * Needs React 18 or later.
 *
 * @module logfold/react
 */
import type { Key, Log, Row, ScanOptions, SyncStatus } from "./index.js";

/**
 * A declarative table's rows, as `log.table(name).scan(query)` returns them. The query is
 * compared by value, so an inline object is fine.
 */
export declare function useTable<R extends Row = Row>(
  log: Log,
  name: string,
  query?: ScanOptions,
): {
  /** The row's key. */
  key: Key;
  /** The row's fields. */
  row: R;
}[];

/** One row of a declarative table, `undefined` while it does not exist. */
export declare function useRow<R extends Row = Row>(log: Log, name: string, key: Key): R | undefined;

/** A JS reducer's state. Throws `PROJECTION_FAILED` (to an error boundary) once its `apply` threw. */
export declare function useProjectionState<S = unknown>(log: Log, name: string): S;

/** The log's sync status; `undefined` for a log that does not sync. */
export declare function useSyncStatus(log: Log): SyncStatus | undefined;
