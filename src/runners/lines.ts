/**
 * Cuts a stream of text chunks into whole lines. Output arrives in arbitrary
 * pieces; a JSON event must only be parsed once its line is complete.
 */
export class LineSplitter {
  private rest = "";

  /** Adds a chunk and returns the lines it completed. */
  push(chunk: string): string[] {
    this.rest += chunk;
    const lines = this.rest.split("\n");
    this.rest = lines.pop() ?? "";
    return lines.map((line) => line.replace(/\r$/, ""));
  }

  /** Characters held back waiting for the end of their line. */
  get pending(): number {
    return this.rest.length;
  }

  /** Whatever is left when the stream ends. */
  flush(): string[] {
    const last = this.rest;
    this.rest = "";
    return last ? [last] : [];
  }
}
