import { defineConfig } from "vite";
import preact from "@preact/preset-vite";

// Served by the gateway under /console; no inline script or style, so the strict CSP holds.
export default defineConfig({
  base: "/console/",
  plugins: [preact()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
});
