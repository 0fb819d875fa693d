/**
 * Fixture repositories for tests, demos and benchmarks: bare git repos under
 * one directory, so `GIT_BASE_URL=file://<dir>` resolves `acme/widgets` with
 * no network.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: "Fixture",
  GIT_AUTHOR_EMAIL: "fixture@example.com",
  GIT_COMMITTER_NAME: "Fixture",
  GIT_COMMITTER_EMAIL: "fixture@example.com",
};

/** A 1×1 PNG: a binary file the diff must carry intact. */
export const PNG_BYTES = Buffer.from(
  "89504e470d0a1a0a0000000d4948445200000001000000010806000000" + "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a1d3a4a80000000049454e44ae426082",
  "hex",
);

/**
 * Repositories with a setup step: `acme/bootstrap` "installs" for a while
 * (SETUP_SECONDS, default 1) into node_modules and a cache directory, noting
 * cache hits; `acme/broken` fails its setup.
 */
const SETUP_SCRIPTS: Record<string, string> = {
  "acme/bootstrap": [
    "#!/usr/bin/env bash",
    "set -eu",
    'echo "installing dependencies"',
    'mkdir -p node_modules',
    'if [ -n "${SORTIE_CACHE_DIR:-}" ] && [ -f "$SORTIE_CACHE_DIR/deps.tgz" ]; then',
    '  echo "cache hit"',
    '  tar -xzf "$SORTIE_CACHE_DIR/deps.tgz" -C node_modules',
    "else",
    '  sleep "${SETUP_SECONDS:-1}"',
    '  echo "built at $(date +%s)" > node_modules/.built',
    '  if [ -n "${SORTIE_CACHE_DIR:-}" ]; then tar -czf "$SORTIE_CACHE_DIR/deps.tgz" -C node_modules .; fi',
    "fi",
    'echo "setup done"',
    "",
  ].join("\n"),
  "acme/broken": ["#!/usr/bin/env bash", 'echo "resolving packages"', 'echo "npm ERR! 404 left-pad not found" >&2', "exit 3", ""].join("\n"),
};

/** Creates `<root>/<owner>/<name>.git` with a README, a source file and a binary file; returns the clone URL base. */
export function createFixtureRepos(root = fs.mkdtempSync(path.join(os.tmpdir(), "sortie-git-")), slugs = ["acme/widgets"]): string {
  for (const slug of slugs) {
    const bare = path.join(root, `${slug}.git`);
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "sortie-fixture-"));
    const git = (...args: string[]) => execFileSync("git", args, { cwd: work, env: GIT_ENV, stdio: "pipe" });
    git("init", "-q", "-b", "main");
    fs.writeFileSync(path.join(work, "README.md"), `# ${slug}\n\nA fixture repository.\n`);
    fs.mkdirSync(path.join(work, "src"));
    fs.writeFileSync(path.join(work, "src", "widget.js"), "export const widget = () => 'widget';\n");
    fs.writeFileSync(path.join(work, "logo.png"), PNG_BYTES);
    const setup = SETUP_SCRIPTS[slug];
    if (setup) {
      fs.mkdirSync(path.join(work, ".sortie"));
      fs.writeFileSync(path.join(work, ".sortie", "setup.sh"), setup, { mode: 0o755 });
      fs.writeFileSync(path.join(work, "package-lock.json"), `{"name":"${slug}","lockfileVersion":3}\n`);
    }
    git("add", "-A");
    git("commit", "-q", "-m", "initial");
    git("checkout", "-q", "-b", "develop");
    fs.writeFileSync(path.join(work, "DEVELOP.md"), "only on develop\n");
    git("add", "-A");
    git("commit", "-q", "-m", "develop");
    git("checkout", "-q", "main");
    fs.mkdirSync(path.dirname(bare), { recursive: true });
    execFileSync("git", ["clone", "-q", "--bare", work, bare], { env: GIT_ENV });
    fs.rmSync(work, { recursive: true, force: true });
  }
  return `file://${root}`;
}
