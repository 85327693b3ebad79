// logfold/react as a strict TypeScript React app uses it.
import type { Log } from "logfold";
import { useProjectionState, useRow, useSyncStatus, useTable } from "logfold/react";
import type { Account } from "./app.js";

export function Accounts({ log }: { log: Log }) {
  const rows = useTable<Account>(log, "accounts", { prefix: "acct-", limit: 10, reverse: true });
  const ada = useRow<Account>(log, "accounts", "acct-1");
  const total = useProjectionState<number>(log, "total");
  const status = useSyncStatus(log);

  const sum: number = rows.reduce((t, { row }) => t + row.balance, 0);
  // @ts-expect-error a balance is a number
  const owner: string = ada?.balance;
  // @ts-expect-error the row may not exist
  const balance: number = ada.balance;
  // @ts-expect-error the status is undefined for a log that does not sync
  const pending: number = status.pending;
  // @ts-expect-error a query is ScanOptions
  useTable(log, "accounts", { prefix: 1 });
  // @ts-expect-error a hook needs the log
  useSyncStatus();
  void [owner, balance, pending];

  return (
    <section>
      <ul>
        {rows.map(({ key, row }) => (
          <li key={key}>{`${row.owner}: ${row.balance}`}</li>
        ))}
      </ul>
      <p>{`${sum} of ${total}; ${status?.state ?? "local"}, ${status?.pending ?? 0} pending`}</p>
    </section>
  );
}
