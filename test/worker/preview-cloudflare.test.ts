/**
 * Previews on the Cloudflare backend, against the recording stand-in of the
 * sandbox SDK: the port exposed on PREVIEW_HOSTNAME, exposed again after the
 * container restarted, and preview hosts answered before the API, behind
 * credentials.
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { RunPreviews, type PreviewContext } from "../../src/agents/preview.ts";
import { servePreviewHost } from "../../src/api/preview-hosts.ts";
import { CloudflareSandboxPort } from "../../src/sandbox/cloudflare.ts";
import { applyEvent, emptyFold, parseEvent, type TaskFold } from "../../src/events.ts";
import type { EventInput, TaskSpec, TaskState } from "../../src/schema.ts";
import { RecordingSandboxSdk, type SdkScript } from "../standins/cloudflare-sandbox.ts";
import { api } from "./helpers.ts";

const HOSTNAME = "previews.example.com";

/** The SDK whose first preview process loses its container a moment after it started serving. */
class RestartingSdk extends RecordingSandboxSdk {
  private streams = 0;
  override async streamProcessLogs(processId: string, options?: { signal?: AbortSignal }): Promise<ReadableStream<Uint8Array>> {
    this.streams += 1;
    if (this.streams > 1) return super.streamProcessLogs(processId, options);
    await super.streamProcessLogs(processId, options).catch(() => undefined);
    const frame = (data: unknown) => new TextEncoder().encode(`data: ${JSON.stringify(data)}\n\n`);
    return new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(frame({ type: "stdout", data: "listening\n", processId, timestamp: new Date().toISOString() }));
        setTimeout(() => controller.enqueue(frame({ type: "error", data: "the container restarted", processId, timestamp: new Date().toISOString() })), 600);
      },
    });
  }
}

/** A task agent's side of one run's preview, in memory. */
function previewsOn(sdk: RecordingSandboxSdk) {
  const kv = new Map<string, unknown>();
  // The run's state is the fold of the events its previews record, as in the task agent.
  let fold: TaskFold = { ...emptyFold(), task: { runs: [{ index: 0, workspaceUntil: Date.now() + 60_000 }] } as unknown as TaskState };
  const run = () => fold.task!.runs[0]!;
  const events: EventInput[] = [];
  const port = new CloudflareSandboxPort(() => sdk);
  const ctx: PreviewContext = {
    kv: { get: (key: string) => kv.get(key), put: (key: string, value: unknown) => void kv.set(key, value), delete: (key: string) => kv.delete(key) } as unknown as SyncKvStorage,
    spec: () => ({ id: "task1", preview: { command: "npm run dev", port: 8080, path: "/" } }) as TaskSpec,
    port: () => port,
    runOf: run,
    record: (input) => {
      events.push(input);
      fold = applyEvent(fold, parseEvent({ seq: events.length, ts: Date.now(), ...input }));
    },
    localUrl: () => "/preview/task1/0/",
    hostname: () => HOSTNAME,
    readyTimeoutMs: () => 3000,
  };
  return { previews: new RunPreviews(ctx), run, events, port };
}

const serving: SdkScript = { id: "task1-0", processes: { "proc-1": { live: [{ type: "stdout", data: "listening\n" }] }, "proc-2": { live: [{ type: "stdout", data: "listening\n" }] } }, ports: { 8080: () => new Response("the app") } };

describe("previews on cloudflare", () => {
  it("expose the port on PREVIEW_HOSTNAME and are ready once it answers", async () => {
    const sdk = new RecordingSandboxSdk(serving);
    const { previews, run, port } = previewsOn(sdk);
    const preview = await previews.start(0, await port.open("task1-0"), { cwd: "/workspace/repo", confine: null, env: {} });
    expect(preview.status).toBe("ready");
    expect(preview.url).toMatch(/^https:\/\/8080-task1-0-[a-z0-9]{16}\.previews\.example\.com$/);
    expect(sdk.argsOf("exposePort")).toEqual([[8080, { hostname: HOSTNAME, name: "preview-0" }]]);
    const [command, options] = sdk.argsOf("startProcess")[0] as [string, { env: Record<string, string> }];
    expect(command).toBe("npm run dev");
    expect(options.env).toEqual({ PORT: "8080" });
    expect(run().preview?.status).toBe("ready");
    await previews.stop(0, "deleted");
    expect(sdk.argsOf("unexposePort")).toEqual([[8080]]);
    expect(run().preview?.status).toBe("stopped");
  });

  it("start the command again and expose the port again after the container restarted", async () => {
    const sdk = new RestartingSdk(serving);
    const { previews, run, events, port } = previewsOn(sdk);
    expect((await previews.start(0, await port.open("task1-0"), { cwd: "/workspace/repo", confine: null, env: {} })).status).toBe("ready");
    await expect.poll(() => sdk.argsOf("exposePort").length, { timeout: 5000 }).toBe(2);
    await expect.poll(() => run().preview?.status, { timeout: 5000 }).toBe("ready");
    expect(events.map((e) => e.type)).toContain("preview.restarting");
    expect(sdk.argsOf("startProcess")).toHaveLength(2);
  });

  it("a port nothing listens on is unreachable, not the app's answer", async () => {
    const port = new CloudflareSandboxPort(() => new RecordingSandboxSdk({ ports: {} }));
    const response = await port.fetchPort("task1-0", 8080, new Request("http://preview/"));
    expect(response.status).toBe(502);
    expect(response.headers.get("x-sortie-preview")).toBe("unreachable");
  });

  it("photograph a preview with the Browser Rendering binding, the page and its stylesheet answered from the container's port", async () => {
    // A stylesheet from another origin is refused, and the page still loads.
    const page = `<!doctype html><html><head><link rel="stylesheet" href="/style.css?v=2"><link rel="stylesheet" href="https://cdn.example.invalid/x.css"></head><body><h1>run 0</h1></body></html>`;
    const sdk = new RecordingSandboxSdk({
      ports: {
        8080: (request) => new URL(request.url).pathname === "/style.css"
          ? new Response("html, body { margin: 0; background: rgb(12, 200, 34); color: rgb(12, 200, 34); }", { headers: { "content-type": "text/css" } })
          : new Response(page, { headers: { "content-type": "text/html" } }),
      },
    });
    const port = new CloudflareSandboxPort(() => sdk, null, env.BROWSER);
    const png = await port.screenshot("task1-0", 8080, "/app?tab=1");
    expect(png).not.toBeNull();
    const image = await decodeFirstPixel(png!);
    expect({ width: image.width, height: image.height }).toEqual({ width: 1280, height: 800 });
    // The stylesheet came from the container too: the page's corner has its colour.
    expect(image.rgb).toEqual([12, 200, 34]);
    const fetched = sdk.argsOf("containerFetch").map(([url, onPort]) => `${new URL(url as string).pathname}${new URL(url as string).search} ${onPort}`);
    expect(fetched).toEqual(expect.arrayContaining(["/app?tab=1 8080", "/style.css?v=2 8080"]));
    // No binding, no screenshot (the judge records preview.screenshot_skipped).
    expect(await new CloudflareSandboxPort(() => sdk).screenshot("task1-0", 8080, "/")).toBeNull();
    // A port nothing listens on is no picture of the app.
    await expect(new CloudflareSandboxPort(() => new RecordingSandboxSdk({ ports: {} }), null, env.BROWSER).screenshot("task1-0", 8080, "/")).rejects.toThrow(/502/);
  });

  it("workers.dev cannot carry preview URLs", async () => {
    const sandbox = await new CloudflareSandboxPort(() => new RecordingSandboxSdk()).open("task1-0");
    await expect(sandbox.exposePort(8080, { hostname: "sortie.acme.workers.dev", name: "preview-0" })).rejects.toThrow(/CustomDomainRequired/);
  });

  it("preview hosts answer before the API, 401 without credentials, and trade a ticket for a cookie of that host alone", async () => {
    const withHost = { ...env, PREVIEW_HOSTNAME: HOSTNAME };
    const host = "https://8080-task1-0-abcdefgh12345678.previews.example.com";
    const refused = await servePreviewHost(new Request(`${host}/`), withHost);
    expect(refused?.status).toBe(401);
    expect(await servePreviewHost(new Request(`https://sortie.example.com/api/tasks`), withHost)).toBeNull();
    expect(await servePreviewHost(new Request(`${host}/`), { ...env, PREVIEW_HOSTNAME: "" })).toBeNull();
    const { ticketUrl } = await import("../../src/api/preview-auth.ts");
    const traded = await servePreviewHost(new Request(await ticketUrl(env.SORTIE_ADMIN_TOKEN, `${host}/`)), withHost);
    expect(traded?.status).toBe(303);
    const cookie = traded!.headers.get("set-cookie")!;
    expect(cookie).toMatch(/Path=\/;.*HttpOnly; Secure; SameSite=None; Partitioned/);
    const otherHost = "https://8080-task1-1-abcdefgh12345678.previews.example.com";
    expect((await servePreviewHost(new Request(`${otherHost}/`, { headers: { cookie: cookie.split(";")[0]! } }), withHost))?.status).toBe(401);
    // The Worker's own fetch handler leaves the API alone when no preview domain is set.
    expect((await exports.default.fetch(new Request("https://sortie.test/healthz"))).status).toBe(200);
    expect((await api("/api/tasks?limit=1")).status).toBe(200);
  });
});

/** A PNG's size and the colour of its top-left pixel (every PNG filter leaves a first row's first pixel as it is). */
async function decodeFirstPixel(png: Uint8Array): Promise<{ width: number; height: number; rgb: number[] }> {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  expect([...png.slice(0, 8)]).toEqual([137, 80, 78, 71, 13, 10, 26, 10]);
  const idat: Uint8Array[] = [];
  let width = 0;
  let height = 0;
  let channels = 3;
  for (let at = 8; at < png.byteLength; ) {
    const length = view.getUint32(at);
    const type = new TextDecoder().decode(png.slice(at + 4, at + 8));
    const data = png.slice(at + 8, at + 8 + length);
    if (type === "IHDR") {
      width = view.getUint32(at + 8);
      height = view.getUint32(at + 12);
      channels = data[9] === 6 ? 4 : 3;
    }
    if (type === "IDAT") idat.push(data);
    at += 12 + length;
  }
  const inflated = new Uint8Array(await new Response(new Blob(idat).stream().pipeThrough(new DecompressionStream("deflate"))).arrayBuffer());
  return { width, height, rgb: [...inflated.slice(1, 1 + Math.min(channels, 3))] };
}
