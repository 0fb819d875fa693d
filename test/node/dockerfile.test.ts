/**
 * The sandbox image and the npm packages must move together: the SDK talks to
 * the container server baked into its own base image version, and the
 * Claude Code the image installs is the one the tests record and run.
 */
import fs from "node:fs";
import { describe, expect, it } from "vitest";
import { allAdapters } from "../../src/runners/index.ts";

const dockerfile = fs.readFileSync(new URL("../../container/Dockerfile", import.meta.url), "utf8");
const manifest = JSON.parse(fs.readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { devDependencies: Record<string, string> };
const sandboxSdk = JSON.parse(fs.readFileSync(new URL("../../node_modules/@cloudflare/sandbox/package.json", import.meta.url), "utf8")) as { version: string };

/** An exact version such as 2.1.330: no range, no tag like `latest`. */
const EXACT_VERSION = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/;

describe("container/Dockerfile", () => {
  it("builds on the sandbox base image of the installed @cloudflare/sandbox version", () => {
    const bases = [...dockerfile.matchAll(/^FROM\s+(\S+)/gim)].map((match) => match[1]);
    expect(bases).toHaveLength(1);
    const tag = /^docker\.io\/cloudflare\/sandbox:(\S+)$/.exec(bases[0] ?? "")?.[1];
    expect(tag, `base image ${bases[0]}`).toBe(sandboxSdk.version);
  });

  it("installs every agent CLI at the version its adapter pins, the one the tests run where package.json has it", () => {
    for (const adapter of allAdapters()) {
      const { package: name, version } = adapter.install;
      expect(version).toMatch(EXACT_VERSION);
      const installed = [...dockerfile.matchAll(new RegExp(`\\s${name.replace(/[/@.-]/g, "\\$&")}@(\\S+)`, "g"))].map((match) => match[1]);
      expect(installed, name).toEqual([version]);
      const pinned = manifest.devDependencies[name];
      if (pinned !== undefined) expect(pinned, name).toBe(version);
    }
  });

  it("installs the Claude Code version package.json pins", () => {
    const installed = [...dockerfile.matchAll(/@anthropic-ai\/claude-code@(\S+)/g)].map((match) => match[1]);
    const pinned = manifest.devDependencies["@anthropic-ai/claude-code"];
    expect(pinned).toMatch(EXACT_VERSION);
    expect(installed).toEqual([pinned]);
  });
});
