/**
 * The memory of the dev server's workerd process, read from /proc (Linux
 * only): the closest outside view of a Durable Object's memory, since every
 * TaskAgent of `wrangler dev` lives in that one process.
 */
import fs from "node:fs";
import path from "node:path";
import { sleep } from "./api.ts";

/** The ids of every process below `root`, with their command names. */
export function processTree(root: number): { pid: number; comm: string }[] {
  const children = new Map<number, { pid: number; comm: string }[]>();
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(path.join("/proc", entry, "stat"), "utf8");
    } catch {
      continue; // the process ended while the list was read
    }
    // pid (comm) state ppid …; comm may hold spaces and parentheses, so split at the last ")".
    const close = stat.lastIndexOf(")");
    const comm = stat.slice(stat.indexOf("(") + 1, close);
    const ppid = Number(stat.slice(close + 2).split(" ")[1]);
    const siblings = children.get(ppid) ?? [];
    siblings.push({ pid: Number(entry), comm });
    children.set(ppid, siblings);
  }
  const found: { pid: number; comm: string }[] = [];
  const queue = [root];
  while (queue.length) {
    const pid = queue.shift()!;
    for (const child of children.get(pid) ?? []) {
      found.push(child);
      queue.push(child.pid);
    }
  }
  return found;
}

/** The workerd process under the dev server `root`, or null where /proc cannot show it. */
export function findWorkerd(root: number): number | null {
  if (!fs.existsSync("/proc/self/stat")) return null;
  return processTree(root).find((p) => p.comm === "workerd")?.pid ?? null;
}

/** Resident memory now and at its peak (VmRSS, VmHWM), in MiB; null once the process is gone. */
export function residentMemory(pid: number): { rssMiB: number; peakMiB: number } | null {
  let status: string;
  try {
    status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return null;
  }
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { rssMiB: Math.round(kib("VmRSS") / 102.4) / 10, peakMiB: Math.round(kib("VmHWM") / 102.4) / 10 };
}

/** Samples a process's resident memory every `everyMs` until stopped; `at` counts from the start. */
export function sampleMemory(pid: number | null, everyMs = 250) {
  const samples: { at: number; rssMiB: number }[] = [];
  const t0 = Date.now();
  let stopped = false;
  const loop = (async () => {
    while (!stopped && pid !== null) {
      const now = residentMemory(pid);
      if (now) samples.push({ at: Date.now() - t0, rssMiB: now.rssMiB });
      await sleep(everyMs);
    }
  })();
  return {
    samples,
    peak: () => Math.max(0, ...samples.map((s) => s.rssMiB)),
    stop: async () => {
      stopped = true;
      await loop;
      return samples;
    },
  };
}

/** Bytes of the SQLite files wrangler keeps for one Durable Object class under `persistTo`, largest first. */
export function durableObjectFiles(persistTo: string, className: string): { file: string; bytes: number }[] {
  const root = path.join(persistTo, "v3", "do");
  if (!fs.existsSync(root)) return [];
  const dirs = fs.readdirSync(root).filter((dir) => dir.endsWith(`-${className}`));
  return dirs
    .flatMap((dir) => fs.readdirSync(path.join(root, dir)).map((file) => path.join(root, dir, file)))
    .filter((file) => /\.sqlite(-wal|-shm)?$/.test(file))
    .map((file) => ({ file, bytes: fs.statSync(file).size }))
    .sort((a, b) => b.bytes - a.bytes);
}
