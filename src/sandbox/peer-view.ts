/**
 * The peer view: a filtered, read-only copy of a coder's checkout that a
 * reviewer reads in a sandbox of its own. It holds regular files only (no
 * symbolic link survives, so none can point back into the coder's sandbox or
 * the host), none of the files that hold credentials, and has no write path
 * back: the reviewer gets a copy, never a mount.
 */
import type { Sandbox } from "./port.ts";

/**
 * What a peer view never holds, as names (`*` matches within one name) or
 * directories (a trailing `/`; `.git/objects/` is a path from the root).
 * A deployment adds to it with REVIEW_PEER_EXCLUDE; nothing removes these.
 */
export const PEER_VIEW_EXCLUDES: readonly string[] = [
  ".env*", ".envrc", ".npmrc", ".pypirc", ".netrc", ".git-credentials", ".pgpass", ".htpasswd", "credentials.json", "service-account*.json",
  "*.pem", "*.key",
  ".ssh/", ".aws/", ".docker/", ".claude/", ".codex/", ".gemini/", ".config/", ".cursor/", ".vscode/", ".idea/", "node_modules/", ".git/objects/",
];

/** The largest peer view (the archive, base64) copied to a reviewer. */
const MAX_PEER_VIEW_CHARS = 256 * 1024 * 1024;

/** The built-in excludes plus a deployment's own (which can only add). */
export function peerViewExcludes(extra: readonly string[]): string[] {
  return [...new Set([...PEER_VIEW_EXCLUDES, ...extra.map((entry) => entry.trim()).filter(Boolean)])];
}

export class PeerViewError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PeerViewError";
  }
}

/**
 * Packs the regular files of `repoDir`, minus `excludes`, into a base64 tar
 * archive in `scratchDir` and returns its text. `find` does not follow links
 * and keeps only regular files; tar is told not to recurse, so a path that
 * became a directory since adds nothing.
 */
export async function packPeerView(sandbox: Sandbox, repoDir: string, scratchDir: string, excludes: readonly string[], gitEnv: Record<string, string> = {}): Promise<{ archive: string; files: number }> {
  const archive = `${scratchDir}/peer-view.tar.gz`;
  const script = [
    "set -euo pipefail",
    'cd "$SORTIE_REPO"',
    "prune=()",
    'while IFS= read -r entry; do',
    '  [ -n "$entry" ] || continue',
    '  case "$entry" in',
    '    */*/) prune+=(-o -path "./${entry%/}") ;;',
    '    */) prune+=(-o -name "${entry%/}") ;;',
    '    *) prune+=(-o -name "$entry") ;;',
    "  esac",
    'done <<< "$SORTIE_EXCLUDES"',
    'find . -mindepth 1 \\( -false "${prune[@]}" \\) -prune -o -type f -print0 > "$SORTIE_ARCHIVE.list"',
    // Source compresses well and the archive crosses two sandbox boundaries: the fastest gzip level is enough.
    'tar --null --no-recursion -T "$SORTIE_ARCHIVE.list" -cf - | gzip -1 > "$SORTIE_ARCHIVE"',
    'base64 -w0 "$SORTIE_ARCHIVE" > "$SORTIE_ARCHIVE.b64"',
    'tr -cd "\\0" < "$SORTIE_ARCHIVE.list" | wc -c',
    'stat -c %s "$SORTIE_ARCHIVE.b64"',
  ].join("\n");
  const packed = await sandbox.exec(script, { env: { ...gitEnv, SORTIE_REPO: repoDir, SORTIE_ARCHIVE: archive, SORTIE_EXCLUDES: excludes.join("\n") }, timeoutMs: 5 * 60_000 });
  if (packed.exitCode !== 0) throw new PeerViewError(`could not pack the peer view: ${packed.stderr.trim().slice(0, 500)}`);
  const [files, chars] = packed.stdout.trim().split("\n").map(Number);
  if (!(Number(chars) <= MAX_PEER_VIEW_CHARS)) throw new PeerViewError(`the peer view is ${chars} bytes encoded, over the ${MAX_PEER_VIEW_CHARS} a reviewer is given`);
  const text = await new Response(await sandbox.readFile(`${archive}.b64`)).text();
  await sandbox.exec('rm -f "$SORTIE_ARCHIVE" "$SORTIE_ARCHIVE.list" "$SORTIE_ARCHIVE.b64"', { env: { SORTIE_ARCHIVE: archive } });
  return { archive: text, files: Number(files) };
}

/**
 * Unpacks a peer view at `peerDir` in the reviewer's sandbox as root's and
 * read-only to everyone else (whatever the archive claims), with any link
 * removed, and makes `outDir` the reviewer user's own: the one place it writes.
 */
export async function installPeerView(sandbox: Sandbox, archive: string, dirs: { peerDir: string; outDir: string; uid: number }): Promise<void> {
  const encoded = `${dirs.outDir}.peer.b64`;
  await sandbox.writeFile(encoded, archive);
  const script = [
    "set -euo pipefail",
    'rm -rf "$SORTIE_PEER" "$SORTIE_OUT"',
    'install -d -m 0755 -o 0 -g 0 "$SORTIE_PEER"',
    // Extracted by root without the archive's owners (so root's) and through the umask (so not group or world writable).
    'base64 -d "$SORTIE_ENCODED" | gzip -dc | tar -x --no-same-owner --no-same-permissions -C "$SORTIE_PEER" -f -',
    'rm -f "$SORTIE_ENCODED"',
    'find "$SORTIE_PEER" -type l -delete',
    'chmod -R a+rX,go-w,ug-s "$SORTIE_PEER"',
    'install -d -m 0700 -o "$SORTIE_UID" -g "$SORTIE_UID" "$SORTIE_OUT"',
  ].join("\n");
  const result = await sandbox.exec(script, { env: { SORTIE_PEER: dirs.peerDir, SORTIE_OUT: dirs.outDir, SORTIE_ENCODED: encoded, SORTIE_UID: String(dirs.uid) }, timeoutMs: 5 * 60_000 });
  if (result.exitCode !== 0) throw new PeerViewError(`could not install the peer view: ${result.stderr.trim().slice(0, 500)}`);
}
