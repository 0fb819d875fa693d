import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

/** The Fleet benchmark in workerd (`npm run bench -- fleet`), apart from the test suites. */
export default defineConfig(async () => ({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./bench/fleet/wrangler.jsonc" },
      miniflare: {
        bindings: {
          TEST_MIGRATIONS: await readD1Migrations("migrations"),
          MAX_SANDBOXES: process.env.FLEET_BENCH_CAP ?? "10000",
          MAX_SANDBOXES_PER_CREATOR: process.env.FLEET_BENCH_CREATOR_CAP ?? "200",
          MAX_TIMEOUT_MINUTES: "120",
        },
      },
    }),
  ],
  test: {
    include: ["bench/fleet/fleet.test.ts"],
    setupFiles: ["test/support/apply-migrations.ts"],
    testTimeout: 600_000,
  },
}));
