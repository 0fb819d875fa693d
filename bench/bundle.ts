/**
 * Worker bundle size: what `wrangler deploy` would upload, built with
 * `--dry-run` into a temporary directory, raw and gzipped, and the packages
 * that take the most of it (from esbuild's metafile).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { root, runCommand } from "./command.ts";
import { round, table, type Figure } from "./report.ts";
import type { BenchResult } from "./result.ts";

const KiB = 1024;

interface Metafile {
  outputs: Record<string, { bytes: number; inputs: Record<string, { bytesInOutput: number }> }>;
}

/** `node_modules/@scope/name/…` → `@scope/name`; the project's own files → `(sortie)`. */
function packageOf(input: string): string {
  const at = input.lastIndexOf("node_modules/");
  if (at < 0) return "(sortie)";
  const parts = input.slice(at + "node_modules/".length).split("/");
  return parts[0]!.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0]!;
}

export async function benchBundle(): Promise<BenchResult> {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), "sortie-bench-bundle-"));
  try {
    // The project's own wrangler, as `npx wrangler` would pick it.
    const wrangler = path.join(root, "node_modules", ".bin", "wrangler");
    const args = ["deploy", "--dry-run", "--containers-rollout=none", "--outdir", outdir, "--metafile", path.join(outdir, "meta.json")];
    const output = await runCommand(wrangler, args, 120_000);
    const bundle = fs.readFileSync(path.join(outdir, "index.js"));
    const rawKiB = round(bundle.length / KiB);
    const gzipKiB = round(gzipSync(bundle).length / KiB);
    const reported = /Total Upload: ([\d.]+) KiB \/ gzip: ([\d.]+) KiB/.exec(output);

    const meta = JSON.parse(fs.readFileSync(path.join(outdir, "meta.json"), "utf8")) as Metafile;
    const byPackage = new Map<string, number>();
    for (const out of Object.values(meta.outputs)) {
      for (const [input, { bytesInOutput }] of Object.entries(out.inputs)) byPackage.set(packageOf(input), (byPackage.get(packageOf(input)) ?? 0) + bytesInOutput);
    }
    const largest = [...byPackage.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8);

    const figures: Figure[] = [
      { name: "bundle, raw", value: rawKiB, unit: "KiB" },
      { name: "bundle, gzip", value: gzipKiB, unit: "KiB" },
    ];
    const notes = [
      reported ? `wrangler reports Total Upload: ${reported[1]} KiB / gzip: ${reported[2]} KiB.` : "wrangler printed no upload size.",
      "Largest contributors (KiB in the bundle, unminified):",
      table(["package", "KiB", "share"], largest.map(([name, bytes]) => [name, round(bytes / KiB), `${Math.round((bytes / bundle.length) * 100)}%`])),
    ];
    return {
      figures,
      notes,
      details: { rawBytes: bundle.length, gzipBytes: gzipSync(bundle).length, rawKiB, gzipKiB, wranglerReported: reported ? { rawKiB: Number(reported[1]), gzipKiB: Number(reported[2]) } : null, largest: Object.fromEntries(largest) },
    };
  } finally {
    fs.rmSync(outdir, { recursive: true, force: true });
  }
}
