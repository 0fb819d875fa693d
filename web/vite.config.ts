/** Builds the web viewer (web/) into web/dist, which the Worker serves as static assets (see wrangler.jsonc `assets`). */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const here = path.dirname(fileURLToPath(import.meta.url));

export default defineConfig({
  root: here,
  // The viewer imports src/schema.ts, so the API's shapes and the viewer's cannot drift.
  server: { fs: { allow: [path.resolve(here, "..")] } },
  build: { outDir: path.join(here, "dist"), emptyOutDir: true, target: "es2022" },
  logLevel: "warn",
});
