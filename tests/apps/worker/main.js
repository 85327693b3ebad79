// The page: no logfold here, only a proxy of the worker's ledger with the same methods.
import { renderRows } from "../shared/page.js";

const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
const calls = new Map();
let next = 0;

worker.onmessage = ({ data }) => {
  if (data.rows) return renderRows(data.rows);
  const call = calls.get(data.id);
  calls.delete(data.id);
  if (data.error) call.reject(new Error(data.error));
  else call.resolve(data.result);
};

const call = (method) => (...args) =>
  new Promise((resolve, reject) => {
    const id = next++;
    calls.set(id, { resolve, reject });
    worker.postMessage({ id, method, args });
  });

window.app = { start: call("start"), deposit: call("deposit"), report: call("report") };
