/**
 * The GitHub side of the Worker's tests: an app key pair made for this run and
 * the REST API stand-in that knows its public key. The app is installed on
 * `acme` for `widgets` and `gadgets`; `acme/unlisted` exists but lacks it.
 */
import { generateKeyPairSync } from "node:crypto";
import { startGitHubStandin } from "../standins/github.mjs";

export const GITHUB_APP_ID = "4242";
export const GITHUB_INSTALLATION_ID = 101;
/** The personal token the stand-in accepts, for the fallback when no app is configured. */
export const GITHUB_PERSONAL_TOKEN = "ghp_standinPersonalToken0123456789abcdef";

export async function startGitHubForTests(gitRoot?: string) {
  // GitHub hands out PKCS#1 keys ("BEGIN RSA PRIVATE KEY"); the PKCS#8 form of the same key proves both are read.
  const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const standin = await startGitHubStandin({
    appId: GITHUB_APP_ID,
    publicKey: publicKey.export({ type: "spki", format: "pem" }).toString(),
    installations: [{ id: GITHUB_INSTALLATION_ID, account: "acme", repositories: ["widgets", "gadgets"] }],
    defaultBranches: { "acme/widgets": "main", "acme/gadgets": "trunk", "acme/unlisted": "main" },
    personalToken: GITHUB_PERSONAL_TOKEN,
    gitRoot,
  });
  return {
    url: standin.url,
    privateKeyPkcs1: privateKey.export({ type: "pkcs1", format: "pem" }).toString(),
    privateKeyPkcs8: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    close: standin.close,
  };
}
