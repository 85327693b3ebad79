import { ledger } from "../shared/ledger.js";
import { renderRows } from "../shared/page.js";

window.app = ledger({ onChange: renderRows });
