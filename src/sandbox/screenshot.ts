/**
 * A PNG of a run's preview on the cloudflare backend, taken with the Browser
 * Rendering binding (BROWSER) through `@cloudflare/puppeteer`.
 *
 * The browser never reaches the preview's public host: that would need
 * PREVIEW_HOSTNAME and a credential in the browser. It loads the page from
 * an origin of its own that resolves nowhere, and Sortie answers each of that
 * origin's requests from the container's port (`fetchPort`), as the local
 * backend's browser reaches the port through a relay of its own
 * (container/screenshot.ts). The app sees its own root paths. Requests to
 * other origins are refused: the page is the agent's work, and the browser
 * is no way around the sandbox's egress policy.
 *
 *   const png = await screenshotThroughBrowser(env.BROWSER, (request) => port.fetchPort(id, 8080, request), "/");
 */
import puppeteer, { type HTTPRequest } from "@cloudflare/puppeteer";
import { answeredByApp } from "./port.ts";

/**
 * Headers of the app's answer that describe its encoding on the wire, not the body the browser is handed (the
 * runtime's fetch has decoded it already): kept, they would tell the browser to decode it again.
 */
const DROPPED_HEADERS = new Set(["content-encoding", "content-length", "transfer-encoding"]);

/** The page's origin inside the browser; every request to it is answered from the container. */
export const PREVIEW_ORIGIN = "http://preview.sortie.invalid";

export interface BrowserScreenshotOptions {
  width?: number;
  height?: number;
  timeoutMs?: number;
}

export async function screenshotThroughBrowser(
  binding: BrowserRun,
  fetchApp: (request: Request) => Promise<Response>,
  pathAndQuery: string,
  options: BrowserScreenshotOptions = {},
): Promise<Uint8Array> {
  const browser = await puppeteer.launch(binding);
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: options.width ?? 1280, height: options.height ?? 800 });
    await page.setRequestInterception(true);
    page.on("request", (request) => void answer(request, fetchApp));
    const target = new URL(pathAndQuery.startsWith("/") ? pathAndQuery : `/${pathAndQuery}`, PREVIEW_ORIGIN);
    const response = await page.goto(target.href, { waitUntil: "load", timeout: options.timeoutMs ?? 30_000 });
    if (response && response.status() >= 500) throw new Error(`the preview answered ${response.status()} at ${target.pathname}`);
    return await page.screenshot({ type: "png" });
  } finally {
    await browser.close().catch(() => undefined);
  }
}

/** Answers one of the page's requests: its own origin's from the container, another's from the network. */
async function answer(request: HTTPRequest, fetchApp: (request: Request) => Promise<Response>): Promise<void> {
  const url = new URL(request.url());
  if (url.origin !== PREVIEW_ORIGIN) return request.abort("blockedbyclient").catch(() => undefined);
  try {
    const method = request.method();
    const body = method === "GET" || method === "HEAD" ? undefined : request.postData();
    const reply = await fetchApp(new Request(url, { method, headers: request.headers(), body }));
    if (!answeredByApp(reply)) return request.respond({ status: 502, contentType: "text/plain", body: "nothing answers on the preview's port" });
    const headers: Record<string, string> = {};
    reply.headers.forEach((value, name) => {
      // The body handed over is decoded already, and its length is the browser's to count.
      if (!DROPPED_HEADERS.has(name)) headers[name] = value;
    });
    await request.respond({ status: reply.status, headers, body: new Uint8Array(await reply.arrayBuffer()) });
  } catch {
    await request.abort("failed").catch(() => undefined);
  }
}
