// The core API as a strict TypeScript app writes it; each @ts-expect-error is misuse the
// installed types must refuse (an unused one fails tsc).
import { Logfold, LogfoldError, type Log, type SyncStatus, type TableDefinition } from "logfold";

export type Account = { owner: string; balance: number; deposits: number };

const accounts: TableDefinition = {
  key: "stream",
  on: {
    Opened: { set: { owner: "data.owner", balance: 0, deposits: 0 } },
    Deposited: { add: { balance: "data.amount" }, count: "deposits" },
  },
};

export async function open(url: string): Promise<Log> {
  const log = await Logfold.open({
    name: "ts",
    projections: { accounts, total: { version: 1, init: 0, apply: (t: number, e) => t + Number(e.seq > 0) } },
    sync: { url, log: "ts", getToken: async () => "token" },
  });
  const opened = await log.append({ stream: "acct-1", type: "Opened", data: { owner: "Ada" } }, { expectedVersion: "none" });
  const seq: number = opened.seq;
  const offset: number | null = opened.offset;
  const [a, b] = await log.append([
    { stream: "acct-1", type: "Deposited", data: { amount: 5 } },
    { stream: "acct-1", type: "Deposited", data: { amount: 7 } },
  ]);
  const off = log.subscribe("accounts", (change) => {
    if ("changes" in change) for (const { key, row } of change.changes) console.log(key, row?.balance);
  });
  const status: SyncStatus | undefined = await log.sync?.settled({ timeout: 1000 });
  void [seq, offset, a, b, off, status];

  // @ts-expect-error an event needs a stream
  await log.append({ type: "Deposited" });
  // @ts-expect-error data is JSON: no functions
  await log.append({ stream: "s", type: "T", data: { f: () => 1 } });
  // @ts-expect-error a sync needs the server's log name
  await Logfold.open({ name: "x", sync: { url } });
  return log;
}

export function describe(e: unknown): string {
  if (e instanceof LogfoldError && e.code === "CONFLICT") return `stream at ${e.details.actual}`;
  return String(e);
}
