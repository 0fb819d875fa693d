/** How a task's isolation level is chosen: declared, defaulted, or inferred from the prompt under `auto`. */
import { describe, expect, it } from "vitest";
import { chooseIsolation } from "../../src/agents/isolation.ts";

describe("chooseIsolation", () => {
  it("takes a declared level as it is, and defaults to a dedicated sandbox", () => {
    expect(chooseIsolation("workspace", "Review the code")).toEqual({ level: "workspace", inferred: false, reason: "declared by the task" });
    expect(chooseIsolation(undefined, "Review the code")).toMatchObject({ level: "sandbox", inferred: false });
  });

  it.each([
    ["Review src/registry.ts for race conditions", "analysis"],
    ["Explain how the widget registry works", "analysis"],
    ["Why does the build take four minutes?", "analysis"],
    ["Summarize the open TODOs in this repo", "analysis"],
    ["Fix the off-by-one in paginate()", "workspace"],
    ["Rename Widget to Gadget everywhere", "workspace"],
    ["Review the parser and fix what you find", "workspace"],
    ["Add the lodash package and use it for deep merges", "sandbox"],
    ["npm install zod and validate the config", "sandbox"],
    ["Upgrade every dependency to its latest version", "sandbox"],
    ["Fetch the schema from the API and regenerate types", "sandbox"],
    ["Hmm", "sandbox"],
  ])("infers %j as %s", (prompt, level) => {
    const chosen = chooseIsolation("auto", prompt);
    expect(chosen.level).toBe(level);
    expect(chosen.inferred).toBe(true);
    expect(chosen.reason).not.toBe("");
  });
});
