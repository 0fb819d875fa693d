/**
 * A command in the walls ends as a child process does: its "close" comes once its output has been read to the end,
 * so a reader that paused (the host's output file, behind on the disk) loses none of it.
 */
import { describe, expect, it } from "vitest";
import { WalledEnvironment, WalledProcess } from "../../container/wall-env.ts";

const environment = {} as WalledEnvironment;

describe("a command in the walls", () => {
  it("closes only once a paused reader has taken all of its output", async () => {
    const proc = new WalledProcess(environment, "c1");
    const read: string[] = [];
    proc.stdout.on("data", (chunk: Buffer) => read.push(chunk.toString()));
    proc.stderr.on("data", () => undefined);
    proc.stdout.pause();
    proc.stdout.write("first ");
    proc.stdout.write("last\n");
    const closed: (number | null)[] = [];
    proc.on("close", (code) => closed.push(code));
    proc.end(0, null);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(closed).toEqual([]);
    proc.stdout.resume();
    await new Promise((resolve) => proc.once("close", resolve));
    expect(read.join("")).toBe("first last\n");
    expect(closed).toEqual([0]);
  });

  it("closes when no one reads its output", async () => {
    const proc = new WalledProcess(environment, "c2");
    proc.stderr.write("unread\n");
    const closed = new Promise((resolve) => proc.once("close", (code, signal) => resolve([code, signal])));
    proc.end(null, "SIGKILL");
    expect(await closed).toEqual([null, "SIGKILL"]);
  });
});
