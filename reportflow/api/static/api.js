// The HTTP API as the page uses it: the user's token, the requests that carry it, and the server's answers in words.
//
// Every request sends `Authorization: Bearer <token>`; the token is kept in
// sessionStorage, so it is forgotten when the tab closes.

const TOKEN_KEY = "reportflow.token";

// The statuses after which a report no longer changes.
export const FINAL = new Set(["completed", "failed", "cancelled"]);

// Thrown by api() once a refused token has signed the page out.
export class SignedOut extends Error {}

let token = null;
let tokenRefused = () => {};

// What to do when the API stops accepting the token (the page signs out, saying why).
export function onTokenRefused(handler) {
  tokenRefused = handler;
}

export function hasToken() {
  return Boolean(token);
}

export function useToken(value) {
  token = value;
}

export function savedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function forgetToken() {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
}

// Signing in: the token's first request (the recent reports), whose refusals are
// said differently. Keeps the token for this tab and returns the answer.
export async function acceptToken(candidate) {
  token = candidate;
  const response = await fetch("/reports?page_size=10", {
    headers: { Authorization: `Bearer ${candidate}`, Accept: "application/json" },
    cache: "no-store",
  });
  if (response.status === 401) {
    throw new Error("That token was not accepted. Check it and try again.");
  }
  if (response.status === 403) {
    throw new Error("That is an admin token. This page needs a user's token.");
  }
  if (!response.ok) throw new Error(`Could not sign in: ${await problem(response)}`);
  sessionStorage.setItem(TOKEN_KEY, candidate);
  return response;
}

export async function api(path, { method = "GET", body, signal, accept = "application/json" } = {}) {
  const headers = { Authorization: `Bearer ${token}`, Accept: accept };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: "no-store",
  });
  if (response.status === 401) {
    tokenRefused("That token is no longer accepted. Sign in again.");
    throw new SignedOut();
  }
  return response;
}

export async function problem(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
  } catch {
    // not JSON: fall through to the status line
  }
  return `the server answered ${response.status} ${response.statusText}`.trim();
}

export function retryAfterMs(response) {
  const value = response && response.headers.get("Retry-After");
  if (!value) return 0;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? 0 : Math.max(0, at - Date.now());
}

// `runId`: the run a client follows (the run_id its POST answered). Without it,
// an API replica other than the one that started the run may describe the
// report's previous run, and a "Try again" would show that run's final state.
export function reportPath(id, suffix = "", runId = null) {
  const query = runId ? `?run_id=${encodeURIComponent(runId)}` : "";
  return `/reports/${encodeURIComponent(id)}${suffix}${query}`;
}

export function isAbort(err) {
  return err && err.name === "AbortError";
}
