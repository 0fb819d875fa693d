/** Builds the web viewer (web/) into web/dist, which the Worker serves as static assets (see wrangler.jsonc `assets`). */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig, type Plugin } from "vite";

const here = path.dirname(fileURLToPath(import.meta.url));
const outDir = path.join(here, "dist");

/**
 * A running `wrangler dev` serves web/dist while `npm test` or another dev server
 * rebuilds it, and reloads its Worker (restarting every Durable Object) when a
 * file there changes. So the directory is never emptied, a file whose bytes are
 * already on disk is not written again (unchanged sources give the same hashed
 * names and the same bytes), and only then are the files of earlier builds removed.
 */
function writeOnlyWhatChanged(): Plugin {
  const current = new Set<string>();
  return {
    name: "sortie:write-only-what-changed",
    enforce: "post",
    // After every other plugin's (the HTML one links the chunks it finds in the bundle).
    renderStart() {
      current.clear();
    },
    generateBundle: { order: "post", handler(options, bundle) {
      for (const [name, output] of Object.entries(bundle)) {
        current.add(name);
        const bytes = output.type === "chunk" ? Buffer.from(output.code) : Buffer.from(output.source);
        const existing = path.join(options.dir ?? outDir, name);
        if (fs.existsSync(existing) && fs.readFileSync(existing).equals(bytes)) delete bundle[name];
      }
    } },
    writeBundle(options) {
      const assets = path.join(options.dir ?? outDir, "assets");
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
  plugins: [writeOnlyWhatChanged()],
  logLevel: "warn",
});
