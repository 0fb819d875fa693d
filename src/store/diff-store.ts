import { LIMITS } from "../config.ts";

/**
 * A run's patch, kept in the agent's SQLite as fixed-size chunks: written as
 * it streams out of the sandbox and served chunk by chunk, so no diff ever
 * has to fit in the Durable Object's memory.
 */
export class DiffStore {
  constructor(private readonly sql: SqlStorage) {}

  /** Replaces run `run`'s patch with the bytes of `stream`; returns how many bytes were stored. */
  async write(run: number, stream: ReadableStream<Uint8Array>): Promise<number> {
    this.sql.exec("DELETE FROM sortie_diff_chunks WHERE run = ?", run);
    const size = LIMITS.diffChunkBytes;
    let buffer = new Uint8Array(size);
    let filled = 0;
    let index = 0;
    let total = 0;
    const flush = () => {
      if (filled === 0) return;
      this.sql.exec("INSERT INTO sortie_diff_chunks (run, idx, data) VALUES (?, ?, ?)", run, index++, buffer.slice(0, filled));
      total += filled;
      filled = 0;
    };
    for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
      let offset = 0;
      while (offset < chunk.length) {
        const take = Math.min(size - filled, chunk.length - offset);
        buffer.set(chunk.subarray(offset, offset + take), filled);
        filled += take;
        offset += take;
        if (filled === size) {
          flush();
          buffer = new Uint8Array(size);
        }
      }
    }
    flush();
    return total;
  }

  chunkCount(run: number): number {
    return Number(this.sql.exec("SELECT COUNT(*) AS n FROM sortie_diff_chunks WHERE run = ?", run).one().n);
  }

  chunk(run: number, index: number): Uint8Array | null {
    const rows = this.sql.exec<{ data: ArrayBuffer }>("SELECT data FROM sortie_diff_chunks WHERE run = ? AND idx = ?", run, index).toArray();
    return rows[0] ? new Uint8Array(rows[0].data) : null;
  }

  /** The text of a run's diff, cut to `limit` characters. */
  text(run: number, limit: number): string {
    const decoder = new TextDecoder();
    let text = "";
    for (let i = 0; i < this.chunkCount(run) && text.length < limit; i++) {
      text += decoder.decode(this.chunk(run, i)!, { stream: true });
    }
    return text.length > limit ? `${text.slice(0, limit)}\n[diff cut at ${limit} characters]\n` : text;
  }
}

/** The patches' table (in the schema of each agent that keeps patches: src/store/agent-schemas.ts). */
export const DIFF_CHUNKS_TABLE = `CREATE TABLE IF NOT EXISTS sortie_diff_chunks (
  run INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (run, idx)
)`;
