// The app every packaging test builds: a ledger of accounts folded from a synced log. The test
// drives it with start() and deposit() and reads what it saw with report(). It touches no DOM,
// so a worker runs it as it is; `onChange(rows)` is how a page renders.
import { Logfold } from "logfold";

export const projections = {
  accounts: {
    key: "stream",
    on: {
      Opened: { set: { owner: "data.owner", balance: 0, deposits: 0 } },
      Deposited: { add: { balance: "data.amount" }, count: "deposits" },
    },
  },
  // A JS reducer too, so bundlers carry the callback path as well as the wasm tables.
  total: {
    version: 1,
    init: 0,
    apply: (total, e) => (e.type === "Deposited" ? total + e.data.amount : total),
  },
};

// Plain copies: what crosses postMessage or page.evaluate.
const plain = (v) => JSON.parse(JSON.stringify(v ?? null));

export function ledger({ onChange = () => {} } = {}) {
  let log;
  const changes = [];
  const states = [];
  const rows = () => log.table("accounts").scan();

  return {
    /** Opens `name` synced with server log `serverLog` at `url`, opens `account`, waits for sync. */
    async start({ name, url, serverLog, account, owner }) {
      log = await Logfold.open({ name, projections, sync: { url, log: serverLog } });
      log.subscribe("accounts", (change) => {
        changes.push(plain(change));
        onChange(rows());
      });
      log.sync.subscribe((status) => states.push(status.state));
      onChange(rows());
      await log.append({ stream: account, type: "Opened", data: { owner } }, { expectedVersion: "none" });
      await log.append([
        { stream: account, type: "Deposited", data: { amount: 250 } },
        { stream: account, type: "Deposited", data: { amount: 100 } },
      ]);
      await log.sync.settled({ timeout: 30_000 });
      return this.report();
    },

    async deposit(account, amount) {
      await log.append({ stream: account, type: "Deposited", data: { amount } });
      await log.sync.settled({ timeout: 30_000 });
    },

    async report() {
      const events = (await log.read()).map(({ id, seq, offset, stream, type }) => ({ id, seq, offset, stream, type }));
      return plain({ rows: rows(), total: log.state("total"), changes, states, events, status: log.sync.status });
    },
  };
}
