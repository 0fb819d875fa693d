// A stand-in for the parts of GitHub's REST API that Sortie calls, spoken
// over loopback. It checks what GitHub checks, so a test fails where GitHub
// would refuse:
//
//   - the app routes (`GET /repos/:o/:r/installation`,
//     `POST /app/installations/:id/access_tokens`) take only an app JWT:
//     RS256, signed by the app's private key (checked with its public key),
//     `iss` = the app id, not expired, at most ten minutes long;
//   - an installation token works only on the repositories it was scoped to,
//     with the permissions it was given (a pull request needs
//     pull_requests:write, an issue comment issues:write, or
//     pull_requests:write when the number is a pull request);
//   - a personal token (`personalToken`) works everywhere.
//
// Every call is recorded; `GET /__calls` hands them to the tests in workerd
// and `DELETE /__calls` clears them (and the pending faults). Anything it does
// not implement answers 404 and is recorded as unexpected: fail closed.
// `POST /__faults` makes the next matching call fail, echoing the caller's
// credential in the error when asked, to prove Sortie's errors never repeat it.
//
// Pull requests it opened are served back (`GET /repos/:o/:r/pulls/:n`) with
// their branch heads read from the fixture's bare repositories (`gitRoot`),
// so a push shows as a new head; tests set what GitHub would compute or
// report through `POST /__pulls` (state, merged, mergeable_state),
// `POST /__check-runs` (check runs with output and annotations, listed by
// ref and by check suite) and `POST /__reviews` (a review's comments).
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import http from "node:http";
import { readJson } from "./http.mjs";

const PERMISSION_LEVELS = new Set(["read", "write"]);
const KNOWN_PERMISSIONS = new Set(["contents", "pull_requests", "issues", "metadata", "checks", "workflows"]);

/**
 * @param {{
 *   appId: string,
 *   publicKey: string,
 *   installations: { id: number, account: string, repositories: string[] }[],
 *   defaultBranches?: Record<string, string>,
 *   personalToken?: string,
 *   gitRoot?: string,
 * }} options
 */
export async function startGitHubStandin(options) {
  /** @type {import("./github.d.mts").GitHubCall[]} */
  let calls = [];
  /** @type {{ method: string, path: string, status: number, message: string, echoCredential: boolean, count: number }[]} */
  let faults = [];
  /** token -> grant */
  const tokens = new Map();
  /** "owner/name" -> Set of pull request numbers */
  const pulls = new Map();
  /** "owner/name#N" -> { head, base, state, merged, mergeable_state } */
  const pullRecords = new Map();
  /** Check runs tests reported: { repo, id, name, head_sha, conclusion, status, check_suite_id, output, annotations } */
  const checkRuns = [];
  /** "owner/name#review" -> review comments */
  const reviews = new Map();
  let nextReplyId = 9000;
  let nextNumber = 100;
  let nextCommentId = 5000;

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://standin");
    const path = url.pathname;
    const method = req.method ?? "GET";
    const send = (status, value) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(value));

    if (path === "/__calls" && method === "GET") return send(200, { calls });
    if (path === "/__calls" && method === "DELETE") {
      calls = [];
      faults = [];
      return send(200, { ok: true });
    }
    if (path === "/__pulls" && method === "POST") {
      const update = await readJson(req);
      const record = pullRecords.get(`${update.repo}#${update.number}`);
      if (!record) return send(404, { message: `no pull request ${update.repo}#${update.number}` });
      for (const field of ["state", "merged", "mergeable_state"]) if (field in update) record[field] = update[field];
      return send(200, record);
    }
    if (path === "/__check-runs" && method === "POST") {
      const run = await readJson(req);
      const headSha = run.head_sha ?? branchHead(run.repo, run.ref);
      checkRuns.unshift({ status: "completed", check_suite_id: 0, output: {}, annotations: [], ...run, head_sha: headSha });
      return send(200, { head_sha: headSha });
    }
    if (path === "/__reviews" && method === "POST") {
      const review = await readJson(req);
      reviews.set(`${review.repo}#${review.id}`, review.comments);
      return send(200, { ok: true });
    }
    if (path === "/__faults" && method === "POST") {
      const fault = await readJson(req);
      faults.push({ status: 500, message: "stand-in failure", echoCredential: false, count: 1, ...fault });
      return send(200, { ok: true });
    }

    const body = await readJson(req);
    const authorization = req.headers.authorization ?? "";
    const credential = /^(?:bearer|token)\s+(\S+)$/i.exec(authorization)?.[1] ?? null;
    const call = { method, path, body: body ?? null, credential, authKind: "none", status: 0, unexpected: false, at: Date.now() };
    calls.push(call);
    const answer = (status, value) => {
      call.status = status;
      send(status, value);
    };
    const refuse = (status, message) => {
      call.unexpected = true;
      answer(status, { message, documentation_url: "https://docs.github.com/rest" });
    };

    const faultIndex = faults.findIndex((f) => f.method === method && f.path === path);
    if (faultIndex >= 0) {
      const fault = faults[faultIndex];
      fault.count -= 1;
      if (fault.count <= 0) faults.splice(faultIndex, 1);
      const message = fault.echoCredential ? `${fault.message} (you sent ${authorization})` : fault.message;
      return answer(fault.status, { message, documentation_url: "https://docs.github.com/rest" });
    }

    const jwt = credential ? verifyAppJwt(credential, options) : { ok: false, reason: "no credential" };
    const grant = credential ? tokens.get(credential) : undefined;
    const personal = options.personalToken !== undefined && credential === options.personalToken;
    call.authKind = jwt.ok ? "jwt" : grant ? "installation" : personal ? "personal" : credential ? "invalid" : "none";

    let m;
    if ((m = /^\/repos\/([^/]+)\/([^/]+)\/installation$/.exec(path)) && method === "GET") {
      if (!jwt.ok) return refuse(401, `an app JWT is required: ${jwt.reason}`);
      const installation = installationOf(options, m[1], m[2]);
      if (!installation) return answer(404, { message: "Not Found" });
      return answer(200, { id: installation.id, account: { login: installation.account }, app_id: Number(options.appId) });
    }
    if ((m = /^\/app\/installations\/(\d+)\/access_tokens$/.exec(path)) && method === "POST") {
      if (!jwt.ok) return refuse(401, `an app JWT is required: ${jwt.reason}`);
      const installation = options.installations.find((i) => i.id === Number(m[1]));
      if (!installation) return refuse(404, "no such installation");
      const repositories = body?.repositories;
      if (!Array.isArray(repositories) || repositories.length === 0) return refuse(422, "the stand-in expects tokens scoped to named repositories");
      for (const name of repositories) {
        if (typeof name !== "string" || !installation.repositories.includes(name)) return refuse(422, `repository ${name} is not in installation ${installation.id}`);
      }
      const permissions = body?.permissions;
      if (!permissions || typeof permissions !== "object" || Object.keys(permissions).length === 0) return refuse(422, "the stand-in expects explicit permissions");
      for (const [name, level] of Object.entries(permissions)) {
        if (!KNOWN_PERMISSIONS.has(name) || !PERMISSION_LEVELS.has(level)) return refuse(422, `unknown permission ${name}=${level}`);
      }
      const token = `ghs_${crypto.randomBytes(27).toString("base64url").replace(/[-_]/g, "x").slice(0, 36)}`;
      const expiresAt = new Date(Date.now() + 60 * 60 * 1000).toISOString();
      tokens.set(token, { installation, repositories, permissions, expiresAt });
      return answer(201, {
        token,
        expires_at: expiresAt,
        permissions,
        repository_selection: "selected",
        repositories: repositories.map((name) => ({ name, full_name: `${installation.account}/${name}` })),
      });
    }

    if ((m = /^\/repos\/([^/]+)\/([^/]+)(\/.*)?$/.exec(path))) {
      const [, owner, name, rest = ""] = m;
      const slug = `${owner}/${name}`;
      const access = repoAccess(grant, personal, owner, name);
      if (!access.ok) return refuse(access.status, access.message);
      if (rest === "" && method === "GET") {
        const branch = options.defaultBranches?.[slug];
        if (!branch) return answer(404, { message: "Not Found" });
        return answer(200, { name, full_name: slug, owner: { login: owner }, default_branch: branch, private: true });
      }
      if (rest === "/pulls" && method === "POST") {
        if (!can(grant, personal, "pull_requests")) return refuse(403, "Resource not accessible by integration");
        for (const field of ["title", "head", "base"]) {
          if (typeof body?.[field] !== "string" || body[field] === "") return refuse(422, `${field} is required`);
        }
        const number = nextNumber++;
        if (!pulls.has(slug)) pulls.set(slug, new Set());
        pulls.get(slug).add(number);
        pullRecords.set(`${slug}#${number}`, { head: body.head, base: body.base, state: "open", merged: false, mergeable_state: "clean" });
        return answer(201, {
          number,
          html_url: `https://github.com/${slug}/pull/${number}`,
          url: `https://api.github.com/repos/${slug}/pulls/${number}`,
          title: body.title,
          body: body.body ?? null,
          draft: body.draft === true,
          head: { ref: body.head },
          base: { ref: body.base },
        });
      }
      const review = /^\/pulls\/(\d+)\/reviews$/.exec(rest);
      if (review && method === "POST") {
        if (!can(grant, personal, "pull_requests")) return refuse(403, "Resource not accessible by integration");
        if (!(pulls.get(slug)?.has(Number(review[1])) ?? false)) return answer(404, { message: "Not Found" });
        const comments = Array.isArray(body?.comments) ? body.comments : [];
        // GitHub refuses a line comment outside the diff; the stand-in refuses one on line 0 or without a path.
        if (comments.some((c) => typeof c?.path !== "string" || !(c.line >= 1))) return refuse(422, "pull_request_review_thread.line must be part of the diff");
        const id = nextCommentId++;
        return answer(200, { id, state: body?.event === "COMMENT" ? "COMMENTED" : "PENDING", body: body?.body ?? "" });
      }
      const pull = /^\/pulls\/(\d+)$/.exec(rest);
      if (pull && method === "GET") {
        if (!can(grant, personal, "pull_requests", "read")) return refuse(403, "Resource not accessible by integration");
        const record = pullRecords.get(`${slug}#${pull[1]}`);
        if (!record) return answer(404, { message: "Not Found" });
        return answer(200, {
          number: Number(pull[1]),
          state: record.state,
          merged: record.merged,
          mergeable: record.mergeable_state === "dirty" ? false : true,
          mergeable_state: record.mergeable_state,
          head: { ref: record.head, sha: branchHead(slug, record.head) },
          base: { ref: record.base, sha: branchHead(slug, record.base) },
          html_url: `https://github.com/${slug}/pull/${pull[1]}`,
        });
      }
      const branch = /^\/branches\/(.+)$/.exec(rest);
      if (branch && method === "GET") {
        const sha = branchHead(slug, decodeURIComponent(branch[1]));
        if (!sha) return answer(404, { message: "Branch not found" });
        return answer(200, { name: decodeURIComponent(branch[1]), commit: { sha } });
      }
      const forRef = /^\/commits\/(.+)\/check-runs$/.exec(rest);
      if (forRef && method === "GET") {
        if (!can(grant, personal, "checks", "read")) return refuse(403, "Resource not accessible by integration");
        const ref = decodeURIComponent(forRef[1]);
        const sha = /^[0-9a-f]{40}$/.test(ref) ? ref : branchHead(slug, ref);
        const name = url.searchParams.get("check_name");
        const found = checkRuns.filter((r) => r.repo === slug && r.head_sha === sha && (!name || r.name === name));
        return answer(200, { total_count: found.length, check_runs: found.map(publicCheckRun) });
      }
      const forSuite = /^\/check-suites\/(\d+)\/check-runs$/.exec(rest);
      if (forSuite && method === "GET") {
        if (!can(grant, personal, "checks", "read")) return refuse(403, "Resource not accessible by integration");
        const found = checkRuns.filter((r) => r.repo === slug && r.check_suite_id === Number(forSuite[1]));
        return answer(200, { total_count: found.length, check_runs: found.map(publicCheckRun) });
      }
      const annotations = /^\/check-runs\/(\d+)\/annotations$/.exec(rest);
      if (annotations && method === "GET") {
        if (!can(grant, personal, "checks", "read")) return refuse(403, "Resource not accessible by integration");
        const run = checkRuns.find((r) => r.repo === slug && r.id === Number(annotations[1]));
        if (!run) return answer(404, { message: "Not Found" });
        return answer(200, run.annotations);
      }
      const reviewComments = /^\/pulls\/(\d+)\/reviews\/(\d+)\/comments$/.exec(rest);
      if (reviewComments && method === "GET") {
        if (!can(grant, personal, "pull_requests", "read")) return refuse(403, "Resource not accessible by integration");
        const comments = reviews.get(`${slug}#${reviewComments[2]}`);
        if (!comments) return answer(404, { message: "Not Found" });
        return answer(200, comments.map((c) => ({ pull_request_review_id: Number(reviewComments[2]), original_line: c.line ?? null, in_reply_to_id: null, ...c })));
      }
      const reply = /^\/pulls\/(\d+)\/comments\/(\d+)\/replies$/.exec(rest);
      if (reply && method === "POST") {
        if (!can(grant, personal, "pull_requests")) return refuse(403, "Resource not accessible by integration");
        if (!pullRecords.has(`${slug}#${reply[1]}`)) return refuse(404, "Not Found");
        if (typeof body?.body !== "string" || body.body === "") return refuse(422, "body is required");
        const id = nextReplyId++;
        return answer(201, { id, body: body.body, in_reply_to_id: Number(reply[2]), html_url: `https://github.com/${slug}/pull/${reply[1]}#discussion_r${id}` });
      }
      const comment = /^\/issues\/(\d+)\/comments$/.exec(rest);
      if (comment && method === "POST") {
        const number = Number(comment[1]);
        const isPull = pulls.get(slug)?.has(number) ?? false;
        const allowed = can(grant, personal, "issues") || (isPull && can(grant, personal, "pull_requests"));
        if (!allowed) return refuse(403, "Resource not accessible by integration");
        if (typeof body?.body !== "string" || body.body === "") return refuse(422, "body is required");
        const id = nextCommentId++;
        return answer(201, { id, body: body.body, html_url: `https://github.com/${slug}/issues/${number}#issuecomment-${id}` });
      }
    }
    return refuse(404, `the stand-in has no route ${method} ${path}`);
  });

  /** Whether the credential reaches this repository at all. */
  function repoAccess(grant, personal, owner, name) {
    if (personal) return { ok: true };
    if (!grant) return { ok: false, status: 401, message: "Bad credentials" };
    if (Date.parse(grant.expiresAt) <= Date.now()) return { ok: false, status: 401, message: "token expired" };
    if (grant.installation.account !== owner || !grant.repositories.includes(name)) return { ok: false, status: 404, message: "Not Found" };
    return { ok: true };
  }

  function can(grant, personal, permission, level = "write") {
    const held = grant?.permissions?.[permission];
    return personal || held === "write" || (level === "read" && held === "read");
  }

  /** The commit `branch` points at in the fixture's bare repository, or null. */
  function branchHead(slug, branch) {
    if (!options.gitRoot || !branch) return null;
    try {
      return execFileSync("git", ["--git-dir", `${options.gitRoot}/${slug}.git`, "rev-parse", "--verify", "--quiet", `refs/heads/${branch}`], { stdio: "pipe" }).toString().trim() || null;
    } catch {
      return null;
    }
  }

  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    calls: () => calls,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A check run as the REST API lists it. */
function publicCheckRun(run) {
  return { id: run.id, name: run.name, head_sha: run.head_sha, status: run.status, conclusion: run.conclusion, output: { title: null, summary: null, text: null, annotations_count: run.annotations.length, ...run.output } };
}

function installationOf(options, owner, name) {
  return options.installations.find((i) => i.account === owner && i.repositories.includes(name)) ?? null;
}

/** Checks an app JWT the way GitHub does: RS256 with the app's key, the app id as issuer, at most ten minutes, not expired. */
function verifyAppJwt(token, options) {
  const parts = token.split(".");
  if (parts.length !== 3) return { ok: false, reason: "not a JWT" };
  let header;
  let claims;
  try {
    header = JSON.parse(Buffer.from(parts[0], "base64url").toString("utf8"));
    claims = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8"));
  } catch {
    return { ok: false, reason: "undecodable JWT" };
  }
  if (header.alg !== "RS256") return { ok: false, reason: `alg ${header.alg}` };
  const signed = crypto.verify("sha256", Buffer.from(`${parts[0]}.${parts[1]}`), options.publicKey, Buffer.from(parts[2], "base64url"));
  if (!signed) return { ok: false, reason: "bad signature" };
  const now = Math.floor(Date.now() / 1000);
  if (String(claims.iss) !== String(options.appId)) return { ok: false, reason: `iss ${claims.iss}` };
  if (typeof claims.exp !== "number" || claims.exp <= now) return { ok: false, reason: "expired" };
  if (claims.exp > now + 600) return { ok: false, reason: "exp more than ten minutes ahead" };
  if (typeof claims.iat !== "number" || claims.iat > now + 60) return { ok: false, reason: "iat in the future" };
  return { ok: true };
}

