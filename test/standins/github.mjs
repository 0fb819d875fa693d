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

  function can(grant, personal, permission) {
    return personal || grant?.permissions?.[permission] === "write";
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

