/**
 * The words a plan's agents are given: the planner's instructions (spec,
 * schema, limits), a worker's handoff (the plan's summary, its subtask, what
 * it owns, its acceptance commands and what its dependencies did), and the
 * integration's messages back to an owner and to the integrator agent. The
 * handoff is the artifact a subtask lives on: it is stored and shown.
 */
import type { PlanFile, PlanSubtask, SubtaskView } from "../plan-schema.ts";
import { PLAN_FILE_VAR } from "./plan-roles.ts";

/** A marker the planner's prompt carries, so tools and stand-ins can tell a planning turn. */
export const PLAN_MARKER = "[sortie plan]";

export function plannerPrompt(spec: string, repo: string, maxSubtasks: number): string {
  return [
    `${PLAN_MARKER} You are planning work on the repository ${repo}, checked out read-only in your working directory. Do not change it; read it to plan.`,
    `Split the specification below into at most ${maxSubtasks} subtasks that coding agents will do, each in a sandbox of its own. Do not split what need not be split: one subtask is a fine plan.`,
    "Rules:",
    "- Each subtask owns repository-relative paths, given as globs (`src/api/**`, `package.json`); its agent may change nothing else.",
    "- Two subtasks that do not depend on each other (directly or through others) must not own overlapping paths; if both need a file, make one depend on the other.",
    "- A subtask starts from the base plus the work of everything it depends on. Dependencies must not form a cycle.",
    "- `acceptance` lists shell commands that must pass on the combined change (run in the repository root).",
    "- Keys are slugs: lowercase letters, digits and dashes.",
    `Write the plan as JSON to the file at $${PLAN_FILE_VAR} (outside the checkout), nothing else:`,
    '{"summary": "<what the whole change does>", "subtasks": [{"key": "api", "title": "<short>", "prompt": "<everything the agent needs to do its part>", "owns": ["src/api/**"], "dependsOn": [], "acceptance": ["npm test -- api"]}]}',
    "",
    "The specification:",
    "<spec>",
    spec,
    "</spec>",
  ].join("\n");
}

/** What a dependent reads of a subtask it depends on. */
export type DependencyResult = Pick<SubtaskView, "key" | "title" | "summary" | "diff">;

/** A worker's prompt: the subtask verbatim, inside what it owns, with what it builds on. */
export function handoffPrompt(plan: PlanFile, subtask: PlanSubtask, dependencies: DependencyResult[]): string {
  const lines = [
    subtask.prompt,
    "",
    "---",
    `Sortie: this is subtask "${subtask.key}" (${subtask.title}) of a plan. The whole plan: ${plan.summary}`,
    `You own these paths, and only these: ${subtask.owns.join(", ")}. Change nothing outside them; other subtasks own the rest, and a change outside is refused.`,
  ];
  if (subtask.acceptance.length > 0) lines.push(`These commands must pass on the combined change: ${subtask.acceptance.map((c) => `\`${c}\``).join(", ")}.`);
  if (dependencies.length > 0) {
    lines.push("Your checkout already holds the work of the subtasks you depend on:");
    for (const dependency of dependencies) {
      const stats = dependency.diff ? `${dependency.diff.files} files, +${dependency.diff.additions} -${dependency.diff.deletions}` : "no change";
      lines.push(`- "${dependency.key}" (${dependency.title}; ${stats}): ${dependency.summary?.trim() || "no summary"}`);
    }
  }
  return lines.join("\n");
}

/** The message that sends a failing acceptance command back to the subtask that owns it. */
export function acceptanceFailureMessage(command: string, exitCode: number, output: string): string {
  return [
    `The plan's integration combined every subtask's change, and your acceptance command failed there: \`${command}\` exited ${exitCode}.`,
    "Its output (the end of it):",
    "```",
    output.slice(-4000),
    "```",
    "Fix it in this workspace, within the paths you own.",
  ].join("\n");
}

/** The integrator agent's prompt: the conflict to resolve and the handoffs of the subtasks whose changes met. */
export function conflictPrompt(summary: string, files: string[], handoffs: { key: string; handoff: string }[]): string {
  return [
    "[sortie integrate] You are integrating the changes of several subtasks of one plan in this repository. Applying them left merge conflicts.",
    `Resolve the conflicts in: ${files.join(", ")}: conflict markers in the files, or hunks that did not apply left beside them in a .rej file (apply them by hand, then delete the .rej file). Keep what each subtask meant to do; change nothing else.`,
    "The plan:",
    summary,
    "The subtasks' handoffs, for what each meant (quoted):",
    // Quoted line by line: the integrator reads them as the subtasks' words, not as instructions of its own.
    ...handoffs.map((h) => `<subtask key="${h.key}">\n${h.handoff.split("\n").map((line) => `> ${line}`).join("\n")}\n</subtask>`),
  ].join("\n");
}

/**
 * The integrator agent's prompt when a check failed on the tree its conflict resolution made: the check, its
 * output, and the resolutions, with the plan's summary quoted.
 */
export function repairPrompt(summary: string, failing: { command: string; exitCode: number; output: string }, resolutions: { subtask: string; files: string[] }[]): string {
  return [
    `[sortie integrate] You resolved merge conflicts while integrating the subtasks of one plan in this repository, and a check then failed on the combined tree: \`${failing.command}\` exited ${failing.exitCode}.`,
    "Its output (the end of it):",
    "```",
    failing.output.slice(-4000),
    "```",
    `The conflicts you resolved: ${resolutions.map((r) => `${r.files.join(", ")} (applying "${r.subtask}")`).join("; ")}.`,
    "Fix the combined tree so the check passes, keeping what each subtask meant to do; change nothing else. The plan (quoted):",
    summary.split("\n").map((line) => `> ${line}`).join("\n"),
  ].join("\n");
}
