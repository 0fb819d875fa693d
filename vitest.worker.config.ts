import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

/** The Worker's tests, inside workerd, with runs going to a real local sandbox host. */
export default defineConfig(async () => {
  const migrations = await readD1Migrations("migrations");
  return {
    plugins: [
      cloudflareTest(({ inject }) => ({
        wrangler: { configPath: "./wrangler.jsonc" },
        miniflare: {
          bindings: {
            TEST_MIGRATIONS: migrations,
            SORTIE_ADMIN_TOKEN: "test-admin-token",
            ANTHROPIC_API_KEY: "sk-ant-test-key-0123456789",
            ANTHROPIC_BASE_URL: inject("anthropicUrl"),
            GEMINI_API_KEY: "gemini-test-key",
            GEMINI_BASE_URL: inject("geminiUrl"),
            SANDBOX_BACKEND: "local",
            LOCAL_SANDBOX_URL: inject("localSandboxUrl"),
            LOCAL_SANDBOX_TOKEN: "test-local-sandbox-token",
            GIT_BASE_URL: inject("gitBaseUrl"),
            MAX_BODY_BYTES: "65536",
            MAX_SANDBOXES: "4",
            RETRY_BASE_MS: "50",
            SLACK_SIGNING_SECRET: "test-slack-signing-secret",
            SLACK_BOT_TOKEN: "xoxb-test-bot-token",
            SLACK_API_URL: `${inject("slackUrl")}/api`,
            SLACK_ALLOWED_USERS: "U0ALICE,U0BOB,T0FRIENDS",
            FOLLOWUP_WINDOW_MINUTES: "0",
            // test/worker/preview.test.ts waits for a preview that never listens.
            PREVIEW_READY_SECONDS: "4",
            TASK_RATE_LIMIT_PER_MINUTE: "1000",
            GITHUB_API_URL: inject("githubApiUrl"),
            GITHUB_APP_ID: "4242",
            GITHUB_APP_PRIVATE_KEY: inject("githubAppPrivateKey"),
            GITHUB_TOKEN: "",
            GITHUB_WEBHOOK_SECRET: "test-github-webhook-secret",
            // test/worker/tending.test.ts spends a pull request's whole budget.
            PR_FIX_MAX_ATTEMPTS: "2",
          },
        },
      })),
    ],
    test: {
      // `npm run record:logs` runs the recorder of test/node/fold.test.ts's fixtures instead (scripts/record-logs.ts).
      include: process.env.SORTIE_RECORD_LOGS ? ["test/worker/record-logs.capture.ts"] : ["test/worker/**/*.test.ts"],
      globalSetup: ["test/support/global-setup.ts", "test/support/escape-fixtures.ts", "test/support/browser-rendering.ts"],
      setupFiles: ["test/support/apply-migrations.ts"],
      // One file at a time: they share the local sandbox host, its fault injection and its counts.
      fileParallelism: false,
      testTimeout: 60_000,
      hookTimeout: 60_000,
    },
  };
});
