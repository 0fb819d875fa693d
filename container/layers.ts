/**
 * Copy-on-write directories for the local sandbox host: a restored snapshot
 * or a dependency cache becomes an overlay mount whose lower layer is the
 * shared, never-written original and whose upper layer is the sandbox's own.
 * Restoring is then instant whatever the size, and nothing a run writes
 * reaches the original or another run: what the Cloudflare backend gets from
 * the SDK's restoreBackup. Where overlay mounts are not allowed (not root, no
 * overlayfs), the directory is copied instead.
 */
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";

interface Mount {
  owner: string;
  lower: string;
  target: string;
}

export class DirectoryLayers {
  private readonly mounts: Mount[] = [];
  /** Originals whose deletion waits for their last mount to go. */
  private readonly doomed = new Set<string>();

  readonly overlay: boolean;

  private constructor(overlay: boolean) {
    this.overlay = overlay;
  }

  /** Tries one overlay mount under `scratch` to learn whether this machine allows them. */
  static async create(scratch: string): Promise<DirectoryLayers> {
    const dirs = ["lower", "upper", "work", "merged"].map((name) => path.join(scratch, name));
    try {
      for (const dir of dirs) await fs.mkdir(dir, { recursive: true });
      await run("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${dirs[0]},upperdir=${dirs[1]},workdir=${dirs[2]}`, dirs[3]!]);
      await run("umount", [dirs[3]!]);
      return new DirectoryLayers(true);
    } catch {
      return new DirectoryLayers(false);
    } finally {
      await fs.rm(scratch, { recursive: true, force: true });
    }
  }

  /**
   * Makes `target` a private, writable view of `lower` for `owner` (a
   * sandbox), its upper layer under `layerDir`; whatever was at `target` goes.
   */
  async layer(owner: string, lower: string, target: string, layerDir: string): Promise<"overlay" | "copy"> {
    await this.unmount((mount) => mount.target === target);
    await fs.rm(target, { recursive: true, force: true });
    if (!this.overlay) {
      await fs.mkdir(path.dirname(target), { recursive: true });
      await copyTree(lower, target);
      return "copy";
    }
    const layer = path.join(layerDir, `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`);
    const upper = path.join(layer, "upper");
    const work = path.join(layer, "work");
    for (const dir of [upper, work, target]) await fs.mkdir(dir, { recursive: true });
    // The overlay's root takes the upper layer's owner and mode: give it the original's.
    const original = await fs.stat(lower);
    await fs.chown(upper, original.uid, original.gid);
    await fs.chmod(upper, original.mode & 0o7777);
    const options = `lowerdir=${lower},upperdir=${upper},workdir=${work}`;
    // metacopy: a chown or chmod of a lower file (a confined run taking its checkout) copies its metadata, not its bytes.
    await run("mount", ["-t", "overlay", "overlay", "-o", `${options},metacopy=on`, target]).catch(() => run("mount", ["-t", "overlay", "overlay", "-o", options, target]));
    this.mounts.push({ owner, lower, target });
    return "overlay";
  }

  /** Whether `target` is one of the overlay mounts made here. */
  isLayered(target: string): boolean {
    return this.mounts.some((mount) => mount.target === target);
  }

  /** Takes `target` down (unmounting it if it is a layer) and deletes it. */
  async remove(target: string): Promise<void> {
    await this.unmount((mount) => mount.target === target);
    await fs.rm(target, { recursive: true, force: true });
  }

  /** Unmounts everything `owner` mounted (its sandbox is going), and deletes originals that waited for it. */
  async release(owner: string): Promise<void> {
    await this.unmount((mount) => mount.owner === owner);
  }

  /** Deletes an original now, or once no mount uses it. */
  async drop(lower: string): Promise<void> {
    await this.forgetGone();
    if (this.mounts.some((mount) => mount.lower === lower)) this.doomed.add(lower);
    else await fs.rm(lower, { recursive: true, force: true });
  }

  /** Forgets mounts a sandbox's own commands took down (a removed worktree unmounts what lies inside it). */
  private async forgetGone(): Promise<void> {
    if (!this.mounts.length) return;
    const mounted = new Set((await fs.readFile("/proc/self/mounts", "utf8")).split("\n").map((line) => line.split(" ")[1]));
    for (const mount of this.mounts.filter((m) => !mounted.has(m.target))) this.mounts.splice(this.mounts.indexOf(mount), 1);
  }

  private async unmount(which: (mount: Mount) => boolean): Promise<void> {
    for (const mount of this.mounts.filter(which)) {
      // Lazy: a process that still has a file open there does not keep the sandbox from going.
      // A mount the sandbox's own commands already took down (a removed worktree) is simply gone.
      await run("umount", ["-l", mount.target]).catch(() => undefined);
      this.mounts.splice(this.mounts.indexOf(mount), 1);
      if (this.doomed.has(mount.lower) && !this.mounts.some((other) => other.lower === mount.lower)) {
        this.doomed.delete(mount.lower);
        await fs.rm(mount.lower, { recursive: true, force: true });
      }
    }
  }
}

/** Copies a directory tree, sharing blocks with the original where the filesystem can (reflink). */
export function copyTree(from: string, to: string): Promise<void> {
  return run("cp", ["-a", "--reflink=auto", from, to]);
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "ignore", "pipe"] });
    let error = "";
    child.stderr!.on("data", (chunk: Buffer) => (error += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`${command} exited ${code}: ${error.trim()}`))));
  });
}
