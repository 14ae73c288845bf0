// Who is signed in. The token lives in this module's memory only: never in localStorage or a cookie
// that script could read, so a reload signs the person out (and the sign-in page brings them back).
import { problemText } from "./api/problem";
import { navigate } from "./router";
import { signal } from "./signal";

export type Role = "agent" | "manager" | "analyst" | "admin" | "integration";
export type Person = { sub: string; role: Role; expires: number };

let token: string | null = null;
export const person = signal<Person | null>(null);
export const expiredNotice = signal(false);

export const session = {
  token: () => (token && person.value && Date.now() < person.value.expires ? token : null),
  signIn(access: string, who: Person) {
    token = access;
    expiredNotice.value = false;
    person.value = who;
  },
  signOut() {
    token = null;
    person.value = null;
  },
  expired() {
    if (token) {
      token = null;
      expiredNotice.value = true;
      person.value = null;
    }
  },
};

export type ConsoleConfig = {
  dev_sign_in: boolean;
  roles: Role[];
  oidc: { issuer: string; client_id: string; scope: string } | null;
};

export async function loadConfig(): Promise<ConsoleConfig> {
  const response = await fetch("/console/config.json", { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return (await response.json()) as ConsoleConfig;
}

/** Development sign-in: a short-lived token for the chosen user and role (absent in production). */
export async function devSignIn(sub: string, role: Role, team: string[]): Promise<void> {
  const response = await fetch("/console/dev-token", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ sub, role, team }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(problemText(response.status, body));
  }
  session.signIn(body.access_token, { sub: body.sub, role: body.role, expires: Date.now() + body.expires_in * 1000 });
}

// ---- OpenID Connect: authorization code with PKCE --------------------------------------------------
// Only the verifier and state cross the redirect (sessionStorage, removed on return); the tokens stay in
// memory like every other token.

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function discovery(issuer: string): Promise<{ authorization_endpoint: string; token_endpoint: string }> {
  const response = await fetch(`${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`);
  if (!response.ok) throw new Error(`The identity provider answered HTTP ${response.status}`);
  return response.json();
}

const REDIRECT = () => `${window.location.origin}/console/oidc-callback`;

export async function oidcStart(config: NonNullable<ConsoleConfig["oidc"]>, next: string): Promise<void> {
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const state = base64url(crypto.getRandomValues(new Uint8Array(16)));
  const challenge = base64url(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier))));
  sessionStorage.setItem("crm.pkce", JSON.stringify({ verifier, state, next }));
  const endpoints = await discovery(config.issuer);
  const url = new URL(endpoints.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: config.client_id,
    redirect_uri: REDIRECT(),
    scope: config.scope,
    state,
    code_challenge: challenge,
    code_challenge_method: "S256",
  }).toString();
  window.location.assign(url.toString());
}

/** On /console/oidc-callback: trade the code for tokens, go where the person was headed, sign them in. */
export async function oidcFinish(config: NonNullable<ConsoleConfig["oidc"]>): Promise<string> {
  const params = new URLSearchParams(window.location.search);
  const saved = JSON.parse(sessionStorage.getItem("crm.pkce") ?? "null") as {
    verifier: string;
    state: string;
    next: string;
  } | null;
  sessionStorage.removeItem("crm.pkce");
  if (!saved || params.get("state") !== saved.state || !params.get("code")) {
    throw new Error(params.get("error_description") || "The sign-in answer does not match the request; sign in again.");
  }
  const endpoints = await discovery(config.issuer);
  const response = await fetch(endpoints.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: params.get("code")!,
      redirect_uri: REDIRECT(),
      client_id: config.client_id,
      code_verifier: saved.verifier,
    }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error_description || body.error || `HTTP ${response.status}`);
  const access = (body.access_token ?? body.id_token) as string;
  const claims = JSON.parse(atob(access.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  const next = saved.next && saved.next.startsWith("/console/") ? saved.next : "/console/";
  navigate(next); // before signing in, so the callback address is never rendered as a page
  session.signIn(access, { sub: claims.sub, role: claims.role, expires: claims.exp * 1000 });
  return next;
}
