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
    /** R2 API credentials the sandbox SDK signs backup uploads with (workspace snapshots, caches). */
    R2_ACCESS_KEY_ID?: string;
    R2_SECRET_ACCESS_KEY?: string;
    CLOUDFLARE_ACCOUNT_ID?: string;
    CLOUDFLARE_R2_ACCOUNT_ID?: string;
    /** The R2 endpoint backups use, when not the account's default (e.g. https://<account>.eu.r2.cloudflarestorage.com). */
    BACKUP_BUCKET_ENDPOINT?: string;
    /** Model API keys for the other agent CLIs (Codex, Gemini); Claude Code and OpenCode use ANTHROPIC_API_KEY. */
    OPENAI_API_KEY?: string;
    GEMINI_API_KEY?: string;
  }
}
