/**
 * The egress policy of Cloudflare sandboxes (src/sandbox/egress.ts): what a
 * container may reach and which credential the Worker adds on the way out.
 * The container only ever holds AGENT_API_KEY_PLACEHOLDER; these tests prove
 * the real key appears on exactly one kind of request, the one to the model
 * host, and nowhere else: not on other hosts, not in refusals, not in errors.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { CloudflareSandboxPort } from "../../src/sandbox/cloudflare.ts";
import {
  AGENT_API_KEY_PLACEHOLDER,
  GIT_PUSH_HANDLER,
  MODEL_ONLY_HANDLER,
  TASK_EGRESS_HANDLER,
  taskEgress,
  modelOnlyEgress,
  decideEgress,
  egressPolicyFor,
  gitPushEgress,
  sandboxEgress,
  sendEgress,
  type EgressDecision,
  type EgressEnv,
} from "../../src/sandbox/egress.ts";
import { LocalSandboxPort } from "../../src/sandbox/local.ts";
import { SortieSandbox } from "../../src/sandbox/sortie-sandbox.ts";
import { RecordingSandboxSdk } from "../standins/cloudflare-sandbox.ts";

const REAL_KEY = "sk-ant-api03-real-secret-0123456789abcdef";
const PUSH_TOKEN = "ghs_realPushToken0123456789abcdefABCDEF";
const DEFAULTS: EgressEnv = { ANTHROPIC_BASE_URL: "", GIT_BASE_URL: "https://github.com", SANDBOX_EGRESS_ALLOW: "" };
const POLICY = egressPolicyFor(DEFAULTS);

/** A request as Claude Code in the container sends it: the placeholder in `x-api-key`. */
function fromContainer(url: string, init: RequestInit = {}): Request {
  const headers = new Headers(init.headers);
  if (!headers.has("x-api-key")) headers.set("x-api-key", AGENT_API_KEY_PLACEHOLDER);
  return new Request(url, { method: "POST", body: '{"model":"claude"}', ...init, headers });
}

function forwarded(decision: EgressDecision): Request {
  if (!decision.allow) throw new Error(`expected the request to be forwarded, it was refused: ${decision.reason}`);
  return decision.request;
}

function refused(decision: EgressDecision): { status: number; reason: string } {
  if (decision.allow) throw new Error(`expected a refusal, the request was forwarded to ${decision.request.url}`);
  return decision;
}

/** Everything of a request that leaves the Worker, as text: where a leaked key would show. */
async function wire(request: Request): Promise<string> {
  return [request.method, request.url, ...request.headers, await request.clone().text()].join("\n");
}

/** A fetcher that fails the test if anything is sent: refusals must not reach the network. */
const noNetwork: typeof fetch = async (input) => {
  throw new Error(`unexpected egress to ${input instanceof Request ? input.url : String(input)}`);
};

describe("the model API", () => {
  it("a request to api.anthropic.com leaves with the Worker's key in place of the placeholder, body and method intact", async () => {
    const out = forwarded(decideEgress(fromContainer("https://api.anthropic.com/v1/messages?beta=true"), POLICY, { modelApiKey: REAL_KEY }));

    expect(out.url).toBe("https://api.anthropic.com/v1/messages?beta=true");
    expect(out.method).toBe("POST");
    expect(out.headers.get("x-api-key")).toBe(REAL_KEY);
    expect(await out.text()).toBe('{"model":"claude"}');
  });

  it("an Authorization header from the container does not ride along with the key", () => {
    const out = forwarded(decideEgress(fromContainer("https://api.anthropic.com/v1/messages", { headers: { authorization: "Bearer the-agents-own" } }), POLICY, { modelApiKey: REAL_KEY }));

    expect(out.headers.get("authorization")).toBeNull();
    expect(out.headers.get("x-api-key")).toBe(REAL_KEY);
  });

  it("the key goes to the host ANTHROPIC_BASE_URL names, and then not to api.anthropic.com", () => {
    const policy = egressPolicyFor({ ...DEFAULTS, ANTHROPIC_BASE_URL: "https://gateway.example.net/anthropic" });

    expect(forwarded(decideEgress(fromContainer("https://gateway.example.net/anthropic/v1/messages"), policy, { modelApiKey: REAL_KEY })).headers.get("x-api-key")).toBe(REAL_KEY);
    expect(refused(decideEgress(fromContainer("https://api.anthropic.com/v1/messages"), policy, { modelApiKey: REAL_KEY })).status).toBe(403);
  });

  it("plain http to the model host is refused, so the key never travels in clear", () => {
    const refusal = refused(decideEgress(fromContainer("http://api.anthropic.com/v1/messages"), POLICY, { modelApiKey: REAL_KEY }));

    expect(refusal.status).toBe(403);
    expect(refusal.reason).toContain("https only");
  });

  it("without ANTHROPIC_API_KEY on the Worker the model host is refused with a reason naming the key", () => {
    const refusal = refused(decideEgress(fromContainer("https://api.anthropic.com/v1/messages"), POLICY, {}));

    expect(refusal.status).toBe(503);
    expect(refusal.reason).toContain("ANTHROPIC_API_KEY");
  });

  it("a redirect is not followed by the Worker: the next hop comes back through the policy, without the key", () => {
    const out = forwarded(decideEgress(fromContainer("https://api.anthropic.com/v1/messages"), POLICY, { modelApiKey: REAL_KEY }));

    expect(out.redirect).toBe("manual");
  });

  it("no request but the one to the model host ever carries the real key or the push token", async () => {
    const urls = [
      "https://registry.npmjs.org/left-pad",
      "https://pypi.org/simple/requests/",
      "https://files.pythonhosted.org/packages/x.whl",
      "https://github.com/acme/widgets.git/info/refs?service=git-upload-pack",
      "https://github.com/acme/widgets",
      "https://api.anthropic.com.attacker.example/v1/messages",
      "https://attacker.example/collect",
    ];
    for (const url of urls) {
      const decision = decideEgress(fromContainer(url), POLICY, { modelApiKey: REAL_KEY });
      const text = decision.allow ? await wire(decision.request) : decision.reason;
      expect(text, url).not.toContain(REAL_KEY);
      expect(text, url).not.toContain(PUSH_TOKEN);
      if (decision.allow) expect(decision.request.headers.get("x-api-key"), url).toBe(AGENT_API_KEY_PLACEHOLDER);
    }
  });
});

describe("the allowlist", () => {
  it("the model host, the git host and the default package registries are reached", () => {
    for (const url of ["https://api.anthropic.com/v1/messages", "https://github.com/acme/widgets.git/info/refs", "https://registry.npmjs.org/hono", "https://pypi.org/simple/", "https://files.pythonhosted.org/packages/a.tar.gz"]) {
      expect(decideEgress(fromContainer(url), POLICY, { modelApiKey: REAL_KEY }).allow, url).toBe(true);
    }
  });

  it("any other host is refused with 403, named, and the configuration to change", () => {
    for (const url of ["https://example.com/", "http://169.254.169.254/latest/meta-data/", "https://api.github.com/gists", "https://sub.registry.npmjs.org/x", "https://api.anthropic.com.evil.example/v1/messages"]) {
      const refusal = refused(decideEgress(fromContainer(url), POLICY, { modelApiKey: REAL_KEY }));
      expect(refusal.status, url).toBe(403);
      expect(refusal.reason, url).toContain(new URL(url).hostname);
      expect(refusal.reason, url).toContain("SANDBOX_EGRESS_ALLOW");
    }
  });

  it("SANDBOX_EGRESS_ALLOW replaces the default registries; *.suffix matches subdomains only; case and a trailing dot do not matter", () => {
    const policy = egressPolicyFor({ ...DEFAULTS, SANDBOX_EGRESS_ALLOW: " Proxy.Golang.org , *.crates.io " });

    expect(decideEgress(fromContainer("https://proxy.golang.org/x/@v/list"), policy, {}).allow).toBe(true);
    expect(decideEgress(fromContainer("https://PROXY.golang.org./x/@v/list"), policy, {}).allow).toBe(true);
    expect(decideEgress(fromContainer("https://static.crates.io/crates/serde"), policy, {}).allow).toBe(true);
    expect(decideEgress(fromContainer("https://crates.io/api/v1/crates"), policy, {}).allow).toBe(false);
    expect(decideEgress(fromContainer("https://registry.npmjs.org/hono"), policy, {}).allow).toBe(false);
  });

  it("the git host follows GIT_BASE_URL, and a file:// base opens no git host", () => {
    const enterprise = egressPolicyFor({ ...DEFAULTS, GIT_BASE_URL: "https://git.acme.internal/" });
    const local = egressPolicyFor({ ...DEFAULTS, GIT_BASE_URL: "file:///tmp/repos" });

    expect(enterprise.gitHost).toBe("git.acme.internal");
    expect(decideEgress(fromContainer("https://github.com/acme/widgets.git/info/refs"), enterprise, {}).allow).toBe(false);
    expect(local.gitHost).toBeNull();
    expect(decideEgress(fromContainer("https://github.com/acme/widgets.git/info/refs"), local, {}).allow).toBe(false);
  });
});

describe("the push token", () => {
  const receivePack = "https://github.com/acme/widgets.git/git-receive-pack";

  it("while a grant stands, git's endpoints on the git host get the token as Basic auth", () => {
    for (const url of [receivePack, "https://github.com/acme/widgets.git/info/refs?service=git-receive-pack", "https://github.com/acme/widgets.git/git-upload-pack"]) {
      const out = forwarded(decideEgress(fromContainer(url), POLICY, { gitToken: PUSH_TOKEN }));
      expect(out.headers.get("authorization"), url).toBe(`Basic ${btoa(`x-access-token:${PUSH_TOKEN}`)}`);
    }
  });

  it("the token goes nowhere else: not to other paths of the git host, other hosts, or plain http", async () => {
    for (const url of ["https://github.com/acme/widgets/settings", "https://registry.npmjs.org/git-receive-pack", "http://github.com/acme/widgets.git/git-receive-pack"]) {
      const decision = decideEgress(fromContainer(url), POLICY, { gitToken: PUSH_TOKEN });
      const text = decision.allow ? await wire(decision.request) : decision.reason;
      expect(text, url).not.toContain(btoa(`x-access-token:${PUSH_TOKEN}`));
      expect(text, url).not.toContain(PUSH_TOKEN);
    }
  });

  it("without a grant git reaches the git host with no credential added", () => {
    const out = forwarded(decideEgress(fromContainer(receivePack, { headers: { "x-api-key": "" } }), POLICY, { modelApiKey: REAL_KEY }));

    expect(out.headers.get("authorization")).toBeNull();
  });
});

describe("sending", () => {
  afterEach(() => vi.restoreAllMocks());

  it("a refused request never reaches the network and its answer names no secret", async () => {
    vi.spyOn(console, "warn").mockImplementation(() => {});
    const response = await sendEgress(fromContainer("https://attacker.example/collect", { headers: { "x-api-key": REAL_KEY } }), POLICY, { modelApiKey: REAL_KEY, gitToken: PUSH_TOKEN }, noNetwork);
    const body = await response.text();

    expect(response.status).toBe(403);
    expect(response.headers.get("x-sortie-egress")).toBe("refused");
    expect(body).toContain("attacker.example");
    expect(body).not.toContain(REAL_KEY);
    expect(body).not.toContain(PUSH_TOKEN);
  });

  it("a network failure is a 502 whose message has every credential scrubbed from it", async () => {
    const leaky: typeof fetch = async (input) => {
      const request = input as Request;
      throw new Error(`connect failed for ${request.headers.get("x-api-key")} / ${request.headers.get("authorization")}`);
    };

    const model = await sendEgress(fromContainer("https://api.anthropic.com/v1/messages"), POLICY, { modelApiKey: REAL_KEY }, leaky);
    const push = await sendEgress(fromContainer("https://github.com/acme/widgets.git/git-receive-pack"), POLICY, { gitToken: PUSH_TOKEN }, leaky);
    const modelText = await model.text();
    const pushText = await push.text();

    expect(model.status).toBe(502);
    expect(modelText).toContain("api.anthropic.com failed: connect failed for [REDACTED]");
    expect(modelText).not.toContain(REAL_KEY);
    expect(push.status).toBe(502);
    expect(pushText).not.toContain(PUSH_TOKEN);
    expect(pushText).not.toContain(btoa(`x-access-token:${PUSH_TOKEN}`));
  });

  it("the registered handlers read the policy and the key from the Worker's env; the push handler its grant's token", async () => {
    const sent: Request[] = [];
    vi.spyOn(globalThis, "fetch").mockImplementation(async (input) => {
      sent.push(input as Request);
      return new Response("ok");
    });
    const env = { ...DEFAULTS, ANTHROPIC_API_KEY: REAL_KEY } as Cloudflare.Env;
    const ctx = { containerId: "c1", className: "SortieSandbox" };

    expect((await sandboxEgress(fromContainer("https://api.anthropic.com/v1/messages"), env, ctx)).status).toBe(200);
    expect((await gitPushEgress(fromContainer("https://github.com/acme/widgets.git/git-receive-pack"), env, { ...ctx, params: { token: PUSH_TOKEN } })).status).toBe(200);
    vi.spyOn(console, "warn").mockImplementation(() => {});
    expect((await sandboxEgress(fromContainer("https://example.com/"), env, ctx)).status).toBe(403);

    expect(sent.map((request) => request.url)).toEqual(["https://api.anthropic.com/v1/messages", "https://github.com/acme/widgets.git/git-receive-pack"]);
    expect(sent[0]?.headers.get("x-api-key")).toBe(REAL_KEY);
    expect(sent[1]?.headers.get("authorization")).toBe(`Basic ${btoa(`x-access-token:${PUSH_TOKEN}`)}`);
    expect(sent[1]?.headers.get("x-api-key")).toBe(AGENT_API_KEY_PLACEHOLDER);
  });

  it("the sandbox class sends every request through these handlers", () => {
    expect(SortieSandbox.outbound).toBe(sandboxEgress);
    expect(SortieSandbox.outboundHandlers?.[GIT_PUSH_HANDLER]).toBe(gitPushEgress);
  });
});

describe("the ports", () => {
  const real = { ANTHROPIC_API_KEY: REAL_KEY, ANTHROPIC_BASE_URL: "https://gateway.example.net" };

  it("the cloudflare backend gives the agent the placeholder, never the key", () => {
    const port = new CloudflareSandboxPort(() => new RecordingSandboxSdk());

    const given = port.credentialsForAgent(real);

    expect(given).toEqual({ ANTHROPIC_API_KEY: AGENT_API_KEY_PLACEHOLDER, ANTHROPIC_BASE_URL: "https://gateway.example.net" });
    expect(JSON.stringify(given)).not.toContain(REAL_KEY);
    expect(port.credentialsForAgent({ ANTHROPIC_API_KEY: "", ANTHROPIC_BASE_URL: "" })).toEqual({});
  });

  it("the local backend, which cannot hold a secret from its processes, gives the key as it is", () => {
    expect(new LocalSandboxPort("http://127.0.0.1:1", "t").credentialsForAgent(real)).toEqual(real);
  });

  it("a cloudflare git grant routes the git host to the push handler, gives git no credential, and revoke removes the route", async () => {
    const sdk = new RecordingSandboxSdk();
    const sandbox = await new CloudflareSandboxPort(() => sdk).open("task-publish");

    const access = await sandbox.grantGitAccess("https://GitHub.com/acme/widgets.git", PUSH_TOKEN);
    await access.revoke();

    expect(access.env).toEqual({});
    expect(sdk.calls).toEqual([
      { method: "setOutboundByHost", args: ["github.com", GIT_PUSH_HANDLER, { token: PUSH_TOKEN }] },
      { method: "removeOutboundByHost", args: ["github.com"] },
    ]);
  });

  it("a cloudflare git grant is refused for a plain-http remote, and opens nothing for a local one", async () => {
    const sdk = new RecordingSandboxSdk();
    const sandbox = await new CloudflareSandboxPort(() => sdk).open("task-publish");

    await expect(sandbox.grantGitAccess("http://github.com/acme/widgets.git", PUSH_TOKEN)).rejects.toThrow(/https remotes only/);
    // A container reaches a git host over the network only: a file:// remote gets no route, and no token goes anywhere.
    const local = await sandbox.grantGitAccess("file:///tmp/repos/acme/widgets.git", PUSH_TOKEN);
    expect(local.env).toEqual({});
    await local.revoke();
    expect(sdk.calls).toEqual([]);
  });
});

describe("an analysis sandbox (model-only egress)", () => {
  const ctx = { containerId: "c-1", className: "SortieSandbox" };
  const env = { ...DEFAULTS, ANTHROPIC_API_KEY: REAL_KEY } as unknown as Cloudflare.Env;

  it("refuses the package registries and the git host the default policy lets through", async () => {
    for (const url of ["https://registry.npmjs.org/hono", "https://pypi.org/simple/requests/", "https://github.com/acme/widgets.git/info/refs"]) {
      expect(decideEgress(fromContainer(url), POLICY, {}).allow, url).toBe(true);
      const response = await modelOnlyEgress(fromContainer(url), env, ctx);
      expect(response.status, url).toBe(403);
      expect(await response.text()).not.toContain(REAL_KEY);
    }
  });

  it("is registered on the sandbox class under the name the adapter switches to", () => {
    expect(Object.keys(SortieSandbox.outboundHandlers ?? {})).toContain(MODEL_ONLY_HANDLER);
  });
});

describe("the other CLIs' model APIs", () => {
  const secrets = { modelApiKey: REAL_KEY, openaiApiKey: "sk-openai-real", geminiApiKey: "gemini-real" };

  it("adds the OpenAI key as a bearer token for Codex, and the Gemini key as x-goog-api-key, over https only", async () => {
    const openai = forwarded(decideEgress(fromContainer("https://api.openai.com/v1/responses", { headers: { authorization: "Bearer sk-placeholder-sortie" } }), POLICY, secrets));
    expect(openai.headers.get("authorization")).toBe("Bearer sk-openai-real");
    expect(await wire(openai)).not.toContain(REAL_KEY);
    const gemini = forwarded(decideEgress(fromContainer("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:streamGenerateContent"), POLICY, secrets));
    expect(gemini.headers.get("x-goog-api-key")).toBe("gemini-real");
    expect(await wire(gemini)).not.toContain("sk-openai-real");
    expect(refused(decideEgress(fromContainer("http://api.openai.com/v1/responses"), POLICY, secrets)).status).toBe(403);
  });

  it("refuses with 503 when the Worker holds no key for that API", () => {
    expect(refused(decideEgress(fromContainer("https://api.openai.com/v1/responses"), POLICY, { modelApiKey: REAL_KEY })).reason).toMatch(/OPENAI_API_KEY/);
  });

  it("follows OPENAI_BASE_URL and GEMINI_BASE_URL to a gateway", () => {
    const policy = egressPolicyFor({ ...DEFAULTS, OPENAI_BASE_URL: "https://llm.example.net/openai/v1", GEMINI_BASE_URL: "https://llm.example.org" });
    expect(forwarded(decideEgress(fromContainer("https://llm.example.net/openai/v1/responses"), policy, secrets)).headers.get("authorization")).toBe("Bearer sk-openai-real");
    expect(refused(decideEgress(fromContainer("https://api.openai.com/v1/responses"), policy, secrets)).status).toBe(403);
  });
});

describe("backups", () => {
  it("let the account's R2 endpoint through for the SDK's presigned backup transfers, and no other account's", () => {
    const account = "0123456789abcdef0123456789abcdef";
    const policy = egressPolicyFor({ ...DEFAULTS, CLOUDFLARE_ACCOUNT_ID: account });
    expect(decideEgress(fromContainer(`https://${account}.r2.cloudflarestorage.com/sortie-backups/backups/x/data.sqsh?X-Amz-Signature=s`), policy, {}).allow).toBe(true);
    expect(decideEgress(fromContainer("https://ffffffffffffffffffffffffffffffff.r2.cloudflarestorage.com/x"), policy, {}).allow).toBe(false);
    expect(decideEgress(fromContainer(`https://${account}.r2.cloudflarestorage.com/x`), POLICY, {}).allow).toBe(false);
    const endpoint = egressPolicyFor({ ...DEFAULTS, BACKUP_BUCKET_ENDPOINT: `https://${account}.eu.r2.cloudflarestorage.com` });
    expect(decideEgress(fromContainer(`https://${account}.eu.r2.cloudflarestorage.com/b/x`), endpoint, {}).allow).toBe(true);
  });
});

describe("a task's own egress hosts", () => {
  const ctx = { containerId: "c-2", className: "SortieSandbox", params: { allow: ["api.stripe.com", "*.example.org"] } };
  const env = { ...DEFAULTS, ANTHROPIC_API_KEY: REAL_KEY } as unknown as Cloudflare.Env;

  it("reach the hosts the task named, unchanged, and nothing else new", async () => {
    const fetched: string[] = [];
    const original = globalThis.fetch;
    globalThis.fetch = (async (input: RequestInfo | URL) => {
      const request = input instanceof Request ? input : new Request(input);
      fetched.push(`${request.url} ${request.headers.get("x-api-key")}`);
      return new Response("ok");
    }) as typeof fetch;
    try {
      expect((await taskEgress(fromContainer("https://api.stripe.com/v1/charges"), env, ctx)).status).toBe(200);
      expect((await taskEgress(fromContainer("https://files.example.org/a.tgz"), env, ctx)).status).toBe(200);
      expect((await taskEgress(fromContainer("https://evil.example.com/"), env, ctx)).status).toBe(403);
    } finally {
      globalThis.fetch = original;
    }
    // The placeholder stays a placeholder: only the model host gets the real key.
    expect(fetched).toEqual([`https://api.stripe.com/v1/charges ${AGENT_API_KEY_PLACEHOLDER}`, `https://files.example.org/a.tgz ${AGENT_API_KEY_PLACEHOLDER}`]);
  });

  it("are switched on per sandbox by the adapter, under the name the sandbox class registers", async () => {
    const sdk = new RecordingSandboxSdk({});
    const sandbox = await new CloudflareSandboxPort(() => sdk).open("task-egress-0");
    await sandbox.allowEgress([]);
    expect(sdk.calls.some((call) => call.method === "setOutboundHandler")).toBe(false);
    await sandbox.allowEgress(["api.stripe.com"]);
    expect(sdk.calls.find((call) => call.method === "setOutboundHandler")!.args).toEqual([TASK_EGRESS_HANDLER, { allow: ["api.stripe.com"] }]);
    expect(SortieSandbox.outboundHandlers?.[TASK_EGRESS_HANDLER]).toBe(taskEgress);
  });
});
