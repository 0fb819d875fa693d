/**
 * The escape suite: one test per wall of the local backend. In each, a real
 * Claude Code agent (driven by the scripted model) tries to get out of its
 * sandbox, and the run still succeeds with its own change: the wall stopped
 * the escape, not the work. What it tries to reach is planted on the host by
 * test/support/escape-fixtures.ts.
 */
import { env } from "cloudflare:workers";
import { describe, expect, inject, it } from "vitest";
import { api, createTask, readEvents, scripted, waitForPhase, waitForStatus } from "./helpers.ts";

const escape = inject("escape");
/** The real key the Worker holds (vitest.worker.config.ts): it must never be readable inside a sandbox. */
const REAL_KEY = "sk-ant-test-key-0123456789";
const ownChange = { tool: "Bash", input: { command: "echo 'my own change' > OWN.md" } };

/** Runs an agent that tries `attempts` and then makes its own change; returns what each attempt printed. */
async function tryEscape(attempts: string[], extra: Record<string, unknown> = {}): Promise<string[]> {
  const created = await createTask({ prompt: scripted([...attempts.map((command) => ({ tool: "Bash", input: { command } })), ownChange, { text: "done" }]), ...extra });
  const task = await waitForStatus(created.id, ["succeeded", "failed"], 60_000);
  expect(task.status, JSON.stringify(task.error)).toBe("succeeded");
  const patch = await (await api(`/api/tasks/${created.id}/runs/0/diff`)).text();
  expect(patch).toContain("+my own change");
  const results = (await readEvents(created.id)).filter((e) => e.type === "agent.tool_result").map((e) => String(e.data.text ?? ""));
  expect(results).toHaveLength(attempts.length + 1);
  return results.slice(0, attempts.length);
}

/** A command outside every sandbox (a bookkeeping exec on the host), to see what an escape left. */
async function onHost(command: string): Promise<string> {
  const headers = { authorization: `Bearer ${env.LOCAL_SANDBOX_TOKEN}` };
  const base = `${env.LOCAL_SANDBOX_URL}/v1/sandboxes/witness-${Math.random().toString(36).slice(2, 8)}`;
  await fetch(base, { method: "POST", headers });
  const result = (await (await fetch(`${base}/exec`, { method: "POST", headers, body: JSON.stringify({ command, bookkeeping: true }) })).json()) as { stdout: string };
  await fetch(base, { method: "DELETE", headers });
  return result.stdout.trim();
}

describe("the local backend's walls", () => {
  it("a run cannot write outside its sandbox: not /tmp, not the Sortie checkout, not the system", async () => {
    const mark = `escape-${Math.random().toString(36).slice(2, 10)}`;
    // /tmp and the checkout are hidden behind empty scratch directories: a write there lands in the sandbox's view alone.
    const [system] = await tryEscape([`echo x > /tmp/${mark}; echo x > ${escape.checkout}/${mark}; echo x > /var/tmp/${mark}; echo x > /etc/${mark}; echo x > /usr/${mark}`]);
    expect(system).toMatch(/\/var\/tmp\/escape-\S+: Read-only file system/);
    expect(system).toMatch(/\/etc\/escape-\S+: Read-only file system/);
    expect(await onHost(`ls /tmp/${mark} ${escape.checkout}/${mark} /var/tmp/${mark} /etc/${mark} /usr/${mark} 2>/dev/null | wc -l`)).toBe("0");
  });

  it("a run cannot read a secret planted in the host's home directory", async () => {
    const [read] = await tryEscape([`cat ${escape.homeSecret}; ls -a ~root 2>&1 | head -20; grep -rs home-secret- /root /home 2>/dev/null | head -3`]);
    expect(read).not.toContain(escape.homeSecretValue);
  });

  it("a run cannot read the Sortie checkout's .dev.vars", async () => {
    // A checkout without one gets one for this test, a secret in it.
    const planted = await onHost(`test -e "${escape.devVars}" || { echo "SORTIE_ADMIN_TOKEN=dev-vars-secret-$RANDOM" > "${escape.devVars}" && echo planted; }`);
    try {
      const [read] = await tryEscape([`cat ${escape.devVars}; ls -a ${escape.checkout} ${escape.checkout}/.wrangler 2>&1 | head -20`]);
      expect(read).not.toMatch(/SORTIE_ADMIN_TOKEN=|dev-vars-secret-/);
      expect(read).not.toMatch(/^\.dev\.vars$/m);
    } finally {
      if (planted === "planted") await onHost(`rm -f "${escape.devVars}"`);
    }
  });

  it("a run cannot read the files of another sandbox that is running", async () => {
    const secret = `neighbour-${Math.random().toString(36).slice(2, 10)}`;
    const neighbour = await createTask({ prompt: scripted([{ tool: "Bash", input: { command: `echo ${secret} > NEIGHBOUR.md && sleep 12` } }, { text: "done" }]) });
    await waitForPhase(neighbour.id, "agent", 30_000);
    // Give the neighbour's agent time to write its file.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const [read] = await tryEscape([`ls ../../.. 2>&1 | head; cat ../../../*/work/repo/NEIGHBOUR.md 2>&1; grep -rs ${secret} / --include=NEIGHBOUR.md 2>/dev/null | head -3; echo end`]);
    expect(read).not.toContain(secret);
    expect(read).toContain("end");
    expect((await waitForStatus(neighbour.id, ["succeeded", "failed"], 60_000)).status).toBe("succeeded");
  });

  it("a run cannot reach a loopback server no allowlist names", async () => {
    const probe = `node -e "fetch(process.argv[1]).then(r => r.text()).then(t => console.log('reached', t), e => console.log('blocked', e.cause?.code ?? e.message))" ${escape.forbiddenUrl}`;
    const [viaProxy, direct] = await tryEscape([`curl -s --max-time 5 ${escape.forbiddenUrl}; echo " curl=$?"; ${probe}`, `curl -s --noproxy '*' --max-time 5 ${escape.forbiddenUrl}; echo " curl=$?"`]);
    expect(viaProxy).not.toContain(escape.forbiddenValue);
    expect(direct).not.toContain(escape.forbiddenValue);
    expect(direct).toMatch(/curl=(7|28)/);
  });

  it("a run finds no real model key in any environment it can read", async () => {
    // The key is spelled in two halves, so the prompt itself (in the agent's environment) never holds it.
    const [head, tail] = [REAL_KEY.slice(0, 10), REAL_KEY.slice(10)];
    const [found] = await tryEscape([`k=${head}; env | grep -i key; for f in /proc/*/environ; do tr '\\0' '\\n' < "$f" 2>/dev/null; done | grep -c "$k"${tail}; echo searched`]);
    // Sortie's redaction would turn a leaked key into [REDACTED] in the events: neither may show.
    expect(found).not.toContain(REAL_KEY);
    expect(found).not.toContain("[REDACTED]");
    expect(found).toMatch(/^0$/m);
    expect(found).toContain("searched");
  });

  it("a run cannot see or signal a process outside its sandbox", async () => {
    const [signalled] = await tryEscape([`kill -9 ${escape.outsiderPid}; echo "kill=$?"; ls /proc | grep -E '^[0-9]+$' | wc -l`]);
    expect(signalled).toMatch(/kill=1/);
    expect(await onHost(`kill -0 ${escape.outsiderPid} && echo alive`)).toBe("alive");
  });
});
