/**
 * Records the fixtures of test/node/fold.test.ts: real tasks of every kind,
 * each printed as `SORTIE-FIXTURE <name> <json>` with its log and the state
 * served after it. Not part of the suite: `npm run record:logs` runs it and
 * writes test/fixtures/task-logs/.
 */
import { env } from "cloudflare:workers";
import { describe, it } from "vitest";
import type { TaskView } from "../../src/schema.ts";
import { api, createTask, getTask, readEvents, scripted, waitForPhase, waitForStatus } from "./helpers.ts";

const write = (file: string) => ({ tool: "Write", input: { file_path: file, content: `${file}\n` } });
const hold = (ms: number) => ({ tool: "Bash", input: { command: `node -e 'setTimeout(() => {}, ${ms})'` } });

async function settled(id: string, until: (task: TaskView) => boolean): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (until(await getTask(id))) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function print(name: string, id: string): Promise<void> {
  for (;;) {
    const events = await readEvents(id);
    const served = await getTask(id);
    if ((await readEvents(id)).length !== events.length) continue;
    console.log(`SORTIE-FIXTURE ${name} ${JSON.stringify({ events, served })}`);
    return;
  }
}

describe("recorded logs", () => {
  it("records a task of every kind", { timeout: 600_000 }, async () => {
    const verdict = { winner: 1, ranking: [1, 0], reasons: "Run 1 also updates the README." };
    const judged = await createTask({
      prompt: `improve the docs\n#!standin-judge ${JSON.stringify([{ text: JSON.stringify(verdict) }])}`,
      runs: 2,
      judge: true,
      variants: [{ prompt_suffix: `#!standin ${JSON.stringify([write("DOCS.md")])}` }, { prompt_suffix: `#!standin ${JSON.stringify([{ tool: "Bash", input: { command: "echo docs > DOCS.md && echo more >> README.md" } }])}` }],
    });
    await waitForStatus(judged.id, ["succeeded", "failed"], 60_000);
    await print("judge", judged.id);

    const followed = await createTask({ keepWorkspaceMinutes: 5, prompt: scripted([write("first.txt"), { text: "first done" }, write("second.txt"), { text: "second done" }]) });
    await waitForStatus(followed.id, ["succeeded", "failed"], 60_000);
    await api(`/api/tasks/${followed.id}/messages`, { method: "POST", body: JSON.stringify({ text: "now add the second file" }) });
    await waitForStatus(followed.id, ["succeeded", "failed"], 60_000);
    await print("follow-up", followed.id);

    const cancelled = await createTask({ prompt: scripted([hold(60_000)]) });
    await waitForPhase(cancelled.id, "agent", 60_000);
    await api(`/api/tasks/${cancelled.id}/cancel`, { method: "POST" });
    await waitForStatus(cancelled.id, ["cancelled"], 60_000);
    await print("cancel", cancelled.id);

    const timedOut = await createTask({ timeoutMinutes: 0.05, prompt: scripted([hold(60_000)]) });
    await waitForStatus(timedOut.id, ["timed_out"], 60_000);
    await print("timeout", timedOut.id);

    const budget = await createTask({ maxCostUsd: 0.002, prompt: scripted([hold(10), hold(10), hold(10), hold(10), hold(10), hold(10)]) });
    await waitForStatus(budget.id, ["failed", "succeeded"], 60_000);
    await print("budget", budget.id);

    await fetch(`${env.LOCAL_SANDBOX_URL}/v1/faults`, { method: "POST", headers: { authorization: `Bearer ${env.LOCAL_SANDBOX_TOKEN}` }, body: JSON.stringify({ failOpens: 1 }) });
    const retried = await createTask({ prompt: scripted([{ text: "started eventually" }]) });
    await waitForStatus(retried.id, ["succeeded", "failed"], 60_000);
    await print("retry", retried.id);

    const workspace = await createTask({ isolation: "workspace", prompt: scripted([write("W.md")]) });
    await waitForStatus(workspace.id, ["succeeded", "failed"], 60_000);
    await print("workspace", workspace.id);

    const analysis = await createTask({ isolation: "analysis", prompt: scripted([{ text: "The answer is 42." }]) });
    await waitForStatus(analysis.id, ["succeeded", "failed"], 60_000);
    await print("analysis", analysis.id);

    const published = await createTask({ output: "branch", prompt: scripted([write("C.md")]) });
    await waitForStatus(published.id, ["succeeded"], 60_000);
    await settled(published.id, (task) => task.publication?.status === "succeeded" || task.publication?.status === "failed");
    await print("publish", published.id);

    const approve = { tool: "Bash", input: { command: `cat > "$SORTIE_REVIEW_FILE" <<'JSON'\n${JSON.stringify({ verdict: "approve", findings: [] })}\nJSON` } };
    const reviewed = await createTask({ review: { agent: "claude-code", rounds: 1 }, prompt: `${scripted([write("R.md")])}\n#!standin-review ${JSON.stringify([[approve, { text: "Approved." }]])}` });
    await waitForStatus(reviewed.id, ["succeeded", "failed"], 60_000);
    await print("review", reviewed.id);
  });
});
