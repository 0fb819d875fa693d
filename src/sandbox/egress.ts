/**
 * What a Cloudflare sandbox may reach, and which credentials the Worker adds on
 * the way out. Every HTTP and HTTPS request the container makes is handed to
 * the Worker (`SortieSandbox` in sortie-sandbox.ts) and decided here: the model
 * API gets the real key, the git host gets a push token only while a publisher
 * holds a grant, the configured package registries pass unchanged, and
 * anything else is refused. The container itself only ever holds a placeholder.
 */
import type { OutboundHandler } from "@cloudflare/containers";
import { writeLog } from "../log.ts";

/** The key the agent sees: enough for Claude Code to send `x-api-key`, worthless if it leaks. */
export const AGENT_API_KEY_PLACEHOLDER = "sk-ant-placeholder-sortie";

/** Package registries a sandbox reaches when SANDBOX_EGRESS_ALLOW is unset. */
export const DEFAULT_EGRESS_ALLOW = ["registry.npmjs.org", "pypi.org", "files.pythonhosted.org"] as const;

/** The name `SortieSandbox.outboundHandlers` registers `gitPushEgress` under. */
export const GIT_PUSH_HANDLER = "gitPush";

/** The name `SortieSandbox.outboundHandlers` registers `taskEgress` under: a task that asked for more hosts. */
export const TASK_EGRESS_HANDLER = "taskEgress";

/** The name `SortieSandbox.outboundHandlers` registers `modelOnlyEgress` under: an analysis run's whole network. */
export const MODEL_ONLY_HANDLER = "modelOnly";

const ANTHROPIC_API = "https://api.anthropic.com";
const OPENAI_API = "https://api.openai.com";
const GEMINI_API = "https://generativelanguage.googleapis.com";

/** The agent's placeholders for the other CLIs' keys: the Worker swaps in the real one for its model host. */
export const OPENAI_API_KEY_PLACEHOLDER = "sk-placeholder-sortie";
export const GEMINI_API_KEY_PLACEHOLDER = "gemini-placeholder-sortie";

/** Git's smart HTTP endpoints: the only paths a push token is added to. */
const GIT_SMART_HTTP = /\/(?:info\/refs|git-upload-pack|git-receive-pack)$/;

/** The vars a policy is read from. */
export type EgressEnv = Pick<Cloudflare.Env, "ANTHROPIC_BASE_URL" | "GIT_BASE_URL" | "SANDBOX_EGRESS_ALLOW"> &
  Partial<Pick<Cloudflare.Env, "OPENAI_BASE_URL" | "GEMINI_BASE_URL" | "CLOUDFLARE_ACCOUNT_ID" | "CLOUDFLARE_R2_ACCOUNT_ID" | "BACKUP_BUCKET_ENDPOINT">>;

export interface EgressPolicy {
  /** The Messages API host, the only one that gets the model key; null when ANTHROPIC_BASE_URL is unreadable. */
  modelHost: string | null;
  /** The OpenAI API host (Codex), which gets OPENAI_API_KEY as a bearer token. */
  openaiHost?: string | null;
  /** The Gemini API host (Gemini CLI), which gets GEMINI_API_KEY as x-goog-api-key. */
  geminiHost?: string | null;
  /** The host repositories are cloned from and pushed to; null for a `file://` base. */
  gitHost: string | null;
  /** Further hosts, reached unchanged: exact names, or `*.suffix` for any subdomain of suffix. */
  allow: string[];
}

/** What the Worker may add on the way out. */
export interface EgressSecrets {
  modelApiKey?: string;
  openaiApiKey?: string;
  geminiApiKey?: string;
  /** Present only while a publisher holds a git grant on this sandbox. */
  gitToken?: string;
}

export type EgressDecision = { allow: true; request: Request } | { allow: false; status: number; reason: string };

/** The policy the Worker's vars describe. */
export function egressPolicyFor(env: EgressEnv): EgressPolicy {
  const listed = (env.SANDBOX_EGRESS_ALLOW ?? "").split(",").map(normalizeHost).filter(Boolean);
  // The sandbox SDK moves backups (snapshots, caches) between the container and R2 with presigned URLs.
  // The SDK's order: CLOUDFLARE_R2_ACCOUNT_ID, then CLOUDFLARE_ACCOUNT_ID; BACKUP_BUCKET_ENDPOINT names the host outright.
  const account = (env.CLOUDFLARE_R2_ACCOUNT_ID || env.CLOUDFLARE_ACCOUNT_ID)?.trim().toLowerCase();
  const backups = [
    ...(account && /^[a-f0-9]{32}$/.test(account) ? [`${account}.r2.cloudflarestorage.com`, `${account}.eu.r2.cloudflarestorage.com`] : []),
    ...(env.BACKUP_BUCKET_ENDPOINT ? [hostOf(env.BACKUP_BUCKET_ENDPOINT)].filter((host): host is string => host !== null) : []),
  ];
  return {
    modelHost: hostOf(env.ANTHROPIC_BASE_URL || ANTHROPIC_API),
    openaiHost: hostOf(env.OPENAI_BASE_URL || OPENAI_API),
    geminiHost: hostOf(env.GEMINI_BASE_URL || GEMINI_API),
    gitHost: hostOf(env.GIT_BASE_URL || "https://github.com"),
    allow: [...(listed.length > 0 ? listed : DEFAULT_EGRESS_ALLOW), ...backups],
  };
}

/**
 * Decides one outgoing request: the request to send on (with the Worker's
 * credential in it where one belongs), or why it is refused. Every forwarded
 * request leaves with `redirect: "manual"`, so a redirect goes back to the
 * container and its next hop is decided here again, without the credential.
 */
export function decideEgress(request: Request, policy: EgressPolicy, secrets: EgressSecrets): EgressDecision {
  const url = new URL(request.url);
  const host = normalizeHost(url.hostname);
  if (host === policy.modelHost) {
    if (url.protocol !== "https:") return refuse(403, `${host} is reached over https only, so the model key never travels in clear`);
    const key = secrets.modelApiKey;
    if (!key) return refuse(503, "ANTHROPIC_API_KEY is not set on the Worker");
    return forward(request, (headers) => {
      headers.set("x-api-key", key);
      headers.delete("authorization");
    });
  }
  if (host === policy.openaiHost || host === policy.geminiHost) {
    const openai = host === policy.openaiHost;
    if (url.protocol !== "https:") return refuse(403, `${host} is reached over https only, so the model key never travels in clear`);
    const key = openai ? secrets.openaiApiKey : secrets.geminiApiKey;
    if (!key) return refuse(503, `${openai ? "OPENAI_API_KEY" : "GEMINI_API_KEY"} is not set on the Worker`);
    return forward(request, (headers) => {
      if (openai) headers.set("authorization", `Bearer ${key}`);
      else {
        headers.set("x-goog-api-key", key);
        headers.delete("authorization");
      }
    });
  }
  if (host === policy.gitHost) {
    const token = secrets.gitToken;
    if (!token || url.protocol !== "https:" || !GIT_SMART_HTTP.test(url.pathname)) return forward(request);
    return forward(request, (headers) => headers.set("authorization", gitBasicAuth(token)));
  }
  if (policy.allow.some((pattern) => hostMatches(pattern, host))) return forward(request);
  return refuse(403, `${host} is not on this sandbox's egress allowlist (SANDBOX_EGRESS_ALLOW)`);
}

/**
 * Sends an allowed request on, or answers the refusal. A network failure is
 * answered with 502 and its message, with every credential scrubbed from it.
 */
export async function sendEgress(request: Request, policy: EgressPolicy, secrets: EgressSecrets, fetcher: typeof fetch = fetch): Promise<Response> {
  const decision = decideEgress(request, policy, secrets);
  if (!decision.allow) {
    writeLog("warn", { event: "sandbox.egress_refused", status: decision.status, reason: decision.reason });
    return new Response(`sortie egress: ${decision.reason}\n`, { status: decision.status, headers: { "content-type": "text/plain", "x-sortie-egress": "refused" } });
  }
  try {
    return await fetcher(decision.request);
  } catch (error) {
    const message = scrub(error instanceof Error ? error.message : String(error), secrets);
    return new Response(`sortie egress: ${new URL(request.url).host} failed: ${message}\n`, { status: 502, headers: { "content-type": "text/plain" } });
  }
}

/** The catch-all for every request a sandbox makes: the policy from the Worker's vars, the model key from its secrets. */
export const sandboxEgress: OutboundHandler<Cloudflare.Env> = (request, env) =>
  sendEgress(request, egressPolicyFor(env), modelSecrets(env));

/** The model keys the Worker holds, for whichever CLI a run uses. */
function modelSecrets(env: Cloudflare.Env): EgressSecrets {
  return { modelApiKey: env.ANTHROPIC_API_KEY, openaiApiKey: env.OPENAI_API_KEY, geminiApiKey: env.GEMINI_API_KEY };
}

/** An analysis sandbox's catch-all: the model API with its key, nothing else (no registries, no git host). */
export const modelOnlyEgress: OutboundHandler<Cloudflare.Env> = (request, env) =>
  sendEgress(request, { ...egressPolicyFor(env), gitHost: null, allow: [] }, modelSecrets(env));

/** A task's sandbox with extra hosts of its own (`egress` on the task): the deployment's policy, those hosts added. */
export const taskEgress: OutboundHandler<Cloudflare.Env, { allow: string[] }> = (request, env, ctx) => {
  const policy = egressPolicyFor(env);
  return sendEgress(request, { ...policy, allow: [...policy.allow, ...ctx.params.allow.map(normalizeHost)] }, modelSecrets(env));
};

/** The git host while a publisher holds a grant: the same policy, and the grant's token on git's endpoints. */
export const gitPushEgress: OutboundHandler<Cloudflare.Env, { token: string }> = (request, env, ctx) =>
  sendEgress(request, egressPolicyFor(env), { gitToken: ctx.params.token });

/** How git sends a GitHub token over https (any user name works; `x-access-token` is GitHub's). */
export function gitBasicAuth(token: string): string {
  return `Basic ${btoa(`x-access-token:${token}`)}`;
}

function forward(request: Request, edit?: (headers: Headers) => void): EgressDecision {
  const headers = new Headers(request.headers);
  edit?.(headers);
  return { allow: true, request: new Request(request, { headers, redirect: "manual" }) };
}

function refuse(status: number, reason: string): EgressDecision {
  return { allow: false, status, reason };
}

/** `*.example.com` matches any subdomain of example.com (not example.com itself); anything else matches exactly. */
function hostMatches(pattern: string, host: string): boolean {
  return pattern.startsWith("*.") ? host.endsWith(pattern.slice(1)) : host === pattern;
}

function hostOf(url: string): string | null {
  try {
    return normalizeHost(new URL(url).hostname) || null;
  } catch {
    return null;
  }
}

/** Lower case, no trailing dot: how the container's request and the configuration are compared. */
function normalizeHost(host: string): string {
  return host.trim().toLowerCase().replace(/\.+$/, "");
}

function scrub(text: string, secrets: EgressSecrets): string {
  const values = [secrets.modelApiKey, secrets.openaiApiKey, secrets.geminiApiKey, secrets.gitToken, secrets.gitToken && gitBasicAuth(secrets.gitToken).slice("Basic ".length)];
  return values.reduce<string>((out, value) => (value ? out.split(value).join("[REDACTED]") : out), text);
}
