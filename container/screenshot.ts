/**
 * A PNG of a preview, taken on the host (Chromium through playwright-core):
 * the browser is the host's, outside every sandbox's walls. It loads the page
 * from a loopback port of its own that leads to the preview's port, so the
 * app sees its own root paths, as it would at its own URL. Requests to any
 * other origin are refused: the page is the agent's work, and the browser is
 * no way around the sandbox's walls.
 *
 *   const png = await screenshotOf({ socketPath }, "/", { chromium: "/usr/bin/chromium" });
 */
import net from "node:net";
import type { PortTarget } from "./port-bridge.ts";

export interface ScreenshotOptions {
  /** The Chromium binary (LOCAL_SANDBOX_CHROMIUM; Debian's by default). */
  chromium: string;
  width?: number;
  height?: number;
  timeoutMs?: number;
}

export async function screenshotOf(target: PortTarget, pathAndQuery: string, options: ScreenshotOptions): Promise<Buffer> {
  const { chromium } = await import("playwright-core");
  const relay = net.createServer((client) => {
    const upstream = "socketPath" in target ? net.connect(target.socketPath) : net.connect(target.port, target.host);
    client.pipe(upstream).pipe(client);
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
  const { port } = relay.address() as net.AddressInfo;
  const browser = await chromium.launch({
    executablePath: options.chromium,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: options.width ?? 1280, height: options.height ?? 800 } });
    const origin = `http://127.0.0.1:${port}`;
    await page.route("**/*", (route) => (new URL(route.request().url()).origin === origin ? route.continue() : route.abort("blockedbyclient")));
    await page.goto(`http://127.0.0.1:${port}${pathAndQuery}`, { waitUntil: "load", timeout: options.timeoutMs ?? 30_000 });
    return await page.screenshot({ type: "png" });
  } finally {
    await browser.close();
    relay.close();
  }
}
