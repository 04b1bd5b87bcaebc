/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";
import { precompress } from "./scripts/precompress";

// Dev: the app is served on :5180 and talks same-origin; /ws and /ws/agent/<id> are proxied to the
// hypivisor so the browser never needs a second origin (and the hypivisor's Origin check passes).
const target = process.env.HYPIVISOR_URL ?? "http://localhost:31415";

export default defineConfig(({ command }) => ({
  plugins: [react(), precompress()],
  // VITE_HYPI_TOKEN is a dev-server convenience only: a build never inlines it, whatever the
  // shell exports (src/build.test.ts builds with it set and greps the output).
  define: command === "build" ? { "import.meta.env.VITE_HYPI_TOKEN": "undefined" } : {},
  server: {
    port: 5180,
    strictPort: true,
    proxy: { "/ws": { target, ws: true, changeOrigin: false } },
  },
  build: { outDir: "dist", sourcemap: false, chunkSizeWarningLimit: 800 },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.{ts,tsx}"],
    setupFiles: ["src/test-setup.ts"],
  },
}));
