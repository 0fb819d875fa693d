/**
 * The Fleet alone, for its benchmark (fleet.test.ts): the real Fleet class,
 * with task agents replaced by stand-ins that take every grant at once and
 * hold every slot, so what is measured is the Fleet, not the runs.
 */
import { DurableObject } from "cloudflare:workers";

export { Fleet } from "../../src/agents/fleet.ts";

/** Answers the Fleet as a task agent would, at once. */
export class TaskAgent extends DurableObject {
  /** What `getAgentByName` calls before handing out the stub. */
  async __unsafe_ensureInitialized(): Promise<void> {}

  grantRun(): boolean {
    return true;
  }

  holdsSlot(): boolean {
    return true;
  }

  async closeIfStale(): Promise<void> {}
}

export default {
  fetch: () => new Response("the Fleet benchmark's worker has no routes", { status: 404 }),
};
