// The ledger in React: the hooks render the table, one row, the reducer and the sync status.
// window.renders counts renders per component and window.heard the changes the log announced,
// so the test sees that React renders once per change at most and does not loop.
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { Logfold } from "logfold";
import { useProjectionState, useRow, useSyncStatus, useTable } from "logfold/react";
import { projections } from "../shared/ledger.js";

const renders = (window.renders = { accounts: 0, row: 0, total: 0, status: 0 });
const heard = (window.heard = { accounts: 0, status: 0 });
const statuses = (window.statuses = []); // every status a render showed

function Accounts({ log }) {
  renders.accounts++;
  const rows = useTable(log, "accounts", { prefix: "acct-" }); // an inline query, new each render
  return (
    <ul id="rows">
      {rows.map(({ key, row }) => (
        <li key={key}>{`${key} ${row.owner} ${row.balance}`}</li>
      ))}
    </ul>
  );
}

function Account({ log, id }) {
  renders.row++;
  const row = useRow(log, "accounts", id);
  return <p id="row">{row ? `${row.owner} has ${row.balance} after ${row.deposits} deposits` : "no account"}</p>;
}

function Total({ log }) {
  renders.total++;
  return <p id="total">{useProjectionState(log, "total")}</p>;
}

function Status({ log }) {
  renders.status++;
  const status = useSyncStatus(log);
  statuses.push({ pending: status.pending, confirmed: status.confirmed, state: status.state });
  return <p id="status">{`pending ${status.pending}, confirmed ${status.confirmed}`}</p>;
}

function App({ log, account }) {
  const deposit = () => log.append({ stream: account, type: "Deposited", data: { amount: 10 } });
  return (
    <>
      <Accounts log={log} />
      <Account log={log} id={account} />
      <Total log={log} />
      <Status log={log} />
      <button id="deposit" onClick={deposit}>deposit 10</button>
    </>
  );
}

const q = new URLSearchParams(location.search);
const account = q.get("account");
const log = await Logfold.open({ name: q.get("name"), projections, sync: { url: q.get("sync"), log: q.get("log") } });
window.log = log;
log.subscribe("accounts", () => heard.accounts++);
log.sync.subscribe(() => heard.status++);
createRoot(document.querySelector("#root")).render(
  <StrictMode>
    <App log={log} account={account} />
  </StrictMode>,
);
