// logfold/react: hooks over an open log, built on useSyncExternalStore. A hook's snapshot keeps
// its identity until what it shows has changed; a fresh array on every call would make React
// render without end.
import { useCallback, useMemo, useSyncExternalStore } from "react";

// One read of a table, cached. It is read again after the log says the table changed, or when
// the log moved while nobody listened (between a render and the effect that subscribes).
function tableStore(log, name, read) {
  let snapshot;
  let readAt = -1; // log.head when `snapshot` was read
  let stale = true;
  let listening = 0;
  return {
    subscribe(onChange) {
      listening++;
      const off = log.subscribe(name, () => {
        stale = true;
        onChange();
      });
      if (log.head !== readAt) stale = true;
      return () => {
        listening--;
        off();
      };
    },
    getSnapshot() {
      if (stale || (listening === 0 && log.head !== readAt)) {
        snapshot = read();
        readAt = log.head;
        stale = false;
      }
      return snapshot;
    },
  };
}

function useStore(store) {
  return useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
}

/** A table's rows, `[{ key, row }]` as `table.scan(query)` gives them, kept current. */
export function useTable(log, name, query) {
  // An inline query object is new on every render; its text is what matters.
  const queryText = JSON.stringify(query ?? null);
  const store = useMemo(() => tableStore(log, name, () => log.table(name).scan(query)), [log, name, queryText]);
  return useStore(store);
}

/** One row of a table (undefined while there is none), kept current. */
export function useRow(log, name, key) {
  const store = useMemo(() => tableStore(log, name, () => log.table(name).get(key)), [log, name, key]);
  return useStore(store);
}

/** A JS reducer's state. Reducers return a new state on change, so it is its own snapshot. */
export function useProjectionState(log, name) {
  const subscribe = useCallback((onChange) => log.subscribe(name, onChange), [log, name]);
  const getSnapshot = useCallback(() => log.state(name), [log, name]);
  return useSyncExternalStore(subscribe, getSnapshot, getSnapshot);
}

// log.sync.status is a new copy on every read: keep the last one while its fields are the same.
function statusStore(log) {
  let last;
  return {
    subscribe: (onChange) => log.sync?.subscribe(onChange) ?? (() => {}),
    getSnapshot() {
      const now = log.sync?.status;
      if (now === undefined) return undefined;
      if (last === undefined || Object.keys(now).some((k) => now[k] !== last[k])) last = now;
      return last;
    },
  };
}

/** The log's sync status, kept current; undefined for a log that does not sync. */
export function useSyncStatus(log) {
  const store = useMemo(() => statusStore(log), [log]);
  return useStore(store);
}
