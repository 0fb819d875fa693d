/**
 * Starts what the Worker's tests reach over loopback: the scripted Messages
 * API stand-in, the local sandbox host (which runs the real Claude Code), and
 * fixture git repos. Their addresses reach the Worker as bindings.
 */
import type { TestProject } from "vitest/node";
import { startLocalSandboxHost } from "../../container/local-host.ts";
import { startAnthropicStandin } from "../standins/anthropic.mjs";
import { createFixtureRepos } from "./fixtures.ts";

export const LOCAL_SANDBOX_TOKEN = "test-local-sandbox-token";

export default async function setup(project: TestProject) {
  const model = await startAnthropicStandin();
  const host = await startLocalSandboxHost({ token: LOCAL_SANDBOX_TOKEN });
  const gitBaseUrl = createFixtureRepos();
  project.provide("anthropicUrl", model.url);
  project.provide("localSandboxUrl", host.url);
  project.provide("gitBaseUrl", gitBaseUrl);
  return async () => {
    await host.close();
    await model.close();
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    anthropicUrl: string;
    localSandboxUrl: string;
    gitBaseUrl: string;
  }
}
