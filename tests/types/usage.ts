// Real usage of logfold's public types, compiled by `tsc --noEmit` (tests/e2e/types.test.mjs).
// Every `@ts-expect-error` below is misuse that must not compile: if the types were `any`, those
// lines would stop erroring and tsc would fail on the unused directives.
import { Logfold, LogfoldError } from "logfold";
import type {
  AppendOptions,
  Durability,
  ErrorCode,
  ErrorDetails,
  ExpectedVersion,
  Json,
  Log,
  LogStats,
  NewEvent,
  OpenOptions,
  ReadOptions,
  RepairReport,
  StorageReport,
  StoredEvent,
} from "logfold";

// Type-level checks.
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type IsAny<T> = 0 extends 1 & T ? true : false;
function assertType<T extends true>(): void {}

interface Deposited {
  amount: number;
  note?: string;
  tags: string[];
}

export async function usage(): Promise<void> {
  const options: OpenOptions = {
    name: "bank",
    durability: "relaxed",
    onClose: (reason) => {
      const r: "versionchange" | "synced" | "truncated" = reason;
      void r;
    },
  };
  const log: Log = await Logfold.open(options);
  assertType<IsAny<typeof log> extends false ? true : false>();
  const strict = await Logfold.open({ name: "bank" });
  const mode: Durability = "strict";
  void mode;

  const name: string = log.name;
  const clientId: string = log.clientId;
  const head: number = log.head;
  const closed: boolean = log.closed;
  void [name, clientId, head, closed];

  // One event in, one StoredEvent out.
  const one = await log.append({ stream: "acct-1", type: "Deposited", data: { amount: 5, tags: [] } });
  assertType<IsAny<typeof one> extends false ? true : false>();
  const id: string = one.id;
  const version: number = one.version;
  const seq: number = one.seq;
  const time: number = one.time;
  const origin: string = one.origin;
  const offset: number | null = one.offset;
  const meta: Json | null = one.meta;
  void [id, version, seq, time, origin, offset, meta];

  // A batch in, an array out; data keeps its type.
  const events: NewEvent<{ amount: number; tags: string[] }>[] = [
    { stream: "acct-1", type: "Deposited", data: { amount: 1, tags: ["a"] } },
    { stream: "acct-1", type: "Deposited", data: { amount: 2, tags: [] }, meta: { by: "me", n: [1, null] } },
  ];
  const many = await log.append(events, { expectedVersion: 1 });
  assertType<Equal<typeof many, StoredEvent<{ amount: number; tags: string[] }>[]>>();
  const amount: number = many[0].data.amount;
  void amount;

  // Optional properties and undefined values are allowed in JSON objects (undefined is dropped).
  const withOptional: NewEvent = { stream: "s", type: "T", data: { a: 1, b: undefined, c: [1, "x", null, true, { d: {} }] } };
  await log.append(withOptional);
  await log.append({ stream: "s", type: "NoData" });

  const expected: AppendOptions[] = [
    { expectedVersion: 3 },
    { expectedVersion: "none" },
    { expectedVersions: { a: 1, b: "none" } },
    {},
  ];
  const ev: ExpectedVersion = "none";
  void [expected, ev];

  // Reads.
  const read: StoredEvent[] = await log.read({ after: 10, limit: 100 });
  const ro: ReadOptions = {};
  await log.read(ro);
  await log.read();
  for await (const e of log.events({ after: 0 })) {
    const s: number = e.seq;
    const d: Json = e.data;
    void [s, d];
  }
  for await (const e of log.events()) void e;
  const v: number = await log.version("acct-1");
  await log.compact();
  const stats: LogStats = log.stats();
  const counters: number[] = [stats.transactions, stats.segmentsWritten, stats.segmentsMerged, stats.compactions, stats.eventsAppended];
  const kept: StorageReport = await log.storage();
  const oldest: number | null = kept.oldestUnsynced;
  const granted: boolean = await log.persist();
  const watched = await Logfold.open({ name: "bank", storageRiskAfter: 7 * 86_400_000, onStorageRisk: (r) => void r.atRisk });
  void [oldest, granted, kept.usage, watched];
  // The log over its lifetime: the check after open, dropping history, event schemas.
  const damage: LogfoldError | null = await log.verified;
  const start: number = log.start;
  const cut: { start: number; dropped: number } = await log.truncateBefore(10);
  const schema: number | undefined = one.schema;
  const evolving = await Logfold.open({
    name: "bank",
    verify: "full",
    onCorrupt: (e) => void e.code,
    schemas: { Deposited: 2 },
    upcast: { Deposited: { 1: (d: { amount: number }) => ({ cents: d.amount * 100 }) } },
    unknownEvents: (e) => (e.schema > 2 ? null : e.data),
  });
  // @ts-expect-error: a policy is "skip", "fail" or a function
  await Logfold.open({ name: "bank", unknownEvents: "ignore" });
  void [damage, start, cut, schema, evolving];
  await log.close();
  await strict.close();
  await Logfold.destroy("bank");
  const report: RepairReport = await Logfold.repair("bank");
  const dropped: { from: number; to: number } | null = report.dropped;
  const repairedHead: number = report.head;
  void [read, v, counters, dropped, repairedHead];

  // Errors.
  try {
    await log.append({ stream: "x", type: "y" });
  } catch (err) {
    if (err instanceof LogfoldError) {
      const e: Error = err;
      const code: ErrorCode = err.code;
      const n: "LogfoldError" = err.name;
      const message: string = err.message;
      void [e, code, n, message];
      if (err.code === "CONFLICT") {
        const conflict = err as LogfoldError<"CONFLICT">;
        const stream: string = conflict.details.stream;
        const exp: number | "none" = conflict.details.expected;
        const actual: number = conflict.details.actual;
        void [stream, exp, actual];
      }
      const invalid = err as LogfoldError<"INVALID_EVENT">;
      const where: [number, string, string] = [invalid.details.index, invalid.details.field, invalid.details.reason];
      const corrupt: ErrorDetails["CORRUPT"] = { from: 1, to: 2, reason: "checksum" };
      const closedReason: ErrorDetails["CLOSED"]["reason"] = "versionchange";
      void [where, corrupt, closedReason];
    }
  }

  // ---- Misuse: each must be a compile error. ----

  // @ts-expect-error append without stream
  await log.append({ type: "T", data: 1 });
  // @ts-expect-error append without type
  await log.append({ stream: "s" });
  // @ts-expect-error stream must be a string
  await log.append({ stream: 42, type: "T" });
  // @ts-expect-error data: a function is not JSON
  await log.append({ stream: "s", type: "T", data: () => 1 });
  // @ts-expect-error data: a BigInt is not JSON
  await log.append({ stream: "s", type: "T", data: 10n });
  // @ts-expect-error data: a Map is not JSON
  await log.append({ stream: "s", type: "T", data: new Map<string, number>() });
  // @ts-expect-error data: undefined inside an array is not JSON
  await log.append({ stream: "s", type: "T", data: [1, undefined] });
  // @ts-expect-error meta: a symbol is not JSON
  await log.append({ stream: "s", type: "T", meta: { s: Symbol("x") } });
  // @ts-expect-error expectedVersion: "latest" is not a version
  await log.append({ stream: "s", type: "T" }, { expectedVersion: "latest" });
  // @ts-expect-error expectedVersions values are versions
  await log.append({ stream: "s", type: "T" }, { expectedVersions: { s: "any" } });
  // @ts-expect-error durability is "strict" or "relaxed"
  await Logfold.open({ name: "x", durability: "fast" });
  // @ts-expect-error open needs a name
  await Logfold.open({});
  // @ts-expect-error reading a field StoredEvent does not have
  const wrong = one.sequence;
  // @ts-expect-error seq is a number, not a string
  const seqText: string = one.seq;
  // @ts-expect-error a single append returns one event, not an array
  const notArray: StoredEvent[] = await log.append({ stream: "s", type: "T" });
  // @ts-expect-error a batch append returns an array
  const notOne: StoredEvent = await log.append([{ stream: "s", type: "T" }]);
  // @ts-expect-error read's options are after and limit
  await log.read({ from: 3 });
  // @ts-expect-error version takes a stream name
  await log.version(3);
  // @ts-expect-error head is read-only
  log.head = 3;
  // @ts-expect-error stats are numbers
  const statText: string = log.stats().transactions;
  // @ts-expect-error atRisk is a boolean
  const riskText: string = (await log.storage()).atRisk;
  // @ts-expect-error a code that is not an ErrorCode
  const badCode: ErrorCode = "NOT_A_CODE";
  // @ts-expect-error details of CONFLICT have no index
  const noIndex = ({} as LogfoldError<"CONFLICT">).details.index;
  // @ts-expect-error onClose gets a reason string, not a number
  await Logfold.open({ name: "x", onClose: (reason: number) => reason });
  // @ts-expect-error the typed data keeps its type
  const notString: string = many[0].data.amount;
  try {
    await log.close();
  } catch (err) {
    // @ts-expect-error the caught value is unknown until narrowed
    void err.code;
  }
  void [wrong, seqText, notArray, notOne, statText, riskText, badCode, noIndex, notString];
}

export function handle(err: LogfoldError): string {
  // @ts-expect-error comparing with a code that is not an ErrorCode
  if (err.code === "NOT_A_CODE") return "never";
  // @ts-expect-error code is an ErrorCode, not a number
  const n: number = err.code;
  void n;
  return err.code;
}

export async function tables(): Promise<void> {
  const log = await Logfold.open({
    name: "ledger",
    snapshotEvery: 5000,
    onProgress: ({ done, total }) => void (done / total),
    projections: {
      accounts: {
        key: "data.account",
        on: {
          Deposited: { add: { balance: "data.amount" }, count: "movements" },
          Transferred: [
            { row: "data.from", subtract: { balance: "data.amount" } },
            { row: "data.to", add: { balance: "data.amount" } },
          ],
          Closed: { delete: true },
        },
      },
      total: { version: 1, init: 0, apply: (t: number, e: StoredEvent) => t + Number((e.data as { amount?: number }).amount ?? 0) },
    },
  });
  const row = log.table("accounts").get("acct-1");
  const balance: Json | undefined = row?.balance;
  const page: { key: string | number; row: Record<string, Json> }[] = log.table("accounts").scan({ prefix: "acct-", limit: 10, reverse: true, where: { owner: "Ada" } });
  const n: number = log.table("accounts").count();
  const total = log.state<number>("total");
  const off: () => void = log.subscribe("accounts", (c) => void c.seq);
  const past = await log.tablesAt(10);
  const pastCount: number = past.table("accounts").count();
  const errors = log.projectionErrors("accounts").errors.map((e) => `${e.seq} ${e.type} ${e.message}`);
  const stats: number = log.stats().eventsReplayed + log.stats().snapshotsLoaded;
  // @ts-expect-error an operation names known operations only
  await Logfold.open({ name: "x", projections: { t: { on: { A: { multiply: { x: 2 } } } } } });
  // @ts-expect-error a reducer's version is a number
  await Logfold.open({ name: "x", projections: { r: { version: "1", init: 0, apply: (s: number) => s } } });
  // @ts-expect-error keys are strings or numbers
  log.table("accounts").get(true);
  off();
  void [balance, page, n, total, pastCount, errors, stats];

  const synced = await Logfold.open({
    name: "notes",
    sync: { url: "https://sync.example.com", log: "notes", getToken: async () => "t", onRejected: (r) => void r.currentVersion, onRetracted: (id: number) => void id },
  });
  const status = synced.sync?.status;
  const pending: number | undefined = status?.pending;
  const unwatch: () => void = synced.sync!.subscribe((s) => void s.lastError?.code);
  await synced.sync?.now();
  const rejected = await synced.rejections();
  if (rejected[0]) await synced.dismissRejection(rejected[0].id);
  // @ts-expect-error a sync state is one of five
  const wrong: (typeof status & {})["state"] = "connected";
  // @ts-expect-error sync needs a server log name
  await Logfold.open({ name: "x", sync: { url: "https://sync.example.com" } });
  unwatch();
  void [pending, wrong];
}
