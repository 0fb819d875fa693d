/** The pure rules of a review lane: who reviews, what a verdict file must hold, when a loop stops converging. */
import { describe, expect, it } from "vitest";
import { chooseReviewer, configuredAgents, findingsMessage, parseReviewVerdict, repeatedFindings } from "../../src/agents/review.ts";
import { PEER_VIEW_EXCLUDES, peerViewExcludes } from "../../src/sandbox/peer-view.ts";

describe("choosing the reviewer", () => {
  const review = { agent: null, model: null, rounds: 2 };
  it("the task's review.agent and model win", () => {
    expect(chooseReviewer({ ...review, agent: "codex", model: "gpt-5" }, { agent: "claude-code", model: "claude-x" }, [])).toEqual({ agent: "codex", model: "gpt-5" });
    expect(chooseReviewer({ ...review, agent: "claude-code" }, { agent: "claude-code", model: "claude-x" }, [])).toEqual({ agent: "claude-code", model: "claude-x" });
  });
  it("a model alone stays with the coder's CLI, whose vendor it names", () => {
    expect(chooseReviewer({ ...review, model: "claude-y" }, { agent: "claude-code", model: "claude-x" }, ["claude-code", "gemini"])).toEqual({ agent: "claude-code", model: "claude-y" });
  });
  it("otherwise another vendor's CLI when one is configured, then another CLI, then the coder's own", () => {
    const all = configuredAgents({ ANTHROPIC_API_KEY: "k", GEMINI_API_KEY: "g" });
    expect(all).toEqual(["claude-code", "opencode", "gemini"]);
    expect(chooseReviewer(review, { agent: "claude-code", model: "claude-x" }, all)).toEqual({ agent: "gemini", model: null });
    expect(chooseReviewer(review, { agent: "claude-code", model: "claude-x" }, ["claude-code", "opencode"])).toEqual({ agent: "opencode", model: null });
    expect(chooseReviewer(review, { agent: "claude-code", model: "claude-x" }, ["claude-code"])).toEqual({ agent: "claude-code", model: "claude-x" });
  });
});

describe("verdict files", () => {
  it("accepts the documented format", () => {
    expect(parseReviewVerdict('{"verdict":"approve","findings":[]}')).toEqual({ verdict: { verdict: "approve", findings: [] } });
    const changes = { verdict: "changes", findings: [{ path: "a.ts", line: 3, body: "x", severity: "minor" }] };
    expect(parseReviewVerdict(JSON.stringify(changes))).toEqual({ verdict: changes });
  });
  it("says what is wrong with anything else", () => {
    expect(parseReviewVerdict(null)).toEqual({ error: expect.stringContaining("no verdict file") });
    expect(parseReviewVerdict("nope")).toEqual({ error: expect.stringContaining("not JSON") });
    expect(parseReviewVerdict('{"verdict":"maybe","findings":[]}')).toEqual({ error: expect.stringContaining("verdict") });
    expect(parseReviewVerdict('{"verdict":"changes","findings":[{"path":"a","body":"b","severity":"huge"}]}')).toEqual({ error: expect.stringContaining("severity") });
    expect(parseReviewVerdict('{"verdict":"changes","findings":[]}')).toEqual({ error: expect.stringContaining("at least one finding") });
  });
});

describe("convergence", () => {
  it("a finding with the same body on the same path is repeated, whatever its line or spacing", () => {
    const before = [{ path: "a.ts", line: 1, body: "Validate the input." }];
    expect(repeatedFindings(before, [{ path: "a.ts", line: 9, body: "Validate  the input. " }])).toHaveLength(1);
    expect(repeatedFindings(before, [{ path: "b.ts", line: 1, body: "Validate the input." }])).toHaveLength(0);
    expect(repeatedFindings(before, [{ path: "a.ts", line: 1, body: "Validate the output." }])).toHaveLength(0);
  });
  it("the coder is given each finding's body verbatim with its path and line", () => {
    const message = findingsMessage(1, [{ path: "a.ts", line: 4, body: "Line one.\nLine two.", severity: "blocker" }, { path: "b.md", body: "Typo." }]);
    expect(message).toContain("1. a.ts:4 [blocker]\nLine one.\nLine two.");
    expect(message).toContain("2. b.md\nTypo.");
  });
});

describe("peer view excludes", () => {
  it("a deployment adds to the list, never removes the secret-file entries", () => {
    const merged = peerViewExcludes(["*.sqlite", " fixtures/ ", ""]);
    for (const entry of PEER_VIEW_EXCLUDES) expect(merged).toContain(entry);
    expect(merged).toEqual(expect.arrayContaining(["*.sqlite", "fixtures/"]));
    expect(merged).not.toContain("");
  });
});
