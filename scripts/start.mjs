// npm start: serves the demo page and the built package, and prints the URL.
import { serve } from "./serve.mjs";

const port = Number(process.env.PORT ?? 8080);
const server = await serve({ mounts: { "/pkg/": "pkg", "/": "www" }, port, host: "127.0.0.1" });
console.log(`logfold demo: http://127.0.0.1:${server.address().port}/  (Ctrl-C to stop)`);
