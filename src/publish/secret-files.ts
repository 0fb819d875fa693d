/**
 * Files that usually hold credentials. A run whose diff adds or changes one
 * is flagged, and its publication is refused unless the task allows it.
 */
const SECRET_FILE = [
  /(^|\/)\.env(\..*)?$/,
  /(^|\/)\.npmrc$/,
  /(^|\/)\.pypirc$/,
  /(^|\/)\.netrc$/,
  /(^|\/)\.git-credentials$/,
  /(^|\/)credentials(\.json)?$/,
  /(^|\/)\.aws\/credentials$/,
  /(^|\/)service-account.*\.json$/,
  /\.(pem|key|p12|pfx|jks|keystore)$/,
  /(^|\/)id_(rsa|dsa|ecdsa|ed25519)(\.pub)?$/,
  /(^|\/)\.ssh\//,
  /(^|\/)secrets?\.(ya?ml|json|toml)$/,
];

/** The paths in a patch (from `diff --git a/… b/…` lines) that look like secret files, except ones it deletes. */
export function secretFilesIn(patch: string): string[] {
  const found = new Set<string>();
  let current: string | null = null;
  for (const line of patch.split("\n")) {
    const header = /^diff --git a\/(.+) b\/(.+)$/.exec(line);
    if (header) {
      current = header[2]!;
      if (SECRET_FILE.some((pattern) => pattern.test(current!))) found.add(current);
      continue;
    }
    if (current && line.startsWith("deleted file mode")) found.delete(current);
  }
  return [...found];
}

export function isSecretFile(path: string): boolean {
  return SECRET_FILE.some((pattern) => pattern.test(path));
}
