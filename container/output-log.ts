/**
 * One hosted process's output, kept on disk instead of in the host's memory:
 * every item (a chunk of stdout or stderr, then the exit) is appended to a
 * file as the NDJSON line the output endpoint serves, and readers follow the
 * file from the start. The host holds at most WRITE_BUFFER_BYTES of a
 * process's output in memory: past that the process's pipes are paused until
 * the disk has caught up, so the process blocks on its own writes
 * (back-pressure) rather than the host growing. Past `maxBytes` on disk the
 * rest of the output is dropped and the stream says so once.
 */
import fs from "node:fs";
import type { Readable } from "node:stream";

export type OutputItem = { kind: "stdout" | "stderr"; data: string } | { kind: "exit"; exitCode: number };

/** Bytes of output handed to the file but not yet written, past which the process's pipes pause. */
export const WRITE_BUFFER_BYTES = 1024 * 1024;
/** Bytes one read takes from the file. */
const READ_BYTES = 64 * 1024;

export class OutputLog {
  private readonly writer: fs.WriteStream;
  /** Bytes handed to the writer, and bytes the file holds. */
  private queued = 0;
  private written = 0;
  private ended = false;
  private cut = false;
  private readonly paused = new Set<Readable>();
  private readonly waiters = new Set<() => void>();

  readonly file: string;
  private readonly maxBytes: number;

  constructor(file: string, maxBytes: number) {
    this.file = file;
    this.maxBytes = maxBytes;
    // Created at once, so a reader that comes right after the process started finds the file.
    this.writer = fs.createWriteStream(file, { fd: fs.openSync(file, "wx", 0o600) });
    this.writer.on("error", (error) => {
      // A full or failing disk ends the stream truthfully rather than silently.
      this.ended = true;
      this.wake();
      console.error(`sortie: output file ${file}: ${error.message}`);
    });
  }

  /** Bytes of output held in memory, waiting for the disk. */
  get held(): number {
    return this.queued - this.written;
  }

  /** Appends `stream`'s chunks as items of `kind`, pausing it while the disk is behind. */
  capture(stream: Readable, kind: "stdout" | "stderr"): void {
    stream.setEncoding("utf8").on("data", (data: string) => {
      if (!this.push({ kind, data })) {
        stream.pause();
        this.paused.add(stream);
      }
    });
  }

  /** Appends one item; false when the caller should wait for the disk before sending more. */
  push(item: OutputItem): boolean {
    if (this.ended) return true;
    if (item.kind !== "exit" && this.queued >= this.maxBytes) {
      if (!this.cut) {
        this.cut = true;
        this.append({ kind: "stderr", data: `\nsortie: output past ${this.maxBytes} bytes was dropped\n` });
      }
      return true;
    }
    this.append(item);
    if (item.kind === "exit") this.writer.end();
    return this.held < WRITE_BUFFER_BYTES;
  }

  /** The NDJSON lines from item `skip` on, as they reach the file, until the exit item. */
  async *read(skip: number, signal: { closed: boolean }): AsyncGenerator<Buffer> {
    const handle = await fs.promises.open(this.file, "r");
    try {
      let position = 0;
      let toSkip = Math.max(0, skip);
      const buffer = Buffer.alloc(READ_BYTES);
      while (!signal.closed) {
        if (position >= this.written) {
          if (this.ended && position >= this.written) return;
          await new Promise<void>((wake) => this.waiters.add(wake));
          continue;
        }
        const { bytesRead } = await handle.read(buffer, 0, Math.min(READ_BYTES, this.written - position), position);
        let chunk = buffer.subarray(0, bytesRead);
        position += bytesRead;
        while (toSkip > 0 && chunk.length > 0) {
          const newline = chunk.indexOf(10);
          if (newline < 0) chunk = chunk.subarray(chunk.length);
          else {
            chunk = chunk.subarray(newline + 1);
            toSkip--;
          }
        }
        if (chunk.length > 0) yield Buffer.from(chunk);
      }
    } finally {
      await handle.close();
    }
  }

  /** Wakes readers waiting for more (a reader that has gone away, for one). */
  wake(): void {
    for (const wake of this.waiters) wake();
    this.waiters.clear();
  }

  private append(item: OutputItem): void {
    const line = Buffer.from(`${JSON.stringify(item)}\n`);
    this.queued += line.length;
    this.writer.write(line, () => {
      this.written += line.length;
      if (item.kind === "exit") this.ended = true;
      if (this.held < WRITE_BUFFER_BYTES / 2) {
        for (const stream of this.paused) stream.resume();
        this.paused.clear();
      }
      this.wake();
    });
  }
}
