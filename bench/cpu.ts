/**
 * Where the machine's CPU went during a benchmark, from /proc (Linux only):
 * the dev server's process tree (workerd, wrangler, the sandbox host and every
 * sandbox process it ran), this benchmark process, and everything else on
 * the machine. On a shared two-CPU machine the last one says whether a
 * figure was measured on a quiet machine.
 */
import fs from "node:fs";
import os from "node:os";
import { processTree } from "./memory.ts";

const TICKS_PER_SECOND = 100; // USER_HZ: 100 on every Linux that Node supports

/** Busy ticks of the whole machine (all CPUs), from the first line of /proc/stat. */
function machineBusyTicks(): number {
  const [, user, nice, system, , , irq, softirq, steal] = fs.readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).map(Number);
  return user! + nice! + system! + irq! + softirq! + steal!;
}

/**
 * CPU ticks of `root` and its live descendants, each with the ticks of its
 * children that have already ended (cutime, cstime): a sandbox process that
 * ran and exited is counted in the process that waited for it.
 */
function treeTicks(root: number): number {
  let ticks = 0;
  for (const { pid } of [{ pid: root }, ...processTree(root)]) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // After "pid (comm) ": state is field 0, utime 11, stime 12, cutime 13, cstime 14.
      ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    } catch {
      // The process ended between listing and reading; its time moved to its parent.
    }
  }
  return ticks;
}

export interface CpuShare {
  wallSeconds: number;
  cpus: number;
  /** CPU-seconds used by the dev server's tree, this process (and what it ran itself), and the rest of the machine. */
  sortieSeconds: number;
  benchSeconds: number;
  otherSeconds: number;
}

/** Starts counting; `stop()` gives the CPU-seconds each party used since. Null off Linux. */
export function startCpuAccount(devServerPid: number | null) {
  if (!fs.existsSync("/proc/stat")) return null;
  const t0 = performance.now();
  const busy0 = machineBusyTicks();
  const tree0 = devServerPid ? treeTicks(devServerPid) : 0;
  // This process and what it ran (git, Claude Code started directly, wrangler), which includes the dev server's tree.
  const self0 = treeTicks(process.pid);
  return {
    stop(): CpuShare {
      const busy = (machineBusyTicks() - busy0) / TICKS_PER_SECOND;
      const sortie = devServerPid ? (treeTicks(devServerPid) - tree0) / TICKS_PER_SECOND : 0;
      const bench = Math.max(0, (treeTicks(process.pid) - self0) / TICKS_PER_SECOND - sortie);
      const round = (n: number) => Math.round(n * 10) / 10;
      return {
        wallSeconds: round((performance.now() - t0) / 1000),
        cpus: os.availableParallelism(),
        sortieSeconds: round(sortie),
        benchSeconds: round(bench),
        otherSeconds: round(Math.max(0, busy - sortie - bench)),
      };
    },
  };
}

/** One line for a benchmark's notes. */
export function describeCpu(share: CpuShare): string {
  const of = (seconds: number) => `${seconds} s (${Math.round((seconds / (share.wallSeconds * share.cpus)) * 100)}%)`;
  return `CPU over ${share.wallSeconds} s on ${share.cpus} CPUs: the dev server's processes ${of(share.sortieSeconds)}, the benchmark client ${of(share.benchSeconds)}, other processes on the machine ${of(share.otherSeconds)}.`;
}
