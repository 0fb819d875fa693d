declare namespace Cloudflare {
  interface Env {
    /** Test-only binding: the D1 migrations, applied by test/support/apply-migrations.ts. */
    TEST_MIGRATIONS: import("cloudflare:test").D1Migration[];
  }
}
