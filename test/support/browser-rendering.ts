/**
 * Lets the Worker's Browser Rendering binding (BROWSER, wrangler.jsonc) run in
 * tests on this machine. Miniflare emulates the binding with a local Chrome it
 * would download into wrangler's cache; there is no internet here, so the
 * cache's Chrome is made to be Debian's Chromium before any test asks for it.
 * Nothing is downloaded: `install` finds the executable already there.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/** The Chrome for Testing build miniflare asks for (BROWSER_VERSION in miniflare). */
const MINIFLARE_CHROME = "126.0.6478.182";

export function plantChromeForBrowserRendering(chromium = process.env.LOCAL_SANDBOX_CHROMIUM ?? "/usr/bin/chromium"): string {
  const cache = process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache");
  const dir = path.join(cache, ".wrangler", "chrome", `linux-${MINIFLARE_CHROME}`, "chrome-linux64");
  const executable = path.join(dir, "chrome");
  fs.mkdirSync(dir, { recursive: true });
  // Root on a CI machine: Chromium's own sandbox needs user namespaces it may not get.
  fs.writeFileSync(executable, `#!/bin/sh\nexec ${chromium} --no-sandbox "$@"\n`, { mode: 0o755 });
  return executable;
}

export default function setup() {
  plantChromeForBrowserRendering();
}
