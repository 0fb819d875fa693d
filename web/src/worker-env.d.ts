/**
 * src/config.ts (imported through src/schema.ts) names the Worker's `Cloudflare.Env`.
 * The generated declaration pulls in the whole Worker and its runtime types, which
 * clash with the DOM's, and the viewer never reads the Worker's env: a loose shape stands in.
 */
declare namespace Cloudflare {
  interface Env {
    readonly [key: string]: string | undefined;
  }
}
