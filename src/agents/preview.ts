/**
 * A run's preview: the task's `preview.command` serving the app the run
 * built, started in the run's kept workspace once its turn succeeded, with
 * PORT set. It is `ready` once the port answers (at most 60 s), and lives as
 * long as the workspace is kept; its output goes to the run's events.
 *
 *   const previews = new RunPreviews(ctx);
 *   await previews.start(0, sandbox, { cwd: "/work/repo", confine: null, env: {} });
 */
import { messageOf } from "../errors.ts";
import { SandboxUnavailableError, answeredByApp, type Confinement, type Sandbox, type SandboxPort } from "../sandbox/port.ts";
import { PREVIEW, type ErrorInfo, type EventInput, type PreviewView, type RunView, type TaskSpec } from "../schema.ts";

/** Characters of a preview's output recorded as events per start; a dev server may print without end. */
const OUTPUT_EVENT_CHARS = 64 * 1024;
/** Characters of the latest output a failure carries. */
const OUTPUT_TAIL_CHARS = 4 * 1024;
/** Between two probes of the port while the preview starts. */
const PROBE_INTERVAL_MS = 250;

/** Where the preview's process runs: the run's checkout, as the run's user, with the run's git environment. */
export interface PreviewPlace {
  cwd: string;
  confine: Confinement | null;
  env: Record<string, string>;
}

/** What a preview borrows from its task agent. */
export interface PreviewContext {
  kv: SyncKvStorage;
  spec(): TaskSpec;
  port(): SandboxPort;
  runOf(index: number): RunView;
  record(input: EventInput): void;
  /** The preview's URL when the backend gives none of its own: `<origin>/preview/<task>/<run>/`. */
  localUrl(index: number): string;
  /** PREVIEW_HOSTNAME: the custom domain Cloudflare previews are exposed on; null locally. */
  hostname(): string | null;
  /** How long to wait for the port to answer. */
  readyTimeoutMs(): number;
}

/** Where a preview's process stands, kept so the proxy and a stop find it after the run's driver is gone. */
export interface PreviewTarget {
  sandboxId: string;
  processId: string;
  port: number;
  path: string;
  /** Where it runs, to start it again after its sandbox restarted. */
  place: PreviewPlace;
}

const previewKey = (index: number) => `sortie:preview:${index}`;

export class RunPreviews {
  /** Readers of each live preview's output, aborted when it stops. */
  private readonly readers = new Map<number, AbortController>();
  /** Runs whose preview was started again after a sandbox restart, until it next starts for another reason. */
  private readonly restarted = new Set<number>();

  constructor(private readonly ctx: PreviewContext) {}

  /** The sandbox and port a run's preview serves on, while it is starting or ready. */
  target(index: number): PreviewTarget | null {
    const status = this.ctx.runOf(index).preview?.status;
    if (status !== "starting" && status !== "ready") return null;
    return this.ctx.kv.get<PreviewTarget>(previewKey(index)) ?? null;
  }

  /**
   * Starts the task's preview command for run `index` and waits until its
   * port answers; an earlier preview of the run is stopped first. Ends
   * `ready`, or `failed` with what the command printed.
   */
  async start(index: number, sandbox: Sandbox, place: PreviewPlace, options: { afterLoss?: boolean } = {}): Promise<PreviewView> {
    if (!options.afterLoss) this.restarted.delete(index);
    const preview = this.ctx.spec().preview;
    if (!preview) throw new Error("the task has no preview");
    await this.stop(index, "restarted");
    const startedAt = Date.now();
    const exposed = await sandbox.exposePort(preview.port, { hostname: this.ctx.hostname(), name: `preview-${index}` });
    const url = exposed ?? this.ctx.localUrl(index);
    this.ctx.record({ run: index, type: "preview.starting", data: { command: preview.command, port: preview.port, url, startedAt } });
    const { processId } = await sandbox.startProcess(preview.command, {
      cwd: place.cwd,
      // The app's own variables only: no credential of Sortie's reaches a preview.
      env: { ...place.env, PORT: String(preview.port) },
      ...(place.confine ? { confine: place.confine } : {}),
      serves: preview.port,
    });
    const target: PreviewTarget = { sandboxId: sandbox.id, processId, port: preview.port, path: preview.path, place };
    this.ctx.kv.put(previewKey(index), target);
    const reader = new AbortController();
    this.readers.set(index, reader);
    const output = this.readOutput(index, sandbox, processId, reader.signal);
    const outcome = await Promise.race([this.answers(target, reader.signal), output.exited.then((code) => ({ exited: code }))]);
    if (outcome === "ready") {
      this.ctx.record({ run: index, type: "preview.ready", data: { url, port: preview.port, ms: Date.now() - startedAt } });
    } else if (outcome === "timeout") {
      await sandbox.killProcess(processId).catch(() => undefined);
      this.fail(index, { code: "preview_not_listening", message: `nothing answered on port ${preview.port} within ${Math.round(this.timeoutMs / 1000)} s` }, output.tail());
    } else if (typeof outcome === "object") {
      this.fail(index, { code: "preview_exited", message: `the preview command exited ${outcome.exited} before port ${preview.port} answered` }, output.tail());
    }
    return this.ctx.runOf(index).preview!;
  }

  /** Stops the run's preview (its process, its public URL, the reader of its output); `reason` goes in the event. */
  async stop(index: number, reason: "deleted" | "workspace_released" | "restarted" | "follow_up"): Promise<void> {
    const target = this.ctx.kv.get<PreviewTarget>(previewKey(index));
    this.readers.get(index)?.abort();
    this.readers.delete(index);
    this.ctx.kv.delete(previewKey(index));
    const current = this.ctx.runOf(index).preview;
    if (target && reason !== "workspace_released") {
      // The workspace's release ends every process in it; otherwise the preview's own goes now.
      const sandbox = await this.ctx.port().open(target.sandboxId);
      await sandbox.killProcess(target.processId).catch((error: unknown) => {
        if (!(error instanceof SandboxUnavailableError)) throw error;
      });
      await sandbox.unexposePort(target.port);
    }
    if (current && (current.status === "starting" || current.status === "ready")) {
      this.ctx.record({ run: index, type: "preview.stopped", data: { reason } });
    }
  }

  /**
   * After the task agent restarted: a preview that was starting had no one
   * left waiting for its port, so it ends `failed` (its process too). A
   * ready one goes on serving; only its output is no longer recorded.
   */
  async recover(index: number): Promise<void> {
    if (this.ctx.runOf(index).preview?.status !== "starting" || this.readers.has(index)) return;
    const target = this.ctx.kv.get<PreviewTarget>(previewKey(index));
    if (target) {
      const sandbox = await this.ctx.port().open(target.sandboxId);
      await sandbox.killProcess(target.processId).catch((error: unknown) => {
        if (!(error instanceof SandboxUnavailableError)) throw error;
      });
    }
    this.fail(index, { code: "orchestrator_restarted", message: "the task agent restarted while the preview was starting" }, "");
  }

  private get timeoutMs(): number {
    return Math.min(this.ctx.readyTimeoutMs(), PREVIEW.readyTimeoutMs);
  }

  /** Probes the port until the app answers (`ready`), the wait is over (`timeout`), or the preview was stopped. */
  private async answers(target: PreviewTarget, stopped: AbortSignal): Promise<"ready" | "timeout" | "stopped"> {
    const deadline = Date.now() + this.timeoutMs;
    while (Date.now() < deadline) {
      if (stopped.aborted) return "stopped";
      const response = await this.ctx.port().fetchPort(target.sandboxId, target.port, new Request(`http://preview${target.path}`)).catch(() => null);
      if (response) await response.body?.cancel();
      if (response && answeredByApp(response)) return "ready";
      await new Promise((resolve) => setTimeout(resolve, PROBE_INTERVAL_MS));
    }
    return "timeout";
  }

  /**
   * Records the preview's output as `preview.output` events (up to a cap) for
   * as long as it runs; `exited` settles with its exit code. A preview that
   * was ready and exits on its own has failed.
   */
  private readOutput(index: number, sandbox: Sandbox, processId: string, signal: AbortSignal) {
    let recorded = 0;
    let tail = "";
    let exit!: (code: number) => void;
    const exited = new Promise<number>((resolve) => (exit = resolve));
    void (async () => {
      try {
        for await (const output of sandbox.streamProcess(processId, { signal })) {
          if (output.kind === "exit") {
            exit(output.exitCode);
            break;
          }
          tail = (tail + output.data).slice(-OUTPUT_TAIL_CHARS);
          if (recorded >= OUTPUT_EVENT_CHARS) continue;
          const text = output.data.slice(0, OUTPUT_EVENT_CHARS - recorded);
          recorded += text.length;
          this.ctx.record({ run: index, type: "preview.output", data: { stream: output.kind, text, ...(recorded >= OUTPUT_EVENT_CHARS ? { truncated: true } : {}) } });
        }
      } catch (error) {
        if (signal.aborted) return;
        exit(-1);
        tail = `${tail}\n[sortie] the preview's output stream broke: ${messageOf(error)}`.slice(-OUTPUT_TAIL_CHARS);
        if (error instanceof SandboxUnavailableError && this.ctx.runOf(index).preview?.status === "ready") return this.restartAfterLoss(index, sandbox.id);
      }
      if (signal.aborted || this.ctx.runOf(index).preview?.status !== "ready") return;
      this.readers.delete(index);
      this.ctx.kv.delete(previewKey(index));
      this.fail(index, { code: "preview_exited", message: "the preview command exited" }, tail);
    })();
    return { exited, tail: () => tail };
  }

  /**
   * The sandbox went away under a ready preview (a container restart): its
   * process is gone and, on Cloudflare, its port's forwarding with it. Once
   * per start, while the workspace is kept, the command starts again, which
   * exposes the port again.
   */
  private async restartAfterLoss(index: number, sandboxId: string): Promise<void> {
    const target = this.ctx.kv.get<PreviewTarget>(previewKey(index));
    const run = this.ctx.runOf(index);
    if (!target || (run.workspaceUntil ?? 0) < Date.now() || this.restarted.has(index)) {
      this.fail(index, { code: "preview_exited", message: "the preview's sandbox went away" }, "");
      return;
    }
    this.restarted.add(index);
    this.ctx.record({ run: index, type: "preview.restarting", data: { reason: "sandbox_restarted" } });
    try {
      await this.start(index, await this.ctx.port().open(sandboxId), target.place, { afterLoss: true });
    } catch (error) {
      this.fail(index, { code: "preview_failed", message: `the preview could not start again: ${messageOf(error)}` }, "");
    }
  }

  private fail(index: number, error: ErrorInfo, output: string): void {
    const current = this.ctx.runOf(index).preview;
    if (!current) return;
    this.readers.get(index)?.abort();
    this.readers.delete(index);
    this.ctx.kv.delete(previewKey(index));
    const withOutput = { code: error.code, message: output.trim() ? `${error.message}; its output:\n${output.trim()}` : `${error.message}; it printed nothing` };
    // The event carries the error exactly as the run's preview shows it: the run's `preview` is the fold of these events.
    this.ctx.record({ run: index, type: "preview.failed", data: { error: withOutput, output } });
  }
}
