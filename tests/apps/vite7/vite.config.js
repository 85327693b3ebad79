export default {
  // Vite 7 pre-bundles with esbuild, which moves logfold's code away from logfold_bg.wasm and
  // breaks its `new URL("logfold_bg.wasm", import.meta.url)`; Vite 8 rewrites that URL.
  optimizeDeps: { exclude: ["logfold"] },
};
