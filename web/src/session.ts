/**
 * The viewer's credential. The admin token is typed once into a form, traded
 * for a signed session token (`POST /api/session`), and forgotten: only the
 * session token is kept, in sessionStorage, and it never appears in a URL
 * except the WebSocket's, which browsers cannot give headers.
 */
import { z } from "zod";
import { ErrorInfo } from "../../src/schema.ts";
import { h } from "./dom.ts";

const STORAGE_KEY = "sortie.session";
/** Ask again a minute before the server would start refusing the token. */
const EXPIRY_MARGIN_MS = 60_000;

const Session = z.object({ token: z.string().min(1), expiresAt: z.number() });
const ErrorResponse = z.object({ error: ErrorInfo });

/** Thrown by `api` when the server refuses the session; the app has already been told to ask again. */
export class Unauthorized extends Error {
  constructor() {
    super("the session was refused");
  }
}

/** A refusal from the API other than 401, with its `{error:{code,message}}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let onUnauthorized: () => void = () => {};

/** What the app does when the server refuses the session: show the form again. */
export function whenUnauthorized(handler: () => void): void {
  onUnauthorized = handler;
}

export function sessionToken(): string | null {
  const parsed = Session.safeParse(safeJson(sessionStorage.getItem(STORAGE_KEY)));
  if (!parsed.success || parsed.data.expiresAt - EXPIRY_MARGIN_MS < Date.now()) return null;
  return parsed.data.token;
}

export function signOut(): void {
  sessionStorage.removeItem(STORAGE_KEY);
}

/** Trades the admin token for a session token; throws `ApiError` if the server refuses it. */
export async function signIn(adminToken: string): Promise<void> {
  const response = await fetch("/api/session", { method: "POST", headers: { authorization: `Bearer ${adminToken.trim()}` } });
  if (!response.ok) throw await apiErrorOf(response);
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(Session.parse(await response.json())));
}

/** A call to the API with the session token. A 401 forgets the session and asks for the admin token again. */
export async function api(path: string, init: RequestInit = {}): Promise<Response> {
  const token = sessionToken();
  if (!token) {
    onUnauthorized();
    throw new Unauthorized();
  }
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${token}`);
  const response = await fetch(path, { ...init, headers });
  if (response.status === 401) {
    signOut();
    onUnauthorized();
    throw new Unauthorized();
  }
  if (!response.ok) throw await apiErrorOf(response);
  return response;
}

/** `api`, with the JSON answer checked against the schema the server builds it from. */
export async function apiJson<T>(path: string, schema: z.ZodType<T>, init?: RequestInit): Promise<T> {
  return schema.parse(await (await api(path, init)).json());
}

async function apiErrorOf(response: Response): Promise<ApiError> {
  const body = ErrorResponse.safeParse(safeJson(await response.text()));
  return body.success
    ? new ApiError(response.status, body.data.error.code, body.data.error.message)
    : new ApiError(response.status, `http_${response.status}`, response.statusText || "request failed");
}

function safeJson(text: string | null): unknown {
  if (text === null) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** The form that asks for the admin token; `onSignedIn` runs once the session token is stored. */
export function loginForm(onSignedIn: () => void): HTMLElement {
  const input = h("input", { type: "password", name: "token", autocomplete: "current-password", required: true, placeholder: "SORTIE_ADMIN_TOKEN", "data-testid": "login-token" });
  const error = h("p", { class: "error", role: "alert", "data-testid": "login-error", hidden: true });
  const button = h("button", { type: "submit", "data-testid": "login-submit" }, "Sign in");
  const form = h(
    "form",
    {
      class: "login card",
      "data-testid": "login-form",
      onsubmit: async (event: Event) => {
        event.preventDefault();
        button.disabled = true;
        error.hidden = true;
        try {
          await signIn(input.value);
          onSignedIn();
        } catch (failure) {
          error.textContent = failure instanceof ApiError && failure.status === 401 ? "That token was refused." : `Sign-in failed: ${(failure as Error).message}`;
          error.hidden = false;
          button.disabled = false;
        }
      },
    },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Paste the admin token. It is exchanged for a 12-hour session and not stored."),
    input,
    button,
    error,
  );
  queueMicrotask(() => input.focus());
  return form;
}
