/** The `/sortie` command language: what each line a user types becomes, and what is refused with a reason. */
import { describe, expect, it } from "vitest";
import { decodeSlackEscapes, parseSlackCommand, type ParsedSlackCommand } from "../../src/triggers/slack/grammar.ts";

function command(text: string) {
  const parsed = parseSlackCommand(text);
  if (!parsed.ok) throw new Error(`expected ${JSON.stringify(text)} to parse, got: ${parsed.error}`);
  return parsed.command;
}

function error(text: string): string {
  const parsed: ParsedSlackCommand = parseSlackCommand(text);
  if (parsed.ok) throw new Error(`expected ${JSON.stringify(text)} to be refused, got ${JSON.stringify(parsed.command)}`);
  return parsed.error;
}

describe("starting a task", () => {
  it("reads the repository and the prompt, with one run and no output by default", () => {
    expect(command("acme/widgets add a NOTES.md")).toEqual({ kind: "run", repo: "acme/widgets", branch: null, runs: 1, output: null, prompt: "add a NOTES.md" });
  });

  it("reads a branch after @, which may itself hold slashes", () => {
    expect(command("acme/widgets@feature/login-form fix the form")).toMatchObject({ repo: "acme/widgets", branch: "feature/login-form", prompt: "fix the form" });
  });

  it("reads xN as the number of parallel runs, 1 to 8", () => {
    expect(command("acme/widgets x3 try three ways")).toMatchObject({ runs: 3, prompt: "try three ways" });
    expect(command("acme/widgets X8 go")).toMatchObject({ runs: 8 });
    expect(command("acme/widgets x1 go")).toMatchObject({ runs: 1 });
    expect(error("acme/widgets x0 go")).toContain("runs must be 1 to 8");
    expect(error("acme/widgets x9 go")).toContain("runs must be 1 to 8");
    expect(error("acme/widgets x2 x3 go")).toContain("once");
  });

  it("maps --pr and --draft to the output, in any order with xN", () => {
    expect(command("acme/widgets x2 --pr ship it")).toMatchObject({ runs: 2, output: "pr", prompt: "ship it" });
    expect(command("acme/widgets --draft x2 ship it")).toMatchObject({ runs: 2, output: "draft-pr", prompt: "ship it" });
    expect(command("acme/widgets --PR ship it")).toMatchObject({ output: "pr" });
    expect(error("acme/widgets --pr --draft ship it")).toContain("one of");
  });

  it("reads --agent=NAME and --isolation=LEVEL, and names the choices when one is wrong", () => {
    expect(command("acme/widgets --agent=codex x2 --isolation=workspace fix it")).toMatchObject({ runs: 2, agent: "codex", isolation: "workspace", prompt: "fix it" });
    expect(command("acme/widgets --isolation=auto explain the build")).toMatchObject({ isolation: "auto", prompt: "explain the build" });
    expect(error("acme/widgets --agent=aider go")).toContain("`claude-code`, `codex`, `opencode`, `gemini`");
    expect(error("acme/widgets --isolation=vm go")).toContain("`analysis`, `workspace`, `sandbox`, `auto`");
    expect(error("acme/widgets --agent=codex --agent=gemini go")).toContain("once");
  });

  it("reads --review and --review=ROUNDS (1 to 5)", () => {
    expect(command("acme/widgets --review fix it")).toMatchObject({ review: 2, prompt: "fix it" });
    expect(command("acme/widgets x2 --review=4 fix it")).toMatchObject({ runs: 2, review: 4, prompt: "fix it" });
    expect(command("acme/widgets fix --review")).toMatchObject({ prompt: "fix --review" });
    expect(error("acme/widgets --review=6 go")).toContain("1 to 5");
    expect(error("acme/widgets --review=x go")).toContain("1 to 5");
    expect(error("acme/widgets --review --review=3 go")).toContain("once");
  });

  it("refuses an unknown option rather than taking it as the prompt", () => {
    expect(error("acme/widgets --dratf ship it")).toContain("unknown option `--dratf`");
  });

  it("takes everything after -- as the prompt, option-like words included", () => {
    expect(command("acme/widgets -- x3 --pr are words here")).toMatchObject({ runs: 1, output: null, prompt: "x3 --pr are words here" });
    expect(command("acme/widgets x2 -- --help is broken")).toMatchObject({ runs: 2, prompt: "--help is broken" });
  });

  it("keeps the prompt as typed: inner spacing, newlines, quotes and shell characters", () => {
    const prompt = 'fix "the bug"  in $(pwd)\n\nthen `run` tests; echo \'done\'';
    expect(command(`acme/widgets  ${prompt}  `)).toMatchObject({ prompt });
  });

  it("decodes the &amp; &lt; &gt; Slack puts in command text", () => {
    expect(command("acme/widgets make a &amp;&amp; b print &lt;div&gt;")).toMatchObject({ prompt: "make a && b print <div>" });
    expect(decodeSlackEscapes("&amp;lt;")).toBe("&lt;");
  });

  it("takes a word like xray or an x without digits as the start of the prompt", () => {
    expect(command("acme/widgets xray the logs")).toMatchObject({ runs: 1, prompt: "xray the logs" });
  });

  it("refuses a missing prompt, a missing branch and a first word that is neither command nor repository", () => {
    expect(error("acme/widgets")).toContain("Put the prompt after the repository");
    expect(error("acme/widgets x2 --pr")).toContain("Put the prompt after the repository");
    expect(error("acme/widgets@ do it")).toContain("no branch");
    expect(error("widgets do it")).toContain("is not a command or a repository");
    expect(error("acme/widgets/extra do it")).toContain("is not a command or a repository");
  });
});

describe("status, cancel and help", () => {
  it("reads status and cancel with one task id, case-insensitively", () => {
    expect(command("status 0mwt5ijuzb1kbdaxvzl")).toEqual({ kind: "status", id: "0mwt5ijuzb1kbdaxvzl" });
    expect(command("Cancel 0mwt5ijuzb1kbdaxvzl")).toEqual({ kind: "cancel", id: "0mwt5ijuzb1kbdaxvzl" });
  });

  it("refuses status or cancel without an id, or with more than one", () => {
    expect(error("status")).toContain("needs a task id");
    expect(error("cancel a b")).toContain("one task id");
  });

  it("answers help, and an empty command, with help", () => {
    expect(command("help")).toEqual({ kind: "help" });
    expect(command("")).toEqual({ kind: "help" });
    expect(command("   ")).toEqual({ kind: "help" });
    expect(error("help me")).toContain("takes nothing");
  });
});

describe("--preview", () => {
  it("reads a quoted command, spaces and all, Slack's curly quotes too, and an optional port", () => {
    expect(command('acme/widgets x2 --preview="npm run dev -- --host" --port=5173 build the page')).toMatchObject({ runs: 2, preview: { command: "npm run dev -- --host", port: 5173 }, prompt: "build the page" });
    expect(command("acme/widgets --preview=\u201cnode serve.mjs\u201d build it")).toMatchObject({ preview: { command: "node serve.mjs" }, prompt: "build it" });
    expect(command("acme/widgets --preview=make build it")).toMatchObject({ preview: { command: "make" }, prompt: "build it" });
  });

  it("refuses an unclosed quote, an empty command, a port out of range, and a port without a preview", () => {
    expect(error('acme/widgets --preview="npm run dev build it')).toContain("needs a command");
    expect(error('acme/widgets --preview="" build it')).toContain("needs a command");
    expect(error('acme/widgets --preview="npm start" --port=80 go')).toContain("1024 to 65535");
    expect(error("acme/widgets --port=8080 go")).toContain("goes with `--preview`");
  });
});

describe("starting a plan", () => {
  it("reads `plan owner/repo[@branch] <spec>`, keeping the spec's lines", () => {
    expect(command("plan acme/widgets split the api\nand the docs")).toEqual({ kind: "plan", repo: "acme/widgets", branch: null, spec: "split the api\nand the docs" });
    expect(command("plan acme/widgets@release/2 do it")).toEqual({ kind: "plan", repo: "acme/widgets", branch: "release/2", spec: "do it" });
  });

  it("refuses a plan without a repository or a spec, naming what is missing", () => {
    expect(error("plan")).toMatch(/needs a repository and a spec/);
    expect(error("plan widgets do it")).toMatch(/needs a repository and a spec/);
    expect(error("plan acme/widgets")).toMatch(/Put the spec after the repository/);
    expect(error("plan acme/widgets@ x")).toMatch(/names no branch/);
  });
});
