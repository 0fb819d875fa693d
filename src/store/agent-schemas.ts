/**
 * The SQLite schemas of the task and plan agents (their Durable Object
 * storage), migrated once when an instance is constructed
 * (durable-schema.ts). Step 1 is each table as the agents made them on first
 * use before they had a schema, so an instance from then takes it as it
 * stands.
 */
import { DIFF_CHUNKS_TABLE } from "./diff-store.ts";
import type { SchemaStep } from "./durable-schema.ts";
import { EVENTS_TABLE } from "./event-log.ts";
import { PLAN_PATCHES_TABLE } from "./plan-patches.ts";
import { SCREENSHOTS_TABLE } from "./screenshot-store.ts";

export const TASK_AGENT_SCHEMA: readonly SchemaStep[] = [
  (sql) => {
    for (const table of [EVENTS_TABLE, DIFF_CHUNKS_TABLE, SCREENSHOTS_TABLE]) sql.exec(table);
  },
];

export const PLAN_AGENT_SCHEMA: readonly SchemaStep[] = [
  (sql) => {
    for (const table of [EVENTS_TABLE, DIFF_CHUNKS_TABLE, PLAN_PATCHES_TABLE]) sql.exec(table);
  },
];
