// whip.js: a small, dependency-free WHIP client (RFC 9725) as a plain ES module.
//
//   import { WhipClient, WhipError } from "./whip.js";
//   const client = new WhipClient("http://127.0.0.1:8001/whip", { token: "secret" });
//   const { sessionId, location, pc } = await client.connect(micStream, { receiveAudio: true });
//   audioElement.srcObject = client.remoteStream;   // the server's audio, same peer connection
//   ...
//   await client.resume(micStream);                 // its media server went away: same session, new peer
//   await client.disconnect();                      // DELETE on the Location, then close
//
// No trickle ICE: the offer is sent once ICE gathering is complete (or after a short
// timeout with the candidates gathered so far). The server's answer carries `Location`
// (the session resource, used for DELETE) and `X-Session-ID` (the server's session ID,
// the single source of truth; the optional temporary ID we send is only a log reference).

/** An HTTP or network failure of a WHIP request. */
export class WhipError extends Error {
  /**
   * @param {string} message human-readable summary
   * @param {object} info
   * @param {number} [info.status] HTTP status (0 when the server could not be reached)
   * @param {string} [info.code] the server's JSON `error` code, or "unreachable", "timeout", ...
   * @param {string} [info.detail] the server's JSON `detail` text
   * @param {number|null} [info.retryAfter] seconds from `Retry-After`, if sent
   */
  constructor(message, { status = 0, code = "", detail = "", retryAfter = null, cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.name = "WhipError";
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.retryAfter = retryAfter;
  }
}

/** A temporary client-side reference, sent as `X-Session-ID` (the server keeps its own ID). */
export function temporaryId(prefix = "tmp-") {
  if (globalThis.crypto?.randomUUID) return prefix + crypto.randomUUID();
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function readError(response) {
  let code = "";
  let detail = "";
  try {
    const text = await response.text();
    try {
      const body = JSON.parse(text);
      code = String(body.error ?? "");
      detail = String(body.detail ?? "");
    } catch {
      // Not a voxline JSON error: keep plain text, drop HTML error pages.
      detail = /^\s*</.test(text) ? "" : text.slice(0, 300);
    }
  } catch {
    /* body unreadable: keep the status only */
  }
  const ra = response.headers.get("Retry-After");
  const retryAfter = ra !== null && ra !== "" && !Number.isNaN(Number(ra)) ? Number(ra) : null;
  const summary = `${response.status} ${response.statusText || ""}`.trim();
  return new WhipError(
    `WHIP request failed: ${summary}${code ? ` (${code})` : ""}${detail ? `: ${detail}` : ""}`,
    { status: response.status, code, detail, retryAfter },
  );
}

/**
 * A WHIP client for one session at a time. It extends EventTarget and dispatches:
 *  - "track" (RTCTrackEvent-like: `event.track`, `event.streams`) for the server's media,
 *  - "connectionstatechange" (`event.detail.state`) mirroring `pc.connectionState`,
 *  - "request" (`event.detail` = {method, url, status, ms}) after every HTTP request.
 */
export class WhipClient extends EventTarget {
  /**
   * @param {string} endpointUrl absolute WHIP endpoint, e.g. "http://127.0.0.1:8001/whip"
   * @param {object} [options]
   * @param {string} [options.token] bearer token, sent as `Authorization: Bearer <token>`
   * @param {Record<string,string>} [options.headers] extra headers for every request
   * @param {RTCIceServer[]} [options.iceServers] default [] (host candidates only; no STUN wait)
   * @param {number} [options.iceGatheringTimeoutMs] max wait for ICE gathering, default 2000
   * @param {number} [options.requestTimeoutMs] max wait for the POST answer, default 15000
   */
  constructor(endpointUrl, options = {}) {
    super();
    this.endpointUrl = new URL(endpointUrl, globalThis.location?.href).href;
    this.token = options.token || "";
    this.headers = { ...(options.headers || {}) };
    this.iceServers = options.iceServers || [];
    this.iceGatheringTimeoutMs = options.iceGatheringTimeoutMs ?? 2000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 15000;
    /** @type {RTCPeerConnection|null} */
    this.pc = null;
    this.sessionId = null;
    this.sessionToken = ""; // X-Session-Token: this session's secret, for its DELETE and routes
    this.location = null; // absolute URL of the session resource
    this.etag = null;
    this.clientRef = null;
    this.resumeToken = null; // X-Resume-Token of the 201 that created the session (never logged)
    this.receiveAudio = true;
    /** A MediaStream with the server's audio track (available right after connect()). */
    this.remoteStream = null;
  }

  _headers(extra = {}) {
    const h = { ...this.headers, ...extra };
    if (this.token) h["Authorization"] = `Bearer ${this.token}`;
    return h;
  }

  async _fetch(method, url, init = {}) {
    const started = performance.now();
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), this.requestTimeoutMs);
    let response;
    try {
      response = await fetch(url, { ...init, method, signal: ctrl.signal, mode: "cors" });
    } catch (err) {
      const timedOut = err?.name === "AbortError";
      throw new WhipError(
        timedOut
          ? `No answer from ${url} within ${this.requestTimeoutMs} ms`
          : `Cannot reach ${url} (${err?.message || err})`,
        { status: 0, code: timedOut ? "timeout" : "unreachable", cause: err },
      );
    } finally {
      clearTimeout(timer);
    }
    this.dispatchEvent(
      new CustomEvent("request", {
        detail: { method, url, status: response.status, ms: performance.now() - started },
      }),
    );
    return response;
  }

  _waitForIceGathering(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        pc.removeEventListener("icecandidate", onCandidate);
        resolve();
      };
      const check = () => pc.iceGatheringState === "complete" && done();
      const onCandidate = (e) => e.candidate === null && done();
      const timer = setTimeout(done, this.iceGatheringTimeoutMs);
      pc.addEventListener("icegatheringstatechange", check);
      pc.addEventListener("icecandidate", onCandidate);
    });
  }

  /**
   * Offer `mediaStream`'s audio to the server and wait for its answer.
   * @param {MediaStream|null} mediaStream the local audio (null: receive only)
   * @param {object} [options]
   * @param {boolean} [options.receiveAudio] also receive the server's audio (sendrecv), default true
   * @param {string} [options.clientRef] temporary ID sent as `X-Session-ID` (default tmp-<uuid>)
   * @returns {Promise<{sessionId: string|null, location: string|null, etag: string|null, pc: RTCPeerConnection, clientRef: string}>}
   */
  async connect(mediaStream, { receiveAudio = true, clientRef } = {}) {
    if (this.pc) throw new WhipError("already connected; call disconnect() first", { code: "busy" });
    this.clientRef = clientRef || temporaryId();
    this.receiveAudio = receiveAudio;
    return this._offer(mediaStream, { "X-Session-ID": this.clientRef });
  }

  /**
   * Reattach this client's session after its media server went away (a rollout, a crash):
   * a fresh peer connection, offered with `X-Session-ID` and the `X-Resume-Token` the first
   * answer carried. The server keeps the session ID and its history; `remoteStream` is new.
   * A WhipError with status 404/409 means the session cannot come back (ended, expired).
   */
  async resume(mediaStream) {
    if (!this.sessionId || !this.resumeToken) {
      throw new WhipError("nothing to resume: no session ID or resume token", { code: "no_session" });
    }
    this._closePeer(); // the old connection is dead; no DELETE: the session must live on
    return this._offer(mediaStream, { "X-Session-ID": this.sessionId, "X-Resume-Token": this.resumeToken });
  }

  async _offer(mediaStream, idHeaders) {
    const receiveAudio = this.receiveAudio ?? true;
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
    this.pc = pc;
    this.remoteStream = new MediaStream();

    pc.addEventListener("track", (e) => {
      if (!this.remoteStream.getTracks().includes(e.track)) this.remoteStream.addTrack(e.track);
      this.dispatchEvent(Object.assign(new Event("track"), { track: e.track, streams: e.streams, transceiver: e.transceiver }));
    });
    pc.addEventListener("connectionstatechange", () => {
      if (this.pc !== pc) return; // a replaced connection (resumed) no longer speaks for the client
      this.dispatchEvent(new CustomEvent("connectionstatechange", { detail: { state: pc.connectionState } }));
    });

    try {
      const track = mediaStream?.getAudioTracks?.()[0];
      let transceiver;
      if (track) {
        transceiver = pc.addTransceiver(track, {
          direction: receiveAudio ? "sendrecv" : "sendonly",
          streams: [mediaStream],
        });
      } else if (receiveAudio) {
        transceiver = pc.addTransceiver("audio", { direction: "recvonly" });
      } else {
        throw new WhipError("nothing to send or receive", { code: "no_media" });
      }
      if (receiveAudio) this.remoteStream.addTrack(transceiver.receiver.track);

      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      await this._waitForIceGathering(pc);

      const response = await this._fetch("POST", this.endpointUrl, {
        headers: this._headers({
          "Content-Type": "application/sdp",
          Accept: "application/sdp",
          ...idHeaders,
        }),
        body: pc.localDescription.sdp,
      });
      if (response.status !== 201 && response.status !== 200) throw await readError(response);

      const answer = await response.text();
      const loc = response.headers.get("Location");
      this.location = loc ? new URL(loc, this.endpointUrl).href : null;
      this.sessionId =
        response.headers.get("X-Session-ID") ||
        (this.location ? decodeURIComponent(this.location.split("/").filter(Boolean).pop()) : null);
      this.etag = response.headers.get("ETag");
      this.sessionToken = response.headers.get("X-Session-Token") || this.sessionToken; // a resume keeps it
      this.resumeToken = response.headers.get("X-Resume-Token") || this.resumeToken; // given once, at creation
      if (!this.location && this.sessionId) {
        this.location = new URL(`${this.endpointUrl.replace(/\/$/, "")}/${encodeURIComponent(this.sessionId)}`).href;
      }
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
      return { sessionId: this.sessionId, sessionToken: this.sessionToken, location: this.location, etag: this.etag, pc, clientRef: this.clientRef };
    } catch (err) {
      if (this.pc === pc) this._closePeer();
      throw err;
    }
  }

  _closePeer() {
    if (this.pc) {
      try {
        this.pc.close();
      } catch {
        /* already closed */
      }
    }
    this.pc = null;
  }

  /**
   * End the session: `DELETE` on the Location (a 404 means it had already ended), then close
   * the peer connection. Local tracks are not stopped: they belong to the caller.
   * @returns {Promise<number|null>} the DELETE status, or null if there was nothing to delete
   */
  async disconnect() {
    const url = this.location;
    this.location = null;
    let status = null;
    try {
      if (url) {
        const own = this.sessionToken ? { "X-Session-Token": this.sessionToken } : {};
        const response = await this._fetch("DELETE", url, { headers: this._headers(own) });
        status = response.status;
        if (!response.ok && response.status !== 404) throw await readError(response);
      }
    } finally {
      this._closePeer();
      this.sessionId = null;
      this.resumeToken = null;
    }
    return status;
  }
}
