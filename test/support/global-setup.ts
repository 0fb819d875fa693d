/**
 * Starts what the Worker's tests reach over loopback: the scripted Messages
 * API stand-in, the local sandbox host (which runs the real Claude Code), and
 * fixture git repos. Their addresses reach the Worker as bindings.
 */
import type { TestProject } from "vitest/node";
import { startLocalSandboxHost } from "../../container/local-host.ts";
import { startAnthropicStandin } from "../standins/anthropic.mjs";
import { startGeminiStandin } from "../standins/gemini.mjs";
import { startSlackStandin } from "../standins/slack.ts";
import { createFixtureRepos } from "./fixtures.ts";
import { GITHUB_PERSONAL_TOKEN, startGitHubForTests } from "./github.ts";

export const LOCAL_SANDBOX_TOKEN = "test-local-sandbox-token";
/** The bot token the Slack stand-in accepts; the same value is the Worker's SLACK_BOT_TOKEN in vitest.worker.config.ts. */
export const SLACK_BOT_TOKEN = "xoxb-test-bot-token";

export default async function setup(project: TestProject) {
  const model = await startAnthropicStandin();
  const gemini = await startGeminiStandin();
  // The stand-in models listen on plain http: the walls may put their keys on it.
  const host = await startLocalSandboxHost({ token: LOCAL_SANDBOX_TOKEN, plaintextModelEndpoints: true });
  const gitBaseUrl = createFixtureRepos(undefined, ["acme/widgets", "acme/bootstrap", "acme/broken"]);
  const slack = await startSlackStandin({ botToken: SLACK_BOT_TOKEN });
  const github = await startGitHubForTests(gitBaseUrl.replace(/^file:\/\//, ""));
  project.provide("githubApiUrl", github.url);
  project.provide("githubAppPrivateKey", github.privateKeyPkcs1);
  project.provide("githubAppPrivateKeyPkcs8", github.privateKeyPkcs8);
  project.provide("githubPersonalToken", GITHUB_PERSONAL_TOKEN);
  project.provide("anthropicUrl", model.url);
  project.provide("geminiUrl", gemini.url);
  project.provide("localSandboxUrl", host.url);
  project.provide("gitBaseUrl", gitBaseUrl);
  project.provide("slackUrl", slack.url);
  return async () => {
    await host.close();
    await model.close();
    await gemini.close();
    await github.close();
    await slack.close();
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    anthropicUrl: string;
    geminiUrl: string;
    githubApiUrl: string;
    githubAppPrivateKey: string;
    githubAppPrivateKeyPkcs8: string;
    githubPersonalToken: string;
    localSandboxUrl: string;
    gitBaseUrl: string;
    slackUrl: string;
  }
}
