/** The zod schemas of the task WebSocket's frames (the format: src/stream-protocol.ts). */
import { z } from "zod";
import { TaskEvent } from "./events.ts";
import { TaskState } from "./schema.ts";
import { STREAM_VERSION } from "./stream-protocol.ts";

export const EventsFrame = z.object({ v: z.literal(STREAM_VERSION), type: z.literal("events"), events: z.array(TaskEvent) });
export type EventsFrame = z.infer<typeof EventsFrame>;

/** `seq`: the state is the fold of every event up to it (absent from servers before it was sent). */
export const StateFrame = z.object({ type: z.literal("cf_agent_state"), seq: z.int().nonnegative().optional(), state: TaskState });

export const AckFrame = z.object({ type: z.literal("ack"), seq: z.int().nonnegative() });
