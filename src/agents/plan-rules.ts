/**
 * The rules a plan obeys, checked the same way for the planner's file and a
 * person's edit: the schema, dependencies that exist and form no cycle, the
 * subtask limit, and ownership (two subtasks that may run side by side never
 * own the same path). The glob helpers here are also what enforces a
 * worker's `owns` on its diff.
 */
import { messageOf } from "../errors.ts";
import { PlanFile, type PlanSubtask } from "../plan-schema.ts";

/** A plan that passed every rule, or the problems in words the planner (or a person) can act on. */
export type PlanCheck = { plan: PlanFile } | { errors: string[] };

/** Parses the text of a plan file and checks it. */
export function checkPlanText(text: string | null, maxSubtasks: number): PlanCheck {
  if (text === null || text.trim() === "") return { errors: ["no plan file was written at $SORTIE_PLAN_FILE"] };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return { errors: [`the plan file is not JSON: ${messageOf(error)}`] };
  }
  return checkPlan(json, maxSubtasks);
}

/** Checks a plan's value against the schema and the rules. */
export function checkPlan(value: unknown, maxSubtasks: number): PlanCheck {
  const parsed = PlanFile.safeParse(value);
  if (!parsed.success) return { errors: parsed.error.issues.map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`) };
  const plan = parsed.data;
  const errors: string[] = [];
  if (plan.subtasks.length > maxSubtasks) errors.push(`the plan has ${plan.subtasks.length} subtasks; at most ${maxSubtasks} are allowed`);
  const keys = new Set<string>();
  for (const subtask of plan.subtasks) {
    if (keys.has(subtask.key)) errors.push(`subtask key "${subtask.key}" is used twice`);
    keys.add(subtask.key);
  }
  for (const subtask of plan.subtasks) {
    for (const dependency of subtask.dependsOn) {
      if (!keys.has(dependency)) errors.push(`subtask "${subtask.key}" depends on "${dependency}", which is not in the plan`);
      if (dependency === subtask.key) errors.push(`subtask "${subtask.key}" depends on itself`);
    }
  }
  if (errors.length > 0) return { errors };
  const cycle = findCycle(plan.subtasks);
  if (cycle) return { errors: [`the dependencies form a cycle: ${cycle.join(" -> ")} (each depends on the next)`] };
  const order = dependencyOrder(plan.subtasks);
  const reach = reachability(plan.subtasks);
  for (let i = 0; i < order.length; i++) {
    for (let j = i + 1; j < order.length; j++) {
      const a = order[i]!;
      const b = order[j]!;
      if (reach.get(a.key)!.has(b.key) || reach.get(b.key)!.has(a.key)) continue;
      const shared = overlappingGlobs(a.owns, b.owns);
      if (shared) errors.push(`subtasks "${a.key}" and "${b.key}" may run side by side but both own ${shared[0] === shared[1] ? `"${shared[0]}"` : `"${shared[0]}" and "${shared[1]}"`}; give the path to one of them or make one depend on the other`);
    }
  }
  return errors.length > 0 ? { errors } : { plan };
}

/** The keys of a dependency cycle, each depending on the next, the first repeated at the end; null when there is none. */
export function findCycle(subtasks: Pick<PlanSubtask, "key" | "dependsOn">[]): string[] | null {
  const byKey = new Map(subtasks.map((s) => [s.key, s]));
  const state = new Map<string, "visiting" | "done">();
  const path: string[] = [];
  const visit = (key: string): string[] | null => {
    if (state.get(key) === "done") return null;
    if (state.get(key) === "visiting") return [...path.slice(path.indexOf(key)), key];
    state.set(key, "visiting");
    path.push(key);
    for (const dependency of byKey.get(key)?.dependsOn ?? []) {
      const found = visit(dependency);
      if (found) return found;
    }
    path.pop();
    state.set(key, "done");
    return null;
  };
  for (const subtask of subtasks) {
    const found = visit(subtask.key);
    if (found) return found;
  }
  return null;
}

/** The subtasks with every one after all it depends on (plan order kept among equals). Assumes no cycle. */
export function dependencyOrder<T extends Pick<PlanSubtask, "key" | "dependsOn">>(subtasks: T[]): T[] {
  const placed = new Set<string>();
  const order: T[] = [];
  while (order.length < subtasks.length) {
    const next = subtasks.find((s) => !placed.has(s.key) && s.dependsOn.every((d) => placed.has(d)));
    if (!next) throw new Error("the plan's dependencies form a cycle");
    placed.add(next.key);
    order.push(next);
  }
  return order;
}

/** Every subtask's transitive dependencies. */
export function reachability(subtasks: Pick<PlanSubtask, "key" | "dependsOn">[]): Map<string, Set<string>> {
  const byKey = new Map(subtasks.map((s) => [s.key, s]));
  const reach = new Map<string, Set<string>>();
  const of = (key: string): Set<string> => {
    const known = reach.get(key);
    if (known) return known;
    const all = new Set<string>();
    reach.set(key, all);
    for (const dependency of byKey.get(key)?.dependsOn ?? []) {
      all.add(dependency);
      for (const further of of(dependency)) all.add(further);
    }
    return all;
  };
  for (const subtask of subtasks) of(subtask.key);
  return reach;
}

/** A glob as a regular expression: `**` any path (slashes too), `*` and `?` within one segment; a trailing `/` owns the directory. */
export function globToRegExp(glob: string): RegExp {
  const source = glob.endsWith("/") ? `${glob}**` : glob;
  let out = "";
  for (let i = 0; i < source.length; i++) {
    const char = source[i]!;
    if (char === "*" && source[i + 1] === "*") {
      // `dir/**` owns the directory's whole tree; `**/x` an x anywhere.
      if (source[i + 2] === "/") {
        out += "(?:.*/)?";
        i += 2;
      } else {
        out += ".*";
        i += 1;
      }
    } else if (char === "*") out += "[^/]*";
    else if (char === "?") out += "[^/]";
    else out += char.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${out}$`);
}

/** Whether `path` is owned by one of `globs`. */
export function ownedBy(path: string, globs: readonly string[]): boolean {
  return globs.some((glob) => globToRegExp(glob).test(path));
}

/** The part of a glob before its first wildcard. */
function literalPrefix(glob: string): string {
  const wild = glob.search(/[*?]/);
  return wild === -1 ? glob : glob.slice(0, wild);
}

/**
 * A pair of globs, one from each list, that may match the same path, or
 * null. Conservative: two globs overlap when one's literal prefix starts the
 * other's, unless both are exact paths, or one is exact and the other does
 * not match it.
 */
export function overlappingGlobs(a: readonly string[], b: readonly string[]): [string, string] | null {
  for (const x of a) {
    for (const y of b) {
      const px = literalPrefix(x);
      const py = literalPrefix(y);
      const exactX = px === x && !x.endsWith("/");
      const exactY = py === y && !y.endsWith("/");
      if (exactX && exactY) {
        if (x === y) return [x, y];
        continue;
      }
      if (exactX) {
        if (globToRegExp(y).test(x)) return [x, y];
        continue;
      }
      if (exactY) {
        if (globToRegExp(x).test(y)) return [x, y];
        continue;
      }
      if (px.startsWith(py) || py.startsWith(px)) return [x, y];
    }
  }
  return null;
}

/** The paths a `git diff` patch touches (both sides of a rename). */
export function pathsOfPatch(patch: string): string[] {
  const paths = new Set<string>();
  for (const line of patch.split("\n")) {
    const header = /^diff --git a\/(.*) b\/(.*)$/.exec(line);
    if (header) {
      paths.add(header[1]!);
      paths.add(header[2]!);
      continue;
    }
    const renamed = /^rename (?:from|to) (.*)$/.exec(line);
    if (renamed) paths.add(renamed[1]!);
  }
  return [...paths];
}
