/**
 * The warm index after a sandbox host's restart: the Fleet forgets snapshots
 * the host no longer has, and the host deletes the ones the Fleet no longer
 * names. Checked once per host start (and per Worker isolate: a boot seen
 * here is not asked of the Fleet again).
 */
import type { SandboxPort } from "../sandbox/port.ts";

const reconciled = new Set<string>();

/** Brings the Fleet's warm index and the host's snapshots in line, if the host started since this isolate last looked. */
export async function reconcileWarmIndex(port: SandboxPort, fleet: { reconcileWarm(boot: string, onDisk: string[]): Promise<Iterable<string>> }): Promise<void> {
  if (!port.snapshotsAtStart) return;
  const { boot, snapshots } = await port.snapshotsAtStart();
  if (reconciled.has(boot)) return;
  const unnamed = await fleet.reconcileWarm(boot, snapshots);
  for (const id of unnamed) await port.dropSnapshot(id);
  reconciled.add(boot);
}
