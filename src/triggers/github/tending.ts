/**
 * The webhook deliveries that concern a pull request Sortie opened and
 * tends: red checks (`check_run`, `check_suite`, `workflow_run` completed with
 * a failing conclusion for the pull request's head), reviews and review
 * comments, `/sortie …` comments on it (`stop`, `retry`, or a request), and
 * its closing. Each becomes a decision of src/agents/tending.ts; anything
 * about another pull request or issue falls through to the ordinary triggers.
 */
import { getAgentByName } from "agents";
import { validate } from "../../api/body.ts";
import { readConfig } from "../../config.ts";
import { commentOnPull, onClaimed, recordDecision, requestFix, stillOurs, stop, watcherName, type TendingOutcome } from "../../agents/tending.ts";
import { FAILING, checkAnnotations, checkConclusionOn, failedRunsOfSuite, mintTendingToken, reviewComments } from "../../publish/github-pulls.ts";
import {
  claimTendingKey,
  findTendedPull,
  findTendedPullByBranch,
  grantAttempt,
  type FailedCheck,
  type ReviewComment,
  type TendedPull,
} from "../../store/pull-requests.ts";
import {
  CheckRunCompleted,
  CheckSuiteCompleted,
  EventEnvelope,
  IssueCommentCreated,
  PullRequestClosed,
  PullRequestSynchronized,
  ReviewCommentCreated,
  ReviewSubmitted,
  WorkflowRunCompleted,
  githubActor,
} from "./payloads.ts";

/** What the webhook answers for a delivery about a tended pull request: a decision, or (as for every trigger) what it ignored. */
export type TendingAnswer = { tending: TendingOutcome["decision"]; reason: string; task?: string } | { ignored: string };

const CHECK_EVENTS = new Set(["check_run", "check_suite", "workflow_run"]);
const REVIEW_STATES = new Set(["changes_requested", "commented"]);
/** `/sortie` then a word or a request, at the start of a comment. */
const COMMAND = /^\s*\/sortie(?:\s+([\s\S]*))?$/;

/**
 * The answer to a delivery about a tended pull request, or null when the
 * delivery is about anything else (the ordinary triggers then read it).
 */
export async function tendingAnswer(env: Cloudflare.Env, event: string, payload: unknown): Promise<TendingAnswer | null> {
  const envelope = EventEnvelope.safeParse(payload);
  if (!envelope.success) return null;
  const action = envelope.data.action;
  if (CHECK_EVENTS.has(event)) return action === "completed" ? onCheckEvent(env, event, payload) : ignored(`${event}.${action} is not one Sortie acts on`);
  if (event === "pull_request_review") return action === "submitted" ? onReviewSubmitted(env, payload) : ignored(`${event}.${action} is not one Sortie acts on`);
  if (event === "pull_request_review_comment") return action === "created" ? onReviewComment(env, payload) : ignored(`${event}.${action} is not one Sortie acts on`);
  if (event === "pull_request" && action === "closed") return onClosed(env, payload);
  if (event === "pull_request" && action === "synchronize") return onSynchronized(env, payload);
  if (event === "issue_comment" && action === "created") return onComment(env, payload);
  return null;
}

// ---- red checks ------------------------------------------------------------

type FailingRun = FailedCheck & { id: number | null };

/** What a check delivery says: where it ran, and its failing run, or the suite whose failing runs are to be read. */
interface CheckReport {
  repo: string;
  headSha: string;
  headBranch: string | null;
  numbers: number[];
  sender: string;
  conclusion: string | null;
  failing: { run: FailingRun } | { suite: number };
}

async function onCheckEvent(env: Cloudflare.Env, event: string, payload: unknown): Promise<TendingAnswer> {
  const report = checkReport(event, payload);
  if (!report.conclusion || !FAILING.has(report.conclusion)) return ignored(`conclusion ${report.conclusion ?? "none"} asks for no fix`);
  const pull = await pullOf(env, report.repo, report.numbers, report.headBranch);
  if (!pull) return ignored("not a pull request Sortie opened");
  if (pull.state !== "tending") return ignored(`Sortie stopped tending ${pull.repo}#${pull.number} (${pull.stopReason})`);
  const ours = await stillOurs(env, pull);
  if ("outcome" in ours) return answer(ours.outcome);
  if (report.headSha !== ours.now.headSha) return ignored(`the checks ran on ${report.headSha.slice(0, 12)}, not the pull request's head ${ours.now.headSha.slice(0, 12)}`);

  const { token } = await mintTendingToken(env, pull.repo);
  const failing: FailingRun[] =
    "run" in report.failing ? [report.failing.run] : (await failedRunsOfSuite(env, token, pull.repo, report.failing.suite)).map((run) => ({ ...run, annotations: [] }));
  if (failing.length === 0) return ignored("no check run of the suite failed");
  const keyOf = (check: FailingRun) => `check:${report.headSha}:${check.name}`;
  const fresh: FailingRun[] = [];
  for (const check of failing) {
    if (await claimTendingKey(env.DB, pull.repo, pull.number, keyOf(check))) fresh.push(check);
  }
  const actor = githubActor(report.sender);
  if (fresh.length === 0) {
    await recordDecision(env, pull, actor, "deduplicated", { trigger: "check", head: report.headSha, checks: failing.map((c) => c.name) });
    return { tending: "deduplicated", reason: `already acted on ${failing.map((c) => c.name).join(", ")} at ${report.headSha.slice(0, 12)}` };
  }

  return onClaimed(env, pull, fresh.map(keyOf), () => fixChecks(env, pull, token, report, fresh, actor));
}

/** Checks not yet acted on: skipped when they fail on the base too, else fixed with their annotations. */
async function fixChecks(env: Cloudflare.Env, pull: TendedPull, token: string, report: CheckReport, fresh: FailingRun[], actor: string): Promise<TendingAnswer> {
  const preExisting: string[] = [];
  const toFix: FailedCheck[] = [];
  for (const check of fresh) {
    const onBase = await checkConclusionOn(env, token, pull.repo, pull.base, check.name);
    if (onBase && FAILING.has(onBase)) {
      preExisting.push(check.name);
      continue;
    }
    const annotations = check.id === null ? [] : await checkAnnotations(env, token, pull.repo, check.id);
    toFix.push({ name: check.name, conclusion: check.conclusion, title: check.title, summary: check.summary, text: check.text, annotations });
  }
  if (preExisting.length > 0) {
    const one = preExisting.length === 1;
    await recordDecision(env, pull, actor, "skipped_pre_existing", { head: report.headSha, checks: preExisting, base: pull.base });
    await commentOnPull(
      env,
      pull,
      `${preExisting.map((name) => `\`${name}\``).join(", ")} also ${one ? "fails" : "fail"} on \`${pull.base}\`, so this pull request did not break ${one ? "it" : "them"}: Sortie is not spending a fix attempt on ${one ? "it" : "them"}.`,
    );
    if (toFix.length === 0) return { tending: "skipped_pre_existing", reason: `${preExisting.join(", ")} also ${one ? "fails" : "fail"} on ${pull.base}` };
  }
  return answer(await requestFix(env, pull, { kind: "check", by: report.sender, headSha: report.headSha, checks: toFix }, actor));
}

/** The delivery's report: a `check_run` names its run; a `check_suite` or `workflow_run` names the suite to read. */
function checkReport(event: string, payload: unknown): CheckReport {
  if (event === "check_run") {
    const { check_run: run, repository, sender } = validate(CheckRunCompleted, payload, "github_payload");
    const output = run.output ?? {};
    return {
      repo: repository.full_name,
      headSha: run.head_sha,
      headBranch: run.check_suite?.head_branch ?? null,
      numbers: run.pull_requests.map((p) => p.number),
      sender: sender.login,
      conclusion: run.conclusion,
      failing: { run: { id: run.id, name: run.name, conclusion: run.conclusion ?? "", title: output.title ?? "", summary: output.summary ?? "", text: output.text ?? "", annotations: [] } },
    };
  }
  if (event === "check_suite") {
    const delivery = validate(CheckSuiteCompleted, payload, "github_payload");
    return suiteReport(delivery.check_suite.id, delivery.check_suite, delivery);
  }
  const delivery = validate(WorkflowRunCompleted, payload, "github_payload");
  return suiteReport(delivery.workflow_run.check_suite_id, delivery.workflow_run, delivery);
}

/** A check suite's (or workflow run's, whose jobs are its suite's runs) report: its failing runs are read later. */
function suiteReport(
  suite: number,
  ran: { head_sha: string; head_branch?: string | null; conclusion: string | null; pull_requests: { number: number }[] },
  delivery: { repository: { full_name: string }; sender: { login: string } },
): CheckReport {
  return {
    repo: delivery.repository.full_name,
    headSha: ran.head_sha,
    headBranch: ran.head_branch ?? null,
    numbers: ran.pull_requests.map((p) => p.number),
    sender: delivery.sender.login,
    conclusion: ran.conclusion,
    failing: { suite },
  };
}

// ---- reviews ----------------------------------------------------------------

async function onReviewSubmitted(env: Cloudflare.Env, payload: unknown): Promise<TendingAnswer> {
  const { review, pull_request: pr, repository } = validate(ReviewSubmitted, payload, "github_payload");
  if (!REVIEW_STATES.has(review.state.toLowerCase())) return ignored(`a review that ${review.state.toLowerCase()} asks for no change`);
  return onReview(env, repository.full_name, pr.number, { id: review.id, body: review.body ?? "", login: review.user.login, association: review.author_association });
}

async function onReviewComment(env: Cloudflare.Env, payload: unknown): Promise<TendingAnswer> {
  const { comment, pull_request: pr, repository } = validate(ReviewCommentCreated, payload, "github_payload");
  // A review's comments come with its own `pull_request_review` delivery too: both are the same review, handled once.
  return onReview(env, repository.full_name, pr.number, { id: comment.pull_request_review_id ?? null, commentId: comment.id, body: "", login: comment.user.login, association: comment.author_association });
}

async function onReview(
  env: Cloudflare.Env,
  repo: string,
  number: number,
  review: { id: number | null; commentId?: number; body: string; login: string; association: string },
): Promise<TendingAnswer> {
  const pull = await findTendedPull(env.DB, repo, number);
  if (!pull) return ignored("not a pull request Sortie opened");
  // Apps review too, Sortie's own reviewer among them (review lanes post their findings): a fix for those would chase itself.
  if (review.login.endsWith("[bot]")) return ignored(`${review.login} is an app; its reviews start nothing`);
  const actor = githubActor(review.login);
  const gate = await gates(env, pull, actor, review.association);
  if (gate) return gate;
  const key = review.id !== null ? `review:${review.id}` : `comment:${review.commentId}`;
  if (!(await claimTendingKey(env.DB, pull.repo, pull.number, key))) {
    await recordDecision(env, pull, actor, "deduplicated", { trigger: "review", key });
    return { tending: "deduplicated", reason: `already acted on ${key}` };
  }
  return onClaimed(env, pull, [key], async () => {
    const { token } = await mintTendingToken(env, pull.repo);
    const rows = review.id !== null ? await reviewComments(env, token, pull.repo, pull.number, review.id) : [];
    const comments: ReviewComment[] = rows.map((row) => ({ id: row.inReplyTo ?? row.id, path: row.path, line: row.line, diffHunk: row.diffHunk, body: row.body }));
    if (!review.body.trim() && comments.length === 0) return ignored("the review says nothing to change");
    return answer(await requestFix(env, pull, { kind: "review", by: review.login, reviewId: review.id ?? 0, body: review.body, comments }, actor));
  });
}

// ---- comments and closing -----------------------------------------------------

async function onComment(env: Cloudflare.Env, payload: unknown): Promise<TendingAnswer | null> {
  const parsed = IssueCommentCreated.safeParse(payload);
  if (!parsed.success || !parsed.data.issue.pull_request) return null;
  const { comment, issue, repository } = parsed.data;
  const command = COMMAND.exec(comment.body);
  if (!command) return null;
  const pull = await findTendedPull(env.DB, repository.full_name, issue.number);
  if (!pull) return null;
  const actor = githubActor(comment.user.login);
  const words = (command[1] ?? "").trim();
  const max = readConfig(env).prFixMaxAttempts;
  if (!trusted(env, comment.author_association)) return outsider(env, pull, actor, comment.author_association);
  if (/^stop\b/i.test(words)) {
    return answer(await stop(env, pull, "stop_command", actor, `Sortie has stopped tending this pull request, as ${comment.user.login} asked.`));
  }
  if (/^retry\b/i.test(words)) {
    if (!(await grantAttempt(env.DB, pull.repo, pull.number, max))) return ignored(`Sortie stopped tending ${pull.repo}#${pull.number} (${pull.stopReason})`);
    await recordDecision(env, pull, actor, "retry_granted", {});
    const watcher = await getAgentByName(env.PullRequestAgent, watcherName(pull.repo, pull.number));
    await watcher.watch(pull.repo, pull.number);
    await commentOnPull(env, pull, `${comment.user.login} granted Sortie one more fix attempt on this pull request.`);
    return { tending: "retry_granted", reason: "one more fix attempt" };
  }
  if (!words) return ignored("`/sortie` names no request");
  // A pull request Sortie no longer tends is an ordinary one: a request there starts an ordinary task.
  if (pull.state !== "tending") return null;
  const gate = await gates(env, pull, actor, comment.author_association);
  if (gate) return gate;
  const keys = comment.id !== undefined ? [`comment:${comment.id}`] : [];
  if (keys[0] && !(await claimTendingKey(env.DB, pull.repo, pull.number, keys[0]))) {
    await recordDecision(env, pull, actor, "deduplicated", { trigger: "command", comment: comment.id });
    return { tending: "deduplicated", reason: `already acted on comment ${comment.id}` };
  }
  return onClaimed(env, pull, keys, async () => answer(await requestFix(env, pull, { kind: "command", by: comment.user.login, request: words }, actor)));
}

async function onClosed(env: Cloudflare.Env, payload: unknown): Promise<TendingAnswer | null> {
  const { pull_request: pr, repository } = validate(PullRequestClosed, payload, "github_payload");
  const pull = await findTendedPull(env.DB, repository.full_name, pr.number);
  if (!pull) return null;
  return answer(await stop(env, pull, pr.merged ? "merged" : "closed", "sortie"));
}

/** The branch moved: to Sortie's own commit (nothing to do), or a person's, which ends tending at once. */
async function onSynchronized(env: Cloudflare.Env, payload: unknown): Promise<TendingAnswer | null> {
  const { after, pull_request: pr, repository } = validate(PullRequestSynchronized, payload, "github_payload");
  const pull = await findTendedPull(env.DB, repository.full_name, pr.number);
  if (!pull) return null;
  if (pull.state !== "tending") return ignored(`Sortie stopped tending ${pull.repo}#${pull.number} (${pull.stopReason})`);
  // While a fix runs its own push moves the head before it is recorded; a person's push then is caught when the fix pushes.
  if (after === pull.headSha || pull.fixTaskId) return ignored("the head is Sortie's");
  const ours = await stillOurs(env, pull);
  return "outcome" in ours ? answer(ours.outcome) : ignored("the head is Sortie's");
}

// ---- shared gates -------------------------------------------------------------

/** A trusted author, a pull request still tended and still Sortie's: null lets the trigger through. */
async function gates(env: Cloudflare.Env, pull: TendedPull, actor: string, association: string): Promise<TendingAnswer | null> {
  if (!trusted(env, association)) return outsider(env, pull, actor, association);
  if (pull.state !== "tending") return ignored(`Sortie stopped tending ${pull.repo}#${pull.number} (${pull.stopReason})`);
  const ours = await stillOurs(env, pull);
  return "outcome" in ours ? answer(ours.outcome) : null;
}

function trusted(env: Cloudflare.Env, association: string): boolean {
  return readConfig(env).githubTriggerAssociations.includes(association.toUpperCase());
}

async function outsider(env: Cloudflare.Env, pull: TendedPull, actor: string, association: string): Promise<TendingAnswer> {
  await recordDecision(env, pull, actor, "outsider_ignored", { association });
  return { tending: "outsider_ignored", reason: `${actor} is ${association.toUpperCase()} on the repository; only ${readConfig(env).githubTriggerAssociations.join(", ")} may ask Sortie for changes` };
}

async function pullOf(env: Cloudflare.Env, repo: string, numbers: number[], branch: string | null): Promise<TendedPull | null> {
  for (const number of numbers) {
    const pull = await findTendedPull(env.DB, repo, number);
    if (pull) return pull;
  }
  return branch ? findTendedPullByBranch(env.DB, repo, branch) : null;
}

function answer(outcome: TendingOutcome): TendingAnswer {
  return { tending: outcome.decision, reason: outcome.reason, ...(outcome.task ? { task: outcome.task } : {}) };
}

function ignored(reason: string): TendingAnswer {
  return { ignored: reason };
}
