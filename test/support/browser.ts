/** Debian's Chromium through playwright-core, as the browser tests and the local host's screenshots run it. */
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll } from "vitest";
import { startDevServer, type DevServer } from "./dev-server.ts";

export const CHROMIUM = "/usr/bin/chromium";

/** A headless Chromium with nothing of its own going to the network. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/**
 * A dev server and a Chromium for the tests of one file, started before them
 * and stopped after; `call` is an admin request to the server.
 */
export function serverAndBrowser() {
  const held: { server?: DevServer; browser?: Browser } = {};
  beforeAll(async () => {
    [held.server, held.browser] = await Promise.all([startDevServer(), launchChromium()]);
  });
  afterAll(async () => {
    await held.browser?.close();
    await held.server?.stop();
  });
  return {
    get server(): DevServer {
      return held.server!;
    },
    get browser(): Browser {
      return held.browser!;
    },
    /** A page signed in through the viewer's form, recording every URL it requests. */
    async signedInPage(): Promise<{ page: Page; urls: string[] }> {
      const page = await held.browser!.newPage({ viewport: { width: 1400, height: 1000 } });
      const urls: string[] = [];
      page.on("request", (request) => urls.push(request.url()));
      await page.goto(`${held.server!.url}/`);
      await page.getByTestId("login-token").fill(held.server!.token);
      await page.getByTestId("login-submit").click();
      await page.getByTestId("task-table").waitFor();
      return { page, urls };
    },
    call(pathname: string, init: RequestInit = {}): Promise<Response> {
      return fetch(`${held.server!.url}${pathname}`, { ...init, headers: { authorization: `Bearer ${held.server!.token}`, ...(init.headers as Record<string, string>) } });
    },
  };
}
