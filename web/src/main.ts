/**
 * The viewer's entry: picks the page for the path (`/`, `/tasks/<id>`,
 * `/plans/<id>` or `/repos/<owner>/<name>/memory`),
 * asks for the admin token when there is no session, and tears the page
 * down (sockets, polls) before showing another.
 */
import "diff2html/bundles/css/diff2html.min.css";
import "../style.css";
import { dashboardPage } from "./dashboard.ts";
import { h, tickTimers } from "./dom.ts";
import { memoryPage } from "./memory-page.ts";
import { planPage } from "./plan-page.ts";
import { loginForm, sessionToken, signOut, whenUnauthorized } from "./session.ts";
import { taskPage } from "./task-page.ts";

/** A page draws into `root` and stops its work when `signal` aborts. */
export type Page = (root: HTMLElement, signal: AbortSignal) => void;

const root = document.getElementById("app")!;
const signOutButton = document.getElementById("sign-out") as HTMLButtonElement;
let current: AbortController | null = null;

function pageFor(pathname: string): Page {
  if (pathname === "/" || pathname === "/index.html") return dashboardPage;
  const task = /^\/tasks\/([A-Za-z0-9_-]+)\/?$/.exec(pathname);
  if (task) return (into, signal) => taskPage(into, signal, task[1]!);
  const plan = /^\/plans\/([A-Za-z0-9_-]+)\/?$/.exec(pathname);
  if (plan) return (into, signal) => planPage(into, signal, plan[1]!);
  const memory = /^\/repos\/([A-Za-z0-9-]+)\/([A-Za-z0-9._-]+)\/memory\/?$/.exec(pathname);
  if (memory) return (into, signal) => memoryPage(into, signal, `${memory[1]}/${memory[2]}`);
  return (into) => into.replaceChildren(h("section", { class: "card" }, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "/" }, "Back to the tasks"))));
}

function show(): void {
  current?.abort();
  current = new AbortController();
  root.replaceChildren();
  const signedIn = sessionToken() !== null;
  signOutButton.hidden = !signedIn;
  if (!signedIn) {
    root.append(loginForm(show));
    return;
  }
  pageFor(location.pathname)(root, current.signal);
}

whenUnauthorized(() => {
  // Every page's work stops at once; the form replaces it, and the same page comes back after sign-in.
  if (root.querySelector("[data-testid=login-form]")) return;
  show();
});
signOutButton.addEventListener("click", () => {
  signOut();
  show();
});
setInterval(tickTimers, 1000);
show();
