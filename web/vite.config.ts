/** Builds the web viewer (web/) into web/dist, which the Worker serves as static assets (see wrangler.jsonc `assets`). */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig, type Plugin } from "vite";

const here = path.dirname(fileURLToPath(import.meta.url));
const outDir = path.join(here, "dist");

/**
 * A running `wrangler dev` serves web/dist while `npm test` or another dev server
 * rebuilds it, so the directory is never emptied: files are overwritten in place
 * (unchanged sources give the same hashed names) and only then are the
 * files of earlier builds removed.
 */
function pruneEarlierBuilds(): Plugin {
  return {
    name: "sortie:prune-earlier-builds",
    writeBundle(_options, bundle) {
      const current = new Set(Object.keys(bundle));
      const assets = path.join(outDir, "assets");
      for (const name of fs.existsSync(assets) ? fs.readdirSync(assets) : []) {
        if (!current.has(`assets/${name}`)) fs.rmSync(path.join(assets, name), { force: true });
      }
    },
  };
}

export default defineConfig({
  root: here,
  // The viewer imports src/schema.ts, so the API's shapes and the viewer's cannot drift.
  server: { fs: { allow: [path.resolve(here, "..")] } },
  build: { outDir, emptyOutDir: false, target: "es2022" },
  plugins: [pruneEarlierBuilds()],
  logLevel: "warn",
});
