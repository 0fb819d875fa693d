/** What /proc says about the processes below one: how the host finds a walled command's whole tree. */
import { existsSync, readFileSync, readdirSync } from "node:fs";

/** The processes below `pid`, from each process's parent in /proc. */
export function descendantsOf(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSyncSafe("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    // The parent is the 4th field, after the command name in parentheses (which may hold spaces).
    const stat = readFileSyncSafe(`/proc/${entry}/stat`);
    const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (parent) children.set(parent, [...(children.get(parent) ?? []), Number(entry)]);
  }
  const found: number[] = [];
  for (let queue = [pid]; queue.length; ) {
    const next = children.get(queue.shift()!) ?? [];
    found.push(...next);
    queue.push(...next);
  }
  return found;
}

/**
 * The processes below `pid` as a walk down from it, each one's children read from /proc (a few reads, where
 * descendantsOf reads every process): for finding one process under another. A list holds the children of a
 * process's main thread, which is every child of the single-threaded chain above a wall server (setpriv, bash,
 * bubblewrap). Where the kernel keeps no children lists, descendantsOf.
 */
export function descendantsBelow(pid: number): number[] {
  const found: number[] = [];
  for (let queue = [pid]; queue.length; ) {
    const next = queue.shift()!;
    let children: string;
    try {
      children = readFileSync(`/proc/${next}/task/${next}/children`, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT" && next === pid && existsSync(`/proc/${pid}`)) return descendantsOf(pid);
      continue; // ended meanwhile
    }
    const pids = children.split(" ").filter(Boolean).map(Number);
    found.push(...pids);
    queue.push(...pids);
  }
  return found;
}

function readdirSyncSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return []; // no /proc (macOS): the process group is all there is
  }
}

function readFileSyncSafe(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return ""; // the process ended meanwhile
  }
}
