/**
 * The peer view: a filtered, read-only copy of a coder's checkout that a
 * reviewer reads in a sandbox of its own. It holds regular files only (no
 * symbolic link survives, so none can point back into the coder's sandbox or
 * the host), none of the files that hold credentials, and has no write path
 * back: the reviewer gets a copy, never a mount.
 */
import type { Confinement, Sandbox } from "./port.ts";

/**
 * What a peer view never holds, as names (`*` matches within one name) or
 * directories (a trailing `/`; `.git/objects/` is a path from the root).
 * A deployment adds to it with REVIEW_PEER_EXCLUDE; nothing removes these.
 */
export const PEER_VIEW_EXCLUDES: readonly string[] = [
  ".env*", ".envrc", ".npmrc", ".pypirc", ".netrc", ".git-credentials", ".pgpass", ".htpasswd", "credentials.json", "service-account*.json",
  "*.pem", "*.key",
  ".ssh/", ".aws/", ".docker/", ".claude/", ".codex/", ".gemini/", ".config/", ".cursor/", ".vscode/", ".idea/", "node_modules/", ".git/objects/",
  // Dependency and build directories: large, and not the change under review.
  ".venv/", "__pycache__/", ".next/",
];

/** The largest peer view (the gzipped archive, base64) copied to a reviewer: it passes through the task agent's memory. */
const MAX_PEER_VIEW_CHARS = 32 * 1024 * 1024;

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

/** Where the coder's checkout is, and who may read it: a workspace run's own user packs its own files. */
export interface PeerSource {
  repoDir: string;
  /** A directory the packing user may write. */
  scratchDir: string;
  env?: Record<string, string>;
  confine?: Confinement;
  /** Takes a file the packing user wrote into root's hands (refusing links); the identity when root packed. */
  collect(file: string): Promise<string>;
}

/**
 * Packs the regular files of the coder's checkout, minus `excludes`, into a
 * base64 gzipped tar archive and returns its text. `find` does not follow
 * links and keeps only regular files; tar is told not to recurse, so a path
 * that became a directory since adds nothing. In a shared sandbox the coder's
 * own user packs (root never writes where the coder could plant a link) and
 * the archive is collected from it.
 */
export async function packPeerView(sandbox: Sandbox, source: PeerSource, excludes: readonly string[]): Promise<{ archive: string; files: number }> {
  const archive = `${source.scratchDir}/peer-view.tar.gz`;
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
  const env = { ...source.env, SORTIE_REPO: source.repoDir, SORTIE_ARCHIVE: archive, SORTIE_EXCLUDES: excludes.join("\n") };
  const packed = await sandbox.exec(script, { env, timeoutMs: 5 * 60_000, ...(source.confine ? { confine: source.confine } : {}) });
  if (packed.exitCode !== 0) throw new PeerViewError(`could not pack the peer view: ${packed.stderr.trim().slice(0, 500)}`);
  const [files, chars] = packed.stdout.trim().split("\n").slice(-2).map(Number);
  if (!(Number(chars) <= MAX_PEER_VIEW_CHARS)) throw new PeerViewError(`the peer view is ${chars} bytes encoded, over the ${MAX_PEER_VIEW_CHARS} a reviewer is given; add large directories to REVIEW_PEER_EXCLUDE`);
  const collected = await source.collect(`${archive}.b64`);
  const text = await new Response(await sandbox.readFile(collected)).text();
  await sandbox.exec('rm -f "$SORTIE_COLLECTED"', { env: { SORTIE_COLLECTED: collected } });
  await sandbox.exec('rm -f "$SORTIE_ARCHIVE" "$SORTIE_ARCHIVE.list" "$SORTIE_ARCHIVE.b64"', { env: { SORTIE_ARCHIVE: archive }, ...(source.confine ? { confine: source.confine } : {}) });
  if (text.length > MAX_PEER_VIEW_CHARS) throw new PeerViewError(`the peer view grew past ${MAX_PEER_VIEW_CHARS} bytes while it was read`);
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
    'rm -rf "$SORTIE_PEER"',
    'install -d -m 0755 -o 0 -g 0 "$SORTIE_PEER"',
    // Extracted by root without the archive's owners (so root's) and through the umask (so not group or world writable).
    'base64 -d "$SORTIE_ENCODED" | gzip -dc | tar -x --no-same-owner --no-same-permissions -C "$SORTIE_PEER" -f -',
    'rm -f "$SORTIE_ENCODED"',
    // Regular files and directories only: no link, FIFO or device node a coder could have swapped in survives.
    'find "$SORTIE_PEER" -mindepth 1 ! -type f ! -type d -delete',
    'chmod -R a+rX,go-w,ug-s "$SORTIE_PEER"',
  ].join("\n");
  const result = await sandbox.exec(script, { env: { SORTIE_PEER: dirs.peerDir, SORTIE_ENCODED: encoded }, timeoutMs: 5 * 60_000 });
  if (result.exitCode !== 0) throw new PeerViewError(`could not install the peer view: ${result.stderr.trim().slice(0, 500)}`);
  // Handing the reviewer its own directory needs root outside the local backend's walls; the archive was unpacked inside them.
  const own = await sandbox.exec('rm -rf "$SORTIE_OUT" && install -d -m 0700 -o "$SORTIE_UID" -g "$SORTIE_UID" "$SORTIE_OUT"', {
    env: { SORTIE_OUT: dirs.outDir, SORTIE_UID: String(dirs.uid) },
    bookkeeping: true,
  });
  if (own.exitCode !== 0) throw new PeerViewError(`could not make the reviewer's directory: ${own.stderr.trim().slice(0, 500)}`);
}
