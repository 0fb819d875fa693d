/**
 * Redaction's one source of truth (src/redact.ts): every credential shape it
 * knows, the secret values it derives from a deployment's configuration, and
 * the list of plain vars it leaves alone, kept equal to wrangler.jsonc's.
 */
import fs from "node:fs";
import { describe, expect, it } from "vitest";
import { PLAIN_VARS } from "../../src/config.ts";
import { REDACTED, redactor, scrubText, secretValues } from "../../src/redact.ts";
import { SHAPED, inContext } from "../support/planted.ts";

describe("token shapes", () => {
  for (const [kind, value] of Object.entries(SHAPED)) {
    it(`removes a ${kind} credential`, () => {
      const out = scrubText(inContext(kind, value));
      expect(out).toContain(REDACTED);
      expect(out).not.toContain(value);
      // Not even a long piece of it survives.
      expect(out).not.toContain(value.slice(8, 24));
    });
  }

  it("leaves ordinary text alone", () => {
    const text = "a ghost_story, v1.2.3, the task-runner, basic settings, risk-assessment, AIza is short, https://github.com/acme/widgets";
    expect(scrubText(text)).toBe(text);
  });
});

describe("secret values from the configuration", () => {
  const pemEscaped = SHAPED.pem.replace(/\n/g, "\\n");
  const env = {
    SORTIE_ADMIN_TOKEN: "admin-token-value-123",
    ANTHROPIC_API_KEY: "not-shaped-anthropic-key",
    OPENAI_API_KEY: "not-shaped-openai-key",
    GEMINI_API_KEY: "not-shaped-gemini-key",
    SLACK_SIGNING_SECRET: "signing-secret-value",
    SLACK_BOT_TOKEN: "bot-token-value-unshaped",
    GITHUB_WEBHOOK_SECRET: "webhook-secret-value",
    GITHUB_APP_PRIVATE_KEY: pemEscaped,
    GITHUB_TOKEN: "personal-token-unshaped",
    R2_ACCESS_KEY_ID: "r2-access-key-id-value",
    R2_SECRET_ACCESS_KEY: "r2-secret-access-key-value",
    SOMETHING_A_USER_ADDED: "a-user-added-secret",
    // Plain vars are configuration, not secrets.
    GITHUB_API_URL: "https://api.github.com",
    SLACK_ALLOWED_USERS: "U0ALICE,U0BOB",
    MAX_SANDBOXES: "10",
    DB: { prepare() {} },
  };

  it("every string binding that is not a plain var is a secret, a PEM key also unescaped and line by line", () => {
    const values = secretValues(env);
    for (const key of Object.keys(env)) {
      const value = (env as Record<string, unknown>)[key];
      if (typeof value !== "string") continue;
      expect(values.includes(value), key).toBe(!PLAIN_VARS.has(key));
    }
    expect(values).toContain(SHAPED.pem);
    expect(values).toContain("MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB");
  });

  it("a redactor built from them scrubs each value deep inside a value", () => {
    const redact = redactor(secretValues(env));
    const planted = Object.entries(env).filter(([key, value]) => typeof value === "string" && !PLAIN_VARS.has(key));
    const data = { text: planted.map(([, value]) => `x${value}y`).join(" "), nested: [{ line: SHAPED.pem.split("\n")[1] }], keep: 3, none: null };
    const out = redact(data);
    for (const [key, value] of planted) expect(JSON.stringify(out), key).not.toContain(String(value));
    expect(out.nested[0]!.line).toBe(REDACTED);
    expect(out.keep).toBe(3);
    expect(out.none).toBeNull();
  });

  it("PLAIN_VARS is exactly the vars of wrangler.jsonc", () => {
    const config = JSON.parse(fs.readFileSync("wrangler.jsonc", "utf8").replace(/^\s*\/\/.*$/gm, "")) as { vars: Record<string, string> };
    expect([...PLAIN_VARS].sort()).toEqual(Object.keys(config.vars).sort());
  });
});
