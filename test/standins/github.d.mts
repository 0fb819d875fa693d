/** Types for the GitHub REST API stand-in (github.mjs), so TypeScript tests can start it and read its calls. */

/** One request the stand-in received. */
export interface GitHubCall {
  method: string;
  path: string;
  body: Record<string, unknown> | null;
  /** The bearer or token credential sent, if any. */
  credential: string | null;
  authKind: "jwt" | "installation" | "personal" | "invalid" | "none";
  status: number;
  /** A call the stand-in refused as GitHub would not have served it, or does not implement. */
  unexpected: boolean;
  at: number;
}

/** Makes the next `count` calls to `method path` answer `status` with `message` (plus the caller's Authorization header if `echoCredential`). */
export interface GitHubFault {
  method: string;
  path: string;
  status?: number;
  message?: string;
  echoCredential?: boolean;
  count?: number;
}

export interface GitHubStandin {
  url: string;
  calls(): GitHubCall[];
  close(): Promise<void>;
}

export function startGitHubStandin(options: {
  appId: string;
  /** PEM (SPKI or PKCS#1) of the app's public key. */
  publicKey: string;
  installations: { id: number; account: string; repositories: string[] }[];
  defaultBranches?: Record<string, string>;
  personalToken?: string;
  /** The directory holding the fixture's bare repositories (`owner/name.git`), for branch heads. */
  gitRoot?: string;
}): Promise<GitHubStandin>;
