/**
 * The one error type of the CLI. `main` turns it into `sortie: <message>`
 * on stderr and the exit code: 2 for usage and config mistakes, 1 for an
 * API refusal or an unreachable server.
 *
 * @example throw new CliError("unknown command \"lst\"", { exitCode: 2 })
 */
export class CliError extends Error {
  /** @param {string} message @param {{ exitCode?: number, code?: string, status?: number, unreachable?: boolean, cause?: unknown }} [options] */
  constructor(message, options = {}) {
    super(message, { cause: options.cause });
    this.name = "CliError";
    this.exitCode = options.exitCode ?? 1;
    /** The API's error code, when the server refused. */
    this.code = options.code;
    /** The HTTP status of the refusal. */
    this.status = options.status;
    /** The server did not answer at all (refused, reset, unknown host): worth retrying. */
    this.unreachable = options.unreachable ?? false;
  }
}

/** A mistake in how the command was called: exit 2, with a pointer to the help. */
export const usageError = (message) => new CliError(message, { exitCode: 2 });
