"""The page carries its call over when its media server goes away (a rollout), in Chromium.

Two `voxline run` servers share sessions through a real redis-server, behind one URL (a
switching proxy on loopback, as a load balancer). The first is given SIGTERM mid-call with
a one-second drain: the page sees its peer connection go, offers again with its resume
token, and lands on the second with the same session ID, its history and its transcript;
the agent there answers the next question.
"""

from __future__ import annotations

import re
import signal

import pytest
from playwright.sync_api import expect

from .conftest import free_port, http_json, run_server_process
from .proxy import SwitchingProxy
from .test_page import COUNT_FINALS_JS, KEY_WORDS, secret_of, start

pytestmark = pytest.mark.e2e

PILL_WATCH_JS = """() => {
  window.__pills = [];
  const el = document.getElementById("conn-status");
  new MutationObserver(() => window.__pills.push(el.textContent.trim()))
    .observe(el, { subtree: true, childList: true, characterData: true, attributes: true });
}"""
AGENT_FINALS_JS = "() => window.voxline.events.filter((e) => e.type === 'agent.text' && e.final).length"


def test_the_page_resumes_its_call_on_another_server_when_its_own_goes_away(
        redis_url, browser, pages, artifacts, tmp_path_factory):
    proxy_port = free_port()
    env = dict(VOXLINE_SESSION_STORE="redis", VOXLINE_REDIS_URL=redis_url, VOXLINE_DRAIN_TIMEOUT_S="1",
               VOXLINE_CORS_ORIGINS=f"http://127.0.0.1:{proxy_port}")
    with (run_server_process("resume-a", artifacts, tmp_path_factory.mktemp("resume-a"),
                             VOXLINE_NODE_ID="resume-a", **env) as (a, proc_a),
          run_server_process("resume-b", artifacts, tmp_path_factory.mktemp("resume-b"),
                             VOXLINE_NODE_ID="resume-b", **env) as (b, _),
          SwitchingProxy(proxy_port, a) as proxy):
        page = pages.open(browser, f"{proxy.url}/")
        sid = start(page)
        secret = secret_of(page)
        # A first turn on A (the fake microphone asks again ~28 s later).
        page.wait_for_function(f"() => ({AGENT_FINALS_JS})() >= 1", timeout=120_000)
        expect(page.locator(".bubble.user:not(.partial)").first).to_contain_text(KEY_WORDS)
        status, on_a = http_json("GET", f"{a}/sessions/{sid}", secret=secret)
        assert status == 200 and on_a["node"] == "resume-a", on_a
        answered_on_a = page.evaluate(AGENT_FINALS_JS)
        bubbles_on_a = page.locator(".bubble").count()

        # A rollout: the load balancer stops sending to A, A drains for 1 s and exits.
        page.evaluate(PILL_WATCH_JS)  # the resume can take a quarter of a second: record every label shown
        proxy.switch(b)
        proc_a.send_signal(signal.SIGTERM)
        page.wait_for_function("() => window.voxline.resumes >= 1 && window.voxline.phase === 'connected'",
                               timeout=60_000)
        assert proc_a.wait(30) == 0
        assert page.evaluate("() => window.voxline.sessionId") == sid  # the same session
        assert secret_of(page) == secret  # and its secret: a resume keeps it
        expect(page.locator("#conn-status")).to_contain_text("Connected", timeout=20_000)
        assert any("Reconnecting" in t for t in page.evaluate("() => window.__pills")), page.evaluate(
            "() => window.__pills")  # the caller was told
        assert page.locator(".bubble").count() >= bubbles_on_a  # the transcript stayed on screen
        expect(page.locator("#log")).to_contain_text(re.compile(rf"Session {sid} resumed"))

        status, on_b = http_json("GET", f"{b}/sessions/{sid}", secret=secret)
        assert status == 200 and on_b["node"] == "resume-b" and on_b["state"] == "connected", on_b
        assert any(KEY_WORDS.search(m["content"]) for m in on_b["history"] if m["role"] == "user"), on_b
        # The agent on B answers the next question, over the resumed connection.
        finals = page.evaluate(COUNT_FINALS_JS)
        page.wait_for_function(f"() => ({COUNT_FINALS_JS})() > {finals}", timeout=120_000)
        page.wait_for_function(f"() => ({AGENT_FINALS_JS})() > {answered_on_a}", timeout=120_000)
        page.screenshot(path=str(artifacts / "resumed.png"), full_page=True)
        status, _ = http_json("DELETE", f"{b}/whip/{sid}", secret=secret)
        assert status == 200
