// Vite builds the dashboard into dist/: index.html plus content-hashed files under assets/
// (the gateway serves those as immutable). The browser MQTT client is the npm package that
// `cargo xtask dist` builds into client-wasm/pkg, imported as `client-wasm`; its .wasm file is
// emitted as a hashed asset too, found through the package's `new URL(..., import.meta.url)`.
import { defineConfig } from 'vite';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';

// wasm-bindgen's `--target web` output: an ES module that exports `init` and the classes.
const clientModule = fileURLToPath(new URL('../client-wasm/pkg/client_wasm.js', import.meta.url));

export default defineConfig({
  base: '/',
  resolve: {
    alias: { 'client-wasm': clientModule },
  },
  // The ingest worker (src/worker/) is a module worker: it imports client-wasm, whose .wasm
  // file it finds through `import.meta.url` like the page does.
  worker: { format: 'es' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    assetsInlineLimit: 0,
    sourcemap: false,
    reportCompressedSize: false,
  },
  server: {
    // `npm run dev` against a gateway on its default port.
    proxy: {
      '/mqtt': { target: 'ws://127.0.0.1:8080', ws: true },
      '/api': 'http://127.0.0.1:8080',
    },
  },
  plugins: [
    {
      name: 'require-client-wasm',
      buildStart() {
        if (!existsSync(clientModule)) {
          this.error(`the client-wasm package is not built (no ${clientModule}); run \`cargo xtask dist\``);
        }
      },
    },
  ],
});
