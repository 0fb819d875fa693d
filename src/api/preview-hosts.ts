/**
 * Cloudflare previews: `https://{port}-{sandbox}-{token}.{PREVIEW_HOSTNAME}`,
 * the URL `exposePort` gives a run's port, served by the sandbox SDK's
 * `proxyToSandbox`. The Worker's fetch handler passes these hosts here
 * before anything else; they are a separate origin from the viewer, so a
 * preview reads none of its storage. They answer the same credentials as
 * local previews (bearer token, or the preview's cookie from a ticket).
 */
import { proxyToSandbox } from "@cloudflare/sandbox";
import { SortieError, errorBody } from "../errors.ts";
import { SESSION_PATH, requirePreviewAccess, tradeTicket, withoutCredentials } from "./preview-auth.ts";

/** A preview host's first label: `{port}-{sandbox id}-{token}`. */
const PREVIEW_LABEL = /^\d{4,5}-[a-z0-9-]+-[a-z0-9_]{1,16}$/;

/** The response for a request to a preview host, or null when the request is for the API. */
export async function servePreviewHost(request: Request, env: Cloudflare.Env): Promise<Response | null> {
  const domain = env.PREVIEW_HOSTNAME?.toLowerCase();
  if (!domain) return null;
  const url = new URL(request.url);
  const host = url.hostname.toLowerCase();
  if (!host.endsWith(`.${domain}`) || !PREVIEW_LABEL.test(host.slice(0, -domain.length - 1))) return null;
  const root = `${url.origin}/`;
  try {
    if (url.pathname === `/${SESSION_PATH}`) return await tradeTicket(env.SORTIE_ADMIN_TOKEN, url, root, async () => "/");
    await requirePreviewAccess(env, request, root);
  } catch (error) {
    if (!(error instanceof SortieError)) throw error;
    return Response.json(errorBody(error.code, error.message), { status: error.status, headers: error.headers });
  }
  // SortieSandbox narrows a field of the SDK's class: the namespace is the SDK's all the same (as in sandbox/index.ts).
  const proxied = await proxyToSandbox(withoutCredentials(request, request.url), { Sandbox: env.Sandbox as never });
  return proxied ?? Response.json(errorBody("preview_not_found", `no preview at ${host}`), { status: 404 });
}
