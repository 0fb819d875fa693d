/** Speaks Sortie's HTTP API: bearer auth, JSON bodies, `{error:{code,message}}` refusals as `CliError`. */
import { CliError } from "./errors.mjs";

/**
 * A client for one server.
 * @param {{ url: string, token: string }} config
 */
export function createClient({ url, token }) {
  /** Sends a request; a non-2xx answer throws the API's error. @returns {Promise<Response>} */
  async function request(method, pathname, body) {
    const headers = { authorization: `Bearer ${token}`, accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    let response;
    try {
      response = await fetch(`${url}${pathname}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (error) {
      const reason = error?.cause?.code ?? error?.cause?.message ?? error?.message ?? String(error);
      throw new CliError(`could not reach ${url}: ${reason}`, { unreachable: true, cause: error });
    }
    if (!response.ok) throw await refusalOf(response);
    return response;
  }

  const json = async (method, pathname, body) => (await request(method, pathname, body)).json();
  const task = (id) => `/api/tasks/${encodeURIComponent(id)}`;
  const memory = (repo) => `/api/repos/${repo.split("/").map(encodeURIComponent).join("/")}/memory`;

  return {
    url,
    request,
    createTask: (body) => json("POST", "/api/tasks", body),
    listTasks: (query) => json("GET", `/api/tasks${queryString(query)}`),
    getTask: (id) => json("GET", task(id)),
    cancel: (id) => json("POST", `${task(id)}/cancel`),
    say: (id, body) => json("POST", `${task(id)}/messages`, body),
    pickWinner: (id, run) => json("POST", `${task(id)}/winner`, { run }),
    createPlan: (body) => json("POST", "/api/plans", body),
    listPlans: (query) => json("GET", `/api/plans${queryString(query)}`),
    getPlan: (id) => json("GET", `/api/plans/${encodeURIComponent(id)}`),
    /** Approves a plan that waits, as written. */
    approvePlan: (id) => json("POST", `/api/plans/${encodeURIComponent(id)}/approve`),
    /** A repository's memory entries (`repo` is owner/name), optionally of one status. */
    listMemory: (repo, status) => json("GET", `${memory(repo)}${queryString({ status })}`),
    /** Approves or rejects one entry. */
    decideMemory: (repo, id, decision) => json("POST", `${memory(repo)}/${encodeURIComponent(id)}/${decision}`),
    /** The run's diff as a byte stream, untouched, for `git apply`. */
    diff: async (id, run) => (await request("GET", `${task(id)}/runs/${run}/diff`)).body,
    /** The raw NDJSON event log after `after`. */
    eventLog: (id, after = 0) => request("GET", `${task(id)}/events?after=${after}`),
    /** Each event after `after`, parsed as it arrives. */
    async *events(id, after = 0) {
      yield* ndjson((await request("GET", `${task(id)}/events?after=${after}`)).body);
    },
  };
}

/** @typedef {ReturnType<typeof createClient>} Client */

/** The API's `{error:{code,message}}` as a `CliError`; a body of another shape is quoted. */
async function refusalOf(response) {
  const text = await response.text().catch(() => "");
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = null;
  }
  const error = parsed?.error;
  if (error && typeof error.message === "string") {
    return new CliError(error.message, { code: String(error.code ?? `http_${response.status}`), status: response.status });
  }
  const detail = text.trim().slice(0, 200) || response.statusText;
  return new CliError(`${response.status} from ${response.url}: ${detail}`, { code: `http_${response.status}`, status: response.status });
}

function queryString(query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value !== undefined && value !== "") params.set(key, String(value));
  const text = params.toString();
  return text ? `?${text}` : "";
}

/** Parses a stream of newline-delimited JSON, one value per line, as the bytes arrive. */
export async function* ndjson(body) {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      if (line.trim()) yield JSON.parse(line);
    }
  }
  buffer += decoder.decode();
  if (buffer.trim()) yield JSON.parse(buffer);
}
