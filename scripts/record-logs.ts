/**
 * Records the event logs test/node/fold.test.ts folds: runs
 * test/worker/record-logs.capture.ts (real tasks against the stand-ins) and
 * writes each `SORTIE-FIXTURE <name> <json>` line it prints to
 * test/fixtures/task-logs/<name>.json.
 *
 *   npm run record:logs
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const out = join(import.meta.dirname, "../test/fixtures/task-logs");
const run = spawnSync("vitest", ["run", "--config", "vitest.worker.config.ts"], { env: { ...process.env, SORTIE_RECORD_LOGS: "1" }, encoding: "utf8", maxBuffer: 1 << 30 });
if (run.status !== 0) {
  process.stderr.write(run.stdout + run.stderr);
  process.exit(run.status ?? 1);
}
mkdirSync(out, { recursive: true });
let written = 0;
// Vitest prints a test's console lines on either stream, coloured.
const printed = `${run.stdout}\n${run.stderr}`.replace(/\x1b\[[0-9;]*m/g, "");
for (const match of printed.matchAll(/SORTIE-FIXTURE (\S+) (\{.+\})$/gm)) {
  const [, name, json] = match;
  writeFileSync(join(out, `${name}.json`), `${JSON.stringify(JSON.parse(json!), null, 1)}\n`);
  written++;
}
console.log(`${written} logs written to ${out}`);
if (written === 0) process.exit(1);
