/**
 * The plan commands: `sortie plan` starts one (and may follow it), `sortie
 * plans` lists them, `sortie approve` approves one that waits. Following
 * polls the plan, so it works on every Node the CLI runs on.
 */
import { once } from "node:events";
import { palette, statusColor, cut, wantsColor } from "./style.mjs";

const stdout = process.stdout;
const c = palette(wantsColor(stdout));
const ENDED = new Set(["succeeded", "failed", "cancelled"]);
/** How often a followed plan is read again. */
const POLL_MS = 2000;

async function write(chunk) {
  if (!stdout.write(chunk)) await once(stdout, "drain");
}
const printJson = (value) => write(`${JSON.stringify(value, null, 2)}\n`);

/** One line per subtask: its key, status, what it depends on and owns, and its task. */
export function planDetails(plan, colors = c) {
  const lines = [`${colors.bold(plan.id)}  ${statusColor(colors, plan.status)(plan.status)}  ${plan.repo}  $${plan.costUsd.toFixed(2)}`];
  if (plan.plan?.summary) lines.push(colors.dim(cut(plan.plan.summary, 200)));
  for (const s of plan.subtasks) {
    const after = s.dependsOn.length ? ` after ${s.dependsOn.join(", ")}` : "";
    lines.push(`  ${s.key.padEnd(16)} ${statusColor(colors, s.status)(s.status.padEnd(10))} owns ${s.owns.join(", ")}${after}${s.taskId ? colors.dim(`  task ${s.taskId}`) : ""}${s.error ? `  ${colors.red(s.error.code)}` : ""}`);
  }
  if (plan.integration) {
    const checks = plan.integration.checks.map((k) => `${k.exitCode === 0 ? "ok" : `exit ${k.exitCode}`} ${k.command}`).join("; ");
    lines.push(`  integration ${statusColor(colors, plan.integration.status)(plan.integration.status)} on ${plan.integration.branch}${plan.integration.diff ? `, ${plan.integration.diff.files} files` : ""}${checks ? colors.dim(`  ${checks}`) : ""}`);
    if (plan.integration.pullRequest) lines.push(`  ${plan.integration.pullRequest.url}`);
  }
  if (plan.error) lines.push(colors.red(`${plan.error.code}: ${plan.error.message}`));
  return lines.join("\n");
}

/** `sortie plan <repo> "<spec>" [--approve] [--follow]` */
export async function plan({ values, positionals: [repo, spec], client }) {
  const body = { repo, spec: spec === "-" ? await readStdin() : spec };
  if (values.approve) body.approve = "auto";
  if (values.branch !== undefined) body.branch = values.branch;
  if (values.pr) body.output = "pr";
  const created = await client.createPlan(body);
  if (!values.follow) {
    if (values.json) await printJson(created);
    else await write(`${c.bold(created.id)}  ${statusColor(c, created.status)(created.status)}\n${created.url}\n${c.dim(`approve it when it waits: sortie approve ${created.id}`)}\n`);
    return 0;
  }
  const ended = await followPlan(client, created, values.json);
  if (values.json) await printJson(ended);
  return ended.status === "succeeded" ? 0 : 1;
}

/** Polls the plan, printing each change of its status and its subtasks', until it ends. */
async function followPlan(client, plan, quiet) {
  const seen = new Map();
  let status = null;
  for (;;) {
    if (!quiet && plan.status !== status) {
      status = plan.status;
      await write(`${c.bold(plan.id)}  ${statusColor(c, status)(status)}\n`);
      if (status === "awaiting_approval") await write(`${planDetails(plan)}\n${c.dim(`approve: sortie approve ${plan.id}`)}\n`);
    }
    for (const s of plan.subtasks) {
      if (quiet || seen.get(s.key) === s.status) continue;
      seen.set(s.key, s.status);
      if (plan.status !== "awaiting_approval") await write(`  ${s.key.padEnd(16)} ${statusColor(c, s.status)(s.status)}${s.taskId ? c.dim(`  task ${s.taskId}`) : ""}\n`);
    }
    if (ENDED.has(plan.status)) {
      if (!quiet) await write(`${planDetails(plan)}\n`);
      return plan;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    plan = await client.getPlan(plan.id);
  }
}

/** `sortie plans [--status S] [--repo R]` */
export async function plans({ values, client }) {
  const page = await client.listPlans({ status: values.status, repo: values.repo });
  if (values.json) {
    await printJson(page);
    return 0;
  }
  if (page.plans.length === 0) await write(c.dim("no plans\n"));
  for (const p of page.plans) await write(`${c.bold(p.id)}  ${statusColor(c, p.status)(p.status.padEnd(17))} ${p.repo.padEnd(24)} ${String(p.subtasks).padStart(2)} subtasks  ${cut(p.spec.split("\n")[0] ?? "", 60)}\n`);
  return 0;
}

/** `sortie approve <plan>` */
export async function approve({ values, positionals: [id], client }) {
  const approved = await client.approvePlan(id);
  await (values.json ? printJson(approved) : write(`${planDetails(approved)}\n`));
  return 0;
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}
