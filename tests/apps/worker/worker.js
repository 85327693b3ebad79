// The log lives here: the page calls the ledger's methods by message and hears its rows.
import { ledger } from "../shared/ledger.js";

const app = ledger({ onChange: (rows) => postMessage({ rows }) });

onmessage = async ({ data: { id, method, args } }) => {
  try {
    postMessage({ id, result: await app[method](...args) });
  } catch (e) {
    postMessage({ id, error: `${e?.name}: ${e?.message} ${e?.code ?? ""}` });
  }
};
