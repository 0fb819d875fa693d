/**
 * What the model is told about repository memory: the real Claude Code,
 * run with the command Sortie builds, against the scripted Messages API
 * stand-in, which records every request. The preamble arrives as system
 * prompt text, and the user's prompt arrives exactly as they wrote it.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { memoryPreamble } from "../../src/agents/memory.ts";
import { claudeCodeInvocation } from "../../src/runners/claude-code.ts";
import { startAnthropicStandin } from "../standins/anthropic.mjs";

const ROOT = path.resolve(import.meta.dirname, "../..");
let model: Awaited<ReturnType<typeof startAnthropicStandin>>;

beforeAll(async () => {
  model = await startAnthropicStandin();
});

afterAll(async () => {
  await model?.close();
});

function runClaude(prompt: string, preamble: string): Promise<number | null> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sortie-preamble-"));
  const { command, env } = claudeCodeInvocation({ prompt, preamble, cwd: dir, maxTurns: 3, model: null, credentials: { ANTHROPIC_API_KEY: "sk-ant-test-preamble-key", ANTHROPIC_BASE_URL: model.url } });
  return new Promise((resolve, reject) => {
    const child = spawn("bash", ["-c", command], {
      cwd: dir,
      env: { ...env, HOME: dir, PATH: `${path.join(ROOT, "node_modules/.bin")}:${process.env.PATH}` } as unknown as NodeJS.ProcessEnv,
      stdio: ["ignore", "ignore", "ignore"],
    });
    child.on("error", reject);
    child.on("close", (code) => {
      fs.rmSync(dir, { recursive: true, force: true });
      resolve(code);
    });
  });
}

describe("the memory preamble", () => {
  it("reaches the model as system prompt text naming both files, and leaves the user's prompt as written", async () => {
    const prompt = "say hello\n#!standin [{\"text\":\"hello\"}]";
    expect(await runClaude(prompt, memoryPreamble(2))).toBe(0);
    const turn = model.requests.find((body) => Array.isArray(body.tools) && body.tools.length > 0);
    expect(turn).toBeDefined();
    const system = JSON.stringify(turn!.system);
    expect(system).toContain("$SORTIE_LEARNINGS_FILE");
    expect(system).toContain("$SORTIE_MEMORY_FILE (2 entries)");
    expect(model.prompts()).toContain(prompt);
  });
});
