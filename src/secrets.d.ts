/**
 * Secrets Sortie can work without: each enables a feature (Slack, GitHub, the
 * local sandbox host) and the feature answers with an error naming the key
 * when it is unset. `wrangler types` types only the required secrets
 * (`secrets.required` in wrangler.jsonc), so the optional ones are declared here.
 */
declare namespace Cloudflare {
  interface Env {
    LOCAL_SANDBOX_TOKEN?: string;
    SLACK_SIGNING_SECRET?: string;
    SLACK_BOT_TOKEN?: string;
    GITHUB_WEBHOOK_SECRET?: string;
    GITHUB_APP_PRIVATE_KEY?: string;
    GITHUB_TOKEN?: string;
  }
}
