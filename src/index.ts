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

/** The paths the Worker answers on the viewer's host; the viewer's files (ASSETS) answer the rest. */
const WORKER_PATHS = /^\/(?:api|slack|github|preview)(?:\/|$)|^\/healthz$/;

export default {
  // Preview hosts (Cloudflare's exposed ports) first, on every path: they are the runs' apps, never the API nor
  // the viewer (wrangler.jsonc sends every request to the Worker first for this).
  fetch: async (request, env, ctx) => {
    const preview = await servePreviewHost(request, env);
    if (preview) return preview;
    if (env.ASSETS && !WORKER_PATHS.test(new URL(request.url).pathname)) return env.ASSETS.fetch(request);
    return app.fetch(request, env, ctx);
  },
} satisfies ExportedHandler<Cloudflare.Env>;
