import { SortieError } from "./errors.ts";

const OWNER = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$/;
const NAME = /^[A-Za-z0-9._-]{1,100}$/;

/** A repository as Sortie names it (`owner/name`) and the URL it clones from. */
export interface RepoRef {
  slug: string;
  cloneUrl: string;
}

/**
 * Accepts `owner/name` or `https://github.com/owner/name[.git]` and resolves it
 * against `GIT_BASE_URL`. Anything else is a 400.
 *
 * @example resolveRepo("acme/widgets", "https://github.com").cloneUrl // https://github.com/acme/widgets.git
 */
export function resolveRepo(input: string, gitBaseUrl: string): RepoRef {
  const slug = slugOf(input.trim());
  if (!slug) {
    throw new SortieError(
      "invalid_repo",
      `repo must be "owner/name" or a https://github.com/owner/name URL, got ${JSON.stringify(input.slice(0, 200))}`,
    );
  }
  return { slug, cloneUrl: `${gitBaseUrl}/${slug}.git` };
}

function slugOf(input: string): string | null {
  let path = input;
  const url = /^https:\/\/(?:www\.)?github\.com\/(.+)$/i.exec(input);
  if (url) path = url[1]!.replace(/\/+$/, "");
  else if (input.includes(":") || input.startsWith("/")) return null;
  path = path.replace(/\.git$/, "");
  const parts = path.split("/");
  if (parts.length !== 2) return null;
  const [owner, name] = parts as [string, string];
  if (!OWNER.test(owner) || !NAME.test(name) || name === "." || name === ".." || name.endsWith(".lock")) return null;
  return `${owner}/${name}`;
}

/**
 * Whether `name` is a branch name git would accept (the rules of
 * `git check-ref-format --branch`), so it can be passed to `git clone --branch`.
 */
export function isValidBranchName(name: string): boolean {
  if (name.length === 0 || name.length > 200) return false;
  if (name.startsWith("-") || name.startsWith("/") || name.endsWith("/") || name.endsWith(".")) return false;
  // `HEAD` names the checked-out commit, never a branch; a lone `@` is only barred as a whole ref, so `refs/heads/@` is fine.
  if (name === "HEAD" || name.includes("..") || name.includes("@{") || name.includes("//")) return false;
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x20\x7f~^:?*[\\]/.test(name)) return false;
  return name.split("/").every((part) => part.length > 0 && !part.startsWith(".") && !part.endsWith(".lock"));
}
