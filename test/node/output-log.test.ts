/**
 * A hosted process's output is bounded in the host's memory
 * (container/output-log.ts): it goes to disk, the process is paused while
 * the disk is behind, and readers follow the file.
 */
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLocalSandboxHost } from "../../container/local-host.ts";
import { OutputLog, WRITE_BUFFER_BYTES, type OutputItem } from "../../container/output-log.ts";
import { LocalSandboxPort } from "../../src/sandbox/local.ts";

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "sortie-output-test-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Reads a log's NDJSON back as items. */
async function itemsOf(log: OutputLog, skip = 0): Promise<OutputItem[]> {
  let text = "";
  for await (const chunk of log.read(skip, { closed: false })) text += chunk.toString("utf8");
  return text.split("\n").filter(Boolean).map((line) => JSON.parse(line) as OutputItem);
}

const stdoutOf = (items: OutputItem[]) => items.map((item) => (item.kind === "stdout" ? item.data : "")).join("");

/** A process printing `bytes` of "x" as fast as the pipe takes them, captured into a fresh log. */
function printer(bytes: number, maxBytes = 2 ** 40) {
  const log = new OutputLog(path.join(dir, `${randomUUID()}.ndjson`), maxBytes);
  const child = spawn("bash", ["-c", `head -c ${bytes} /dev/zero | tr '\\0' x`], { stdio: ["ignore", "pipe", "pipe"] });
  log.capture(child.stdout, "stdout");
  log.capture(child.stderr, "stderr");
  let mostHeld = 0;
  const sampler = setInterval(() => (mostHeld = Math.max(mostHeld, log.held)), 1);
  child.stdout.on("data", () => (mostHeld = Math.max(mostHeld, log.held)));
  const exited = new Promise<void>((resolve) =>
    child.on("close", (code) => {
      clearInterval(sampler);
      log.push({ kind: "exit", exitCode: code ?? -1 });
      resolve();
    }),
  );
  return { log, exited, mostHeld: () => mostHeld };
}

describe("a process's output log", () => {
  it("holds at most its write buffer (plus a pipe's chunk) in memory however fast the process prints, and loses nothing", async () => {
    const bytes = 64 * 1024 * 1024;
    const { log, exited, mostHeld } = printer(bytes);
    await exited;
    expect(mostHeld()).toBeLessThanOrEqual(WRITE_BUFFER_BYTES + 64 * 1024);
    const items = await itemsOf(log);
    expect(stdoutOf(items).length).toBe(bytes);
    expect(items.at(-1)).toEqual({ kind: "exit", exitCode: 0 });
    expect(fs.statSync(log.file).size).toBeGreaterThan(bytes);
  });

  it("a reader follows the file live and can start at any item", async () => {
    const log = new OutputLog(path.join(dir, `${randomUUID()}.ndjson`), 2 ** 40);
    const reading = itemsOf(log);
    log.push({ kind: "stdout", data: "one\n" });
    await new Promise((resolve) => setTimeout(resolve, 20));
    log.push({ kind: "stderr", data: "two\n" });
    log.push({ kind: "exit", exitCode: 3 });
    expect(await reading).toEqual([{ kind: "stdout", data: "one\n" }, { kind: "stderr", data: "two\n" }, { kind: "exit", exitCode: 3 }]);
    expect(await itemsOf(log, 2)).toEqual([{ kind: "exit", exitCode: 3 }]);
  });

  it("past its disk cap drops the rest, says so once, and still ends with the exit", async () => {
    const { log, exited } = printer(4 * 1024 * 1024, 256 * 1024);
    await exited;
    const items = await itemsOf(log);
    const out = stdoutOf(items);
    expect(out.length).toBeGreaterThan(0);
    expect(out.length).toBeLessThan(512 * 1024);
    expect(items.filter((item) => item.kind === "stderr" && item.data.includes("was dropped"))).toHaveLength(1);
    expect(items.at(-1)).toEqual({ kind: "exit", exitCode: 0 });
  });
});

describe("the local sandbox host with a process that prints without a reader", () => {
  it("keeps its heap flat while 128 MiB go by, and serves all of it afterwards", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const token = `test-${randomUUID()}`;
    const host = await startLocalSandboxHost({ token });
    try {
      const sandbox = await new LocalSandboxPort(host.url, token).open(`t-${randomUUID().slice(0, 8)}`);
      gc();
      const before = process.memoryUsage().heapUsed;
      const bytes = 128 * 1024 * 1024;
      const { processId } = await sandbox.startProcess(`head -c ${bytes} /dev/zero | tr '\\0' x; echo`);
      // Nobody reads while it prints: the host must not keep the output in memory meanwhile.
      const deadline = Date.now() + 60_000;
      for (;;) {
        const listing = await fetch(`${host.url}/v1/sandboxes`, { headers: { authorization: `Bearer ${token}` } });
        const health = (await listing.json()) as { processes: { id: string; done: boolean }[] };
        if (health.processes.find((p) => p.id === processId)?.done) break;
        if (Date.now() > deadline) throw new Error("the printing process did not end");
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      gc();
      expect(process.memoryUsage().heapUsed - before).toBeLessThan(32 * 1024 * 1024);
      let length = 0;
      let exit: number | null = null;
      for await (const output of sandbox.streamProcess(processId)) {
        if (output.kind === "stdout") length += output.data.length;
        if (output.kind === "exit") exit = output.exitCode;
      }
      expect(length).toBe(bytes + 1);
      expect(exit).toBe(0);
      await sandbox.destroy();
    } finally {
      await host.close();
      fs.rmSync(host.root, { recursive: true, force: true });
    }
  });
});
