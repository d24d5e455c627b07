"""The voxline page in a real Chromium against a real `voxline run`.

Few, decisive tests: the error messages (no server needed), one full conversation at the
server's own origin (session ID, transcript, agent reply, agent audio received, latency,
503 at the session limit, hang-up), the cross-origin case, and Stop listening.
"""

from __future__ import annotations

import os
import re
import shutil
import time

import pytest
from playwright.sync_api import expect

from .conftest import ROOT, TOKEN, free_port, http_json

pytestmark = pytest.mark.e2e

SESSION_ID = re.compile(r"^session_\d+_[A-Za-z0-9_-]+$")
KEY_WORDS = re.compile(r"france|capital", re.I)

STATS_JS = """async () => {
  const pc = window.voxline.pc;
  if (!pc) return null;
  let out = null;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      out = { bytes: s.bytesReceived || 0, packets: s.packetsReceived || 0,
              energy: s.totalAudioEnergy || 0, level: s.audioLevel || 0 };
    }
  });
  return out;
}"""

COUNT_FINALS_JS = """() => window.voxline.events.filter((e) => e.type === "transcript.final").length"""


def button(page, name: str):
    return page.get_by_role("button", name=re.compile(rf"^{re.escape(name)}"))


def start(page) -> str:
    button(page, "Start conversation").click()
    page.wait_for_function("() => window.voxline.sessionId", timeout=30_000)
    sid = page.evaluate("() => window.voxline.sessionId")
    assert SESSION_ID.match(sid), sid
    return sid


def wait_event(page, predicate_js: str, timeout_ms: int):
    page.wait_for_function(f"() => window.voxline.events.some({predicate_js})", timeout=timeout_ms)


def hang_up_and_check(page, server: str, sid: str, token: str = ""):
    location = page.evaluate("() => window.voxline.location")
    assert location and location.endswith(f"/whip/{sid}"), location
    secret = secret_of(page)
    button(page, "Hang up").click()
    expect(page.locator("#conn-status")).to_contain_text("Session ended", timeout=10_000)
    expect(button(page, "Start conversation")).to_be_enabled()
    status, body = http_json("GET", f"{server}/sessions/{sid}", token=token, secret=secret)
    assert status == 404 or (status == 200 and body.get("state") == "ended"), (status, body)
    status, body = http_json("DELETE", location, token=token, secret=secret)
    assert status == 404, (status, body)


def secret_of(page) -> str:
    """The session's secret the page holds (X-Session-Token of its WHIP answer)."""
    secret = page.evaluate("() => window.voxline.sessionToken")
    assert secret, "the page holds no session secret (X-Session-Token not exposed by CORS?)"
    return secret


# --------------------------------------------------------------------------- errors
def test_microphone_denied_shows_clear_message(browser, static_server, pages):
    page = pages.open(browser, f"{static_server}/?server=http://127.0.0.1:9", microphone=False)
    button(page, "Start conversation").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Microphone access denied")
    expect(alert).to_contain_text("Allow microphone access")
    expect(button(page, "Start conversation")).to_be_enabled()
    expect(page.locator("#log")).to_contain_text("NotAllowedError")


def test_server_unreachable_shows_clear_message(browser, static_server, pages):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    page = pages.open(browser, f"{static_server}/?server={dead}")
    button(page, "Start conversation").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Server unreachable", timeout=20_000)
    expect(alert).to_contain_text(dead)
    expect(page.locator("#conn-status")).to_contain_text("Disconnected")
    expect(button(page, "Start conversation")).to_be_enabled()
    # The microphone is released again after the failure.
    assert page.evaluate("() => window.voxline.pc") is None


# --------------------------------------------------------------------------- conversation
def test_conversation_same_origin(server, browser, pages, artifacts):
    page = pages.open(browser, f"{server}/")
    expect(page).to_have_title(re.compile("voxline"))
    sid = start(page)

    # 1. The session ID comes from the server; the temporary one is only the client_ref.
    expect(page.locator("#log")).to_contain_text(
        re.compile(rf"Backend session ID received: {sid} \(replaces temporary tmp-[0-9a-f-]+\)")
    )
    status, info = http_json("GET", f"{server}/sessions/{sid}", secret=secret_of(page))
    assert status == 200, info
    assert info["session_id"] == sid
    assert str(info.get("client_ref", "")).startswith("tmp-"), info
    expect(page.locator("#session-id")).to_have_text(sid)
    expect(page.locator("#listening-badge")).to_have_text("Listening", timeout=10_000)
    expect(page.locator("#conn-status")).to_contain_text("Connected", timeout=15_000)

    # 2. The spoken question is transcribed, and the agent answers in text...
    expect(page.locator(".bubble.user:not(.partial)").first).to_contain_text(KEY_WORDS, timeout=90_000)
    wait_event(page, "(e) => e.type === 'agent.text' && e.final && e.text.trim()", 120_000)
    expect(page.locator(".bubble.agent").first).not_to_be_empty()
    assert page.locator(".bubble.agent .text").first.inner_text().strip()

    # 3. ...and in audio, on the same peer connection: real, non-silent samples arrive.
    deadline = time.monotonic() + 60
    stats = None
    while time.monotonic() < deadline:
        stats = page.evaluate(STATS_JS)
        if stats and stats["bytes"] > 0 and stats["energy"] > 0:
            break
        page.wait_for_timeout(250)
    assert stats and stats["bytes"] > 0 and stats["energy"] > 0, stats
    assert page.evaluate("() => document.getElementById('remote-audio').srcObject !== null")

    # 4. The turn's latency breakdown is shown, with the browser-side voice-to-voice
    #    estimate from the two level meters (microphone speech end -> agent audio onset).
    card = page.locator(".turn-card").first
    expect(card).to_be_visible(timeout=30_000)
    expect(card.locator(".total")).to_have_text(re.compile(r"^\d+ ms voice-to-voice$"))
    expect(card.locator("table.stages tr").first).to_be_visible()
    expect(card.locator(".browser-v2v")).to_have_text(re.compile(r"heard in this browser after ~\d+ ms"), timeout=30_000)
    assert page.evaluate("() => window.voxline.micPeak") > 0.2  # the meter saw the question
    # The pipeline log shows server stages too, not only client lines.
    expect(page.locator("#log tr[data-source='server']").first).to_be_attached()

    # 5. The server allows one session here: a second caller gets a clear 503 message.
    other = pages.open(browser, f"{server}/")
    button(other, "Start conversation").click()
    expect(other.get_by_role("alert")).to_contain_text("session limit", timeout=20_000)
    expect(other.locator("#log")).to_contain_text("503")
    assert other.evaluate("() => window.voxline.sessionId") is None

    page.wait_for_timeout(500)
    shot = artifacts / "conversation.png"
    page.screenshot(path=str(shot), full_page=True)
    docs_shot = ROOT / "docs" / "screenshot.png"
    if os.environ.get("VOXLINE_UPDATE_SCREENSHOT") or not docs_shot.exists():
        docs_shot.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, docs_shot)

    # 6. Hang up ends the session on the server.
    hang_up_and_check(page, server, sid)


def test_cross_origin_page_with_token(token_server, static_server, browser, pages):
    """The page on another origin, against a server that requires a bearer token: every
    request carries `Authorization` (so each needs a CORS preflight), the WebSocket `?token=`."""
    server = token_server
    anonymous = pages.open(browser, f"{static_server}/?server={server}")
    button(anonymous, "Start conversation").click()
    expect(anonymous.get_by_role("alert")).to_contain_text("Not authorised", timeout=20_000)
    expect(anonymous.locator("#log")).to_contain_text("401")

    page = pages.open(browser, f"{static_server}/?server={server}&token={TOKEN}")
    expect(page.locator("#server-url")).to_have_text(server)
    focused = lambda: page.evaluate("() => document.activeElement && document.activeElement.id")  # noqa: E731

    # Keyboard only: Tab to Start conversation, Enter.
    for _ in range(5):
        page.keyboard.press("Tab")
        if focused() == "btn-start":
            break
    assert focused() == "btn-start"
    page.keyboard.press("Enter")
    page.wait_for_function("() => window.voxline.sessionId", timeout=30_000)
    sid = page.evaluate("() => window.voxline.sessionId")  # needs Access-Control-Expose-Headers
    assert SESSION_ID.match(sid), sid
    expect(page.locator("#log")).to_contain_text(f"Backend session ID received: {sid}")
    # Events arrive over the cross-origin WebSocket.
    wait_event(page, "(e) => e.session_id && ['state', 'listening', 'log'].includes(e.type)", 20_000)
    # A JSON POST with a CORS preflight, by keyboard: the focus went on to Stop listening.
    expect(page.locator("#listening-badge")).to_have_text("Listening", timeout=10_000)
    expect(page.locator("#btn-listen-stop")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#listening-badge")).to_have_text("Not listening", timeout=10_000)
    expect(page.locator("#btn-listen-start")).to_be_focused()
    status, info = http_json("GET", f"{server}/sessions/{sid}", token=TOKEN, secret=secret_of(page))
    assert status == 200 and info["listening"] is False, (status, info)
    # DELETE with a CORS preflight.
    hang_up_and_check(page, server, sid, token=TOKEN)


def test_stop_listening_stops_new_turns(server, loop_browser, pages, artifacts):
    """The fake microphone repeats the question every ~7 s."""
    page = pages.open(loop_browser, f"{server}/")
    sid = start(page)
    page.wait_for_function(f"() => ({COUNT_FINALS_JS})() >= 1", timeout=90_000)

    button(page, "Stop listening").click()
    expect(page.locator("#listening-badge")).to_have_text("Not listening", timeout=10_000)
    expect(button(page, "Start listening")).to_be_enabled()
    status, info = http_json("GET", f"{server}/sessions/{sid}", secret=secret_of(page))
    assert status == 200 and info["listening"] is False, (status, info)

    page.wait_for_timeout(3_000)  # a turn already being transcribed may still finish
    before = page.evaluate(COUNT_FINALS_JS)
    page.wait_for_timeout(12_000)  # the question plays whole at least once more
    assert page.evaluate(COUNT_FINALS_JS) == before, "a transcript arrived while not listening"

    button(page, "Start listening").click()
    expect(page.locator("#listening-badge")).to_have_text("Listening", timeout=10_000)
    page.wait_for_function(f"() => ({COUNT_FINALS_JS})() > {before}", timeout=90_000)
    page.screenshot(path=str(artifacts / "stop-listening.png"), full_page=True)

    hang_up_and_check(page, server, sid)


def test_whip_client_module(server, browser, pages):
    """whip.js on its own, as another page would use it: receive-only and send-only
    sessions, the server's IDs, an idempotent disconnect, and WhipError's fields."""
    page = pages.open(browser, f"{server}/")
    result = page.evaluate(
        """async () => {
          const { WhipClient, WhipError } = await import("./whip.js");
          const out = {};
          for (const mode of ["recvonly", "sendonly"]) {
            const client = new WhipClient("/whip");
            const stream = mode === "sendonly" ? await navigator.mediaDevices.getUserMedia({ audio: true }) : null;
            const res = await client.connect(stream, { receiveAudio: mode === "recvonly", clientRef: "tmp-module-test" });
            const direction = res.pc.getTransceivers()[0].currentDirection;
            out[mode] = {
              sessionId: res.sessionId, location: res.location, etag: res.etag, direction,
              remoteTracks: client.remoteStream.getTracks().length,
              deleted: await client.disconnect(), again: await client.disconnect(), pc: client.pc,
            };
            stream?.getTracks().forEach((t) => t.stop());
          }
          try {
            await new WhipClient("/no-such-endpoint").connect(null);
          } catch (err) {
            out.error = { isWhipError: err instanceof WhipError, status: err.status, code: err.code, detail: err.detail };
          }
          return out;
        }"""
    )
    for mode, direction, tracks in (("recvonly", "recvonly", 1), ("sendonly", "sendonly", 0)):
        r = result[mode]
        assert SESSION_ID.match(r["sessionId"]), r
        assert r["location"] == f"{server}/whip/{r['sessionId']}", r
        assert r["etag"], r
        assert r["direction"] == direction, r
        assert r["remoteTracks"] == tracks, r
        assert r["deleted"] == 200 and r["again"] is None and r["pc"] is None, r
    assert result["recvonly"]["sessionId"] != result["sendonly"]["sessionId"]
    err = result["error"]
    assert err["isWhipError"] and err["status"] in (404, 405) and err["code"] and err["detail"], err


def test_the_page_takes_its_ice_servers_from_the_server(server, browser, pages):
    """Behind NAT the page needs the server's TURN servers (GET /ice-servers) in its
    RTCPeerConnection; a server with none configured gives [] (host candidates only)."""
    page = pages.open(browser, f"{server}/")
    script = """async () => { const { whipClient } = await import("./api.js"); return (await whipClient()).iceServers; }"""
    assert page.evaluate(script) == []
    turn = {"urls": ["turn:127.0.0.1:3478"], "username": "1800000000:voxline", "credential": "c2VjcmV0"}
    page.route("**/ice-servers", lambda route: route.fulfill(json={"iceServers": [turn]}))
    assert page.evaluate(script) == [turn]
