// Path-based routing under /console (the gateway answers index.html for every page path).
import { signal } from "./signal";

export const BASE = "/console";
export const route = signal(window.location.pathname);

export function navigate(path: string): void {
  if (path !== window.location.pathname + window.location.search) window.history.pushState(null, "", path);
  route.value = new URL(path, window.location.origin).pathname; // a query (?customer_id=) is the page's own
}

window.addEventListener("popstate", () => {
  route.value = window.location.pathname;
});

export function match(pattern: RegExp, path: string): string[] | null {
  const found = pattern.exec(path);
  return found ? found.slice(1).map(decodeURIComponent) : null;
}
