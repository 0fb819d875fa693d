/** A tiny element builder and the formatting the pages share. */

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

/**
 * Builds an element: `h("a", { href: "/", "data-testid": "home" }, "Home")`.
 * `on<event>` attributes become listeners; `false`, `null` and `undefined` drop an attribute or child.
 */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = String(value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.filter((child): child is Node | string | number => child !== null && child !== undefined && child !== false).map((child) => (typeof child === "number" ? String(child) : child)));
  return element;
}

export function formatCost(usd: number): string {
  return usd === 0 ? "$0" : usd < 0.01 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(2)}`;
}

export function formatDuration(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ${String(seconds % 60).padStart(2, "0")}s`;
  return `${Math.floor(minutes / 60)}h ${String(minutes % 60).padStart(2, "0")}m`;
}

export function formatTime(ms: number): string {
  const date = new Date(ms);
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay ? date.toLocaleTimeString() : date.toLocaleString();
}

/**
 * A duration that keeps counting while `until` is null: the page-wide ticker
 * (`tickTimers`) refreshes every element carrying `data-since`.
 */
export function timer(since: number | null, until: number | null, testid?: string): HTMLElement {
  const element = h("span", { class: "timer", "data-testid": testid });
  setTimer(element, since, until);
  return element;
}

export function setTimer(element: HTMLElement, since: number | null, until: number | null): void {
  if (since === null) {
    delete element.dataset.since;
    element.textContent = "–";
    return;
  }
  element.dataset.since = String(since);
  if (until === null) delete element.dataset.until;
  else element.dataset.until = String(until);
  element.textContent = formatDuration((until ?? Date.now()) - since);
}

export function tickTimers(): void {
  for (const element of document.querySelectorAll<HTMLElement>("[data-since]:not([data-until])")) {
    element.textContent = formatDuration(Date.now() - Number(element.dataset.since));
  }
}

/** A status pill whose colour follows the status (see style.css `.status-*`). */
export function statusBadge(status: string, testid?: string): HTMLElement {
  return h("span", { class: `status status-${status}`, "data-testid": testid, "data-status": status }, status.replace("_", " "));
}
