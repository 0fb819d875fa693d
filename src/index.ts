/**
 * The Sortie Worker: the HTTP API in front, the task agents and the sandbox
 * class behind it. Wrangler reads the Durable Object classes from these exports.
 */
import { buildApp } from "./api/app.ts";
import { servePreviewHost } from "./api/preview-hosts.ts";

export { TaskAgent } from "./agents/task-agent.ts";
export { Fleet } from "./agents/fleet.ts";
export { ScheduleAgent } from "./agents/schedule-agent.ts";
export { PullRequestAgent } from "./agents/pull-request-agent.ts";
export { PlanAgent } from "./agents/plan-agent.ts";
// The sandbox class keeps its binding's name; ContainerProxy carries the container's egress to it.
export { SortieSandbox as Sandbox } from "./sandbox/sortie-sandbox.ts";
export { ContainerProxy } from "@cloudflare/sandbox";

const app = buildApp();

export default {
  // Preview hosts (Cloudflare's exposed ports) first: they are the runs' apps, never the API.
  fetch: async (request, env, ctx) => (await servePreviewHost(request, env)) ?? app.fetch(request, env, ctx),
} satisfies ExportedHandler<Cloudflare.Env>;
