// api.js: where the server is, and every HTTP call the page makes (WHIP goes through
// WhipClient, made here too), so a header every request needs is one edit.
//
// Query parameters:
//   ?server=http://127.0.0.1:8001   voxline server base URL (default: this page's origin)
//   ?token=...                      bearer token (HTTP: Authorization header)
//
// A session's own routes need its secret (X-Session-Token from POST /whip): every function
// below that names a session takes it too (the WebSocket carries it as ?token=).

import { WhipClient } from "./whip.js";

const params = new URLSearchParams(window.location.search);

function serverBase() {
  const given = params.get("server");
  let base = given || (window.location.origin !== "null" ? window.location.origin : "http://127.0.0.1:8001");
  try {
    base = new URL(base).href;
  } catch {
    base = window.location.origin;
  }
  return base.replace(/\/+$/, "");
}

export const SERVER = serverBase();
export const TOKEN = params.get("token") || "";
export const api = (path) => `${SERVER}${path}`;
export const authHeaders = (extra = {}) => (TOKEN ? { ...extra, Authorization: `Bearer ${TOKEN}` } : { ...extra });
const sessionHeaders = (secret, extra = {}) => authHeaders(secret ? { ...extra, "X-Session-Token": secret } : extra);

/** The STUN/TURN servers this server hands callers (TURN credentials are short-lived), or []. */
export async function iceServers() {
  try {
    const r = await fetch(api("/ice-servers"), { headers: authHeaders(), signal: AbortSignal.timeout(3000) });
    return r.ok ? (await r.json()).iceServers || [] : [];
  } catch {
    return []; // host candidates still work on a reachable network
  }
}

/** A WHIP client for this server (the token goes with the offer and the DELETE). */
export async function whipClient() {
  return new WhipClient(api("/whip"), { token: TOKEN, iceServers: await iceServers() });
}

/** The URL of a session's event stream (browsers cannot set headers on a WebSocket). */
export function eventsUrl(sessionId, secret) {
  const url = new URL(api(`/sessions/${encodeURIComponent(sessionId)}/events`));
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  if (secret || TOKEN) url.searchParams.set("token", secret || TOKEN);
  return url;
}

/** The session's record, or null when the server does not answer 200. */
export async function getSession(sessionId, secret) {
  const r = await fetch(api(`/sessions/${encodeURIComponent(sessionId)}`), { headers: sessionHeaders(secret) });
  return r.ok ? r.json() : null;
}

/** POST /listening/start|stop; the reply's status and JSON body ({} when it has none). */
export async function postListening(sessionId, secret, on) {
  const r = await fetch(api(on ? "/listening/start" : "/listening/stop"), {
    method: "POST",
    headers: sessionHeaders(secret, { "Content-Type": "application/json" }),
    body: JSON.stringify({ session_id: sessionId }),
  });
  let body = {};
  try {
    body = await r.json();
  } catch {
    /* non-JSON */
  }
  return { ok: r.ok, status: r.status, body };
}

/** DELETE a session's resource while the tab closes (keepalive: the request outlives the page). */
export function deleteOnUnload(location, secret) {
  fetch(location, { method: "DELETE", keepalive: true, headers: sessionHeaders(secret) }).catch(() => {});
}
