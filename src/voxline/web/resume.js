// resume.js: carry a call over when its media server goes away (a rollout's drain, a crash).
//
// The page keeps the session (its ID, the transcript on screen, the server's history) and
// offers a fresh peer connection with the `X-Resume-Token` of the first answer; a load
// balancer sends it to another media server sharing the session store (docs/sessions.md).
// Retries are bounded, with backoff (or the server's Retry-After). A session that has
// ended (hung up, the agent ended the call, the resume grace is over) does not come back:
// the server says so with 404/409 and the page ends the call.

import { endLocally } from "./call.js";
import { fetchSession, openEvents } from "./events.js";
import { attachAgentMeter } from "./meters.js";
import { app, ui } from "./state.js";
import { log, render, setConn, showAlert } from "./view.js";
import { WhipError } from "./whip.js";

export const RESUME_TRIES = 8;
const FIRST_DELAY_MS = 250;
const MAX_DELAY_MS = 4000;
const DISCONNECTED_GRACE_MS = 2000; // "disconnected" often heals by itself (a lost packet burst)

let graceTimer = 0;

/** The peer connection changed state: resume on failed/closed, or disconnected for too long. */
export function watchConnection(client, state) {
  if (app.client !== client || app.phase !== "connected") return;
  clearTimeout(graceTimer);
  if (state === "failed" || state === "closed") {
    resumeCall(`peer connection ${state}`);
  } else if (state === "disconnected") {
    graceTimer = setTimeout(() => {
      const now = client.pc?.connectionState;
      if (app.client === client && (now === "disconnected" || now === "failed")) resumeCall(`peer connection ${now}`);
    }, DISCONNECTED_GRACE_MS);
  }
}

/** The server closes the events WebSocket with this code when it hands the call over (drain). */
export const RESUMABLE_CLOSE = 4001;

/** The events WebSocket closed: resume at once if the server said so, or if the media is gone too. */
export function onEventsLost(code) {
  if (app.phase !== "connected") return;
  const state = app.client?.pc?.connectionState;
  if (code === RESUMABLE_CLOSE) resumeCall("the media server handed the call over");
  else if (state !== "connected") resumeCall(`event stream closed (${code}) and media ${state}`);
}

function final(err) {
  // Resuming cannot succeed: the session ended, expired, or we may not take it.
  return err instanceof WhipError && [400, 401, 403, 404, 409].includes(err.status) && err.code !== "session_active";
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Reattach the live session on a fresh peer connection (at most one resume at a time). */
export async function resumeCall(reason) {
  const client = app.client;
  if (app.phase !== "connected" || !client) return;
  if (!client.resumeToken) {
    setConn("failed");
    showAlert("Media connection failed", "The audio connection to the server failed (ICE). Hang up and try again.");
    return;
  }
  app.phase = "reconnecting";
  const ws = app.ws;
  app.ws = null;
  ws?.close(1000, "reconnecting");
  setConn("reconnecting");
  render();
  log("whip", "warning", `Connection to the server lost (${reason}); resuming session ${app.sessionId}`);
  const stillOurs = () => app.client === client && app.phase === "reconnecting";
  for (let attempt = 1; attempt <= RESUME_TRIES && stillOurs(); attempt++) {
    try {
      await client.resume(app.mic);
      if (!stillOurs()) return; // hung up meanwhile: hangUp ends what this attached
      ui.audio.srcObject = client.remoteStream;
      attachAgentMeter(client.remoteStream);
      ui.audio.play?.().catch(() => {});
      app.phase = "connected";
      app.resumes += 1;
      app.wsRetries = 0;
      setConn(client.pc?.connectionState === "connected" ? "connected" : "connecting");
      render();
      log("whip", "info", `Session ${app.sessionId} resumed (attempt ${attempt}); history kept`);
      openEvents();
      fetchSession();
      return;
    } catch (err) {
      if (!stillOurs()) return;
      if (final(err)) {
        log("whip", "error", `The session cannot be resumed: ${err.message}`);
        endLocally("ended");
        showAlert("Call ended", `The call could not be resumed: ${err.detail || err.message}. Start a new conversation.`, "info");
        return;
      }
      const backoff = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (attempt - 1));
      const wait = err?.retryAfter != null ? Math.min(MAX_DELAY_MS, err.retryAfter * 1000) : backoff;
      log("whip", "warning", `Resume attempt ${attempt}/${RESUME_TRIES} failed (${err?.message || err}); next in ${wait} ms`);
      await sleep(wait);
    }
  }
  if (!stillOurs()) return;
  log("whip", "error", `Could not resume session ${app.sessionId} after ${RESUME_TRIES} attempts`);
  endLocally("failed");
  showAlert("Connection lost", "The server could not be reached again. Start a new conversation.");
}
