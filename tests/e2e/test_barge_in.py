"""Barge-in heard from the page: real Chromium, a real `voxline run` with the real models.

The agent greets the caller as the call connects (one long fixed sentence, so there is
always agent audio to stop), and the fake microphone repeats a question every ~8 s. The
server starts with listening off (`listen_on_connect=false`); once the page plays the
greeting, the test presses the page's own "Start listening" just after a repetition ended,
so the next one cuts into the greeting whatever the machine's speed (the greeting's
synthesis took 2-16 s here). From the page's side (what it plays, read by an AnalyserNode
on the received track, like the page's own agent meter) README's barge-in promise is
checked: playout pauses within one frame of the speech start the server's VAD reports, the
interruption is real (cleared, not resumed), and the question is answered aloud.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import _launch, make_wav, run_server
from .test_page import KEY_WORDS, button, start

pytestmark = pytest.mark.e2e

# One sentence without commas: the TTS makes all of it (~20 s of audio) before any plays, so at
# the caller's question there is always greeting queued to stop even where synthesis is slower
# than real time (sentence by sentence, the queue ran dry between sentences at load 12), and
# no pause of Piper's at a comma (~0.4 s) can be where the caller cuts in.
GREETING = ("Hello and welcome to the voxline test line where you can ask me about the weather or the capital "
            "of a country or a simple sum or anything else that you would like to know and you can take all "
            "the time that you need because I will be listening to you for the whole of this call from the "
            "very first word to the very last and I will answer every question as soon as you have finished.")
QUESTION = "What is the capital of France?"
REPEAT_GAP_S = 6.0  # silence after each repetition of the question
LOUD = 500 / 32768  # a sample this loud is agent audio (the Python clients' SPEECH_THRESHOLD)
# The bound on what the page may still play after the speech start, besides its own jitter
# buffer (measured by the page's stats, below): the one 20 ms frame in flight when the pause
# arrives; the pause marker's trip in the server (agent -> bus -> playout, as in
# tests/integration/test_voice_loop.py); the meter (the analyser's 256 samples, its 5 ms poll
# and WebAudio's input buffering, 10-20 ms measured).
FRAME_S = 0.02
DELIVERY_MARGIN_S = 0.06
METER_S = 0.04
BARGE_IN_MIN_SPEECH_S = 1.0  # the default barge_in_min_speech_ms
VAD_WINDOW_S = 0.032

# What the page plays, from the moment it is injected: [time (epoch ms), peak] every 5 ms,
# and the receiver's jitter buffer counters from getStats() (Chromium refreshes them ~50 ms).
SAMPLER_JS = """(LOUD) => {
  const now = () => performance.timeOrigin + performance.now();
  const pc = window.voxline.pc;
  const rx = pc.getReceivers().find((r) => r.track && r.track.kind === "audio");
  const mic = pc.getSenders().find((s) => s.track && s.track.kind === "audio").track;
  window.__heard = [];
  window.__jitter = [];
  window.__micLoud = 0;  // the last moment the microphone was loud (epoch ms)
  const ctx = new AudioContext();
  const tap = (track) => {
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 256;
    ctx.createMediaStreamSource(new MediaStream([track])).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    return () => {
      analyser.getFloatTimeDomainData(buf);
      let peak = 0;
      for (let i = 0; i < buf.length; i++) peak = Math.max(peak, Math.abs(buf[i]));
      return peak;
    };
  };
  const agent = tap(rx.track);
  const caller = tap(mic);
  setInterval(() => {
    const t = now();
    window.__heard.push([t, agent()]);
    if (caller() > LOUD) window.__micLoud = t;
  }, 5);
  let busy = false;
  setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      (await rx.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp") {
          window.__jitter.push([s.timestamp, s.jitterBufferDelay, s.jitterBufferEmittedCount,
                                s.packetsReceived, s.lastPacketReceivedTimestamp]);
        }
      });
    } finally {
      busy = false;
    }
  }, 10);
}"""


def first(events: list[dict[str, Any]], pred: Any) -> dict[str, Any] | None:
    return next((e for e in events if pred(e)), None)


def jitter_buffer_s(jitter: list[list[float]], since_ms: float, until_ms: float) -> float:
    """The page's jitter buffer delay (s): the average time the samples it played in the window
    spent in the buffer, from the receiver's own counters."""
    window = [j for j in jitter if since_ms <= j[0] <= until_ms]
    assert len(window) >= 2 and window[-1][2] > window[0][2], f"no jitter buffer stats in the window: {window}"
    return (window[-1][1] - window[0][1]) / (window[-1][2] - window[0][2])


def timeline(events: list[dict[str, Any]], heard: list[list[float]], t0: float) -> str:
    """Events and the loud moments the page played, for a failure's message."""
    lines = [f"{e['ts'] - t0:7.3f} {e['type']} {e.get('turn', '')} {e.get('state') or e.get('message') or ''}"
             for e in events if e["type"] not in ("agent.text", "turn.metrics")]
    loud = [t / 1000 - t0 for t, peak in heard if peak > LOUD]
    spans, start = [], None
    for a, b in zip(loud, loud[1:] + [None]):
        start = a if start is None else start
        if b is None or b - a > 0.1:
            spans.append(f"{start:.3f}-{a:.3f}")
            start = None
    return "\n".join(lines + ["page heard agent audio (s): " + ", ".join(spans)])


def test_the_page_stops_hearing_the_greeting_within_a_frame_of_the_callers_speech(
        static_server, artifacts, tmp_path_factory, playwright_instance, pages):
    wav = make_wav(artifacts / "barge-in.wav", QUESTION, lead_s=0.3, tail_s=REPEAT_GAP_S)
    browser = _launch(playwright_instance, wav)
    try:
        with run_server("barge-in", artifacts, tmp_path_factory.mktemp("barge-in"), VOXLINE_GREETING=GREETING,
                        VOXLINE_LISTEN_ON_CONNECT="false", VOXLINE_LLM_MAX_TOKENS="48") as base:
            page = pages.open(browser, f"{base}/")
            start(page)
            page.wait_for_function("() => window.voxline.pc && window.voxline.pc.getReceivers()"
                                   ".some((r) => r.track && r.track.kind === 'audio')", timeout=30_000)
            page.evaluate(SAMPLER_JS, LOUD)
            # The greeting plays, and the next repetition of the question is 1.5-3 s away: listen now.
            page.wait_for_function(f"""() => {{ const t = performance.timeOrigin + performance.now();
                return window.__heard.some(([_, p]) => p > {LOUD}) && window.__micLoud > 0
                    && t - window.__micLoud > 3000 && t - window.__micLoud < 4500; }}""", timeout=120_000)
            button(page, "Start listening").click()
            page.wait_for_function("() => window.voxline.events.some((e) => e.type === 'transcript.final')",
                                   timeout=60_000)
            button(page, "Stop listening").click()  # the next repetitions would cut into the answer
            page.wait_for_function("() => window.voxline.events.some((e) => e.type === 'agent.text' && e.final"
                                   " && e.turn >= 2)", timeout=120_000)
            reply_js = ("() => { const s = window.voxline.events.find((e) => e.type === 'state' && "
                        "e.state === 'agent_speaking' && e.turn >= 2); return !!s && window.__heard.some("
                        f"([t, p]) => t > s.ts * 1000 && p > {LOUD}); }}")
            page.wait_for_function(reply_js, timeout=30_000)
            events = page.evaluate("() => window.voxline.events")
            heard = page.evaluate("() => window.__heard")
            jitter = page.evaluate("() => window.__jitter")
    finally:
        browser.close()
    (artifacts / "barge-in-page.json").write_text(json.dumps({"events": events, "heard": heard, "jitter": jitter}))

    t0 = events[0]["ts"]
    story = timeline(events, heard, t0)
    interruption = first(events, lambda e: e["type"] == "interruption")
    assert interruption is not None and interruption["turn"] == 1, f"the greeting was not interrupted:\n{story}"
    speech = [e for e in events if e["type"] == "log" and e["message"] == "speech started"
              and e["ts"] <= interruption["ts"]]
    assert speech, f"no speech start before the interruption:\n{story}"
    began = speech[-1]["ts"]
    reply = first(events, lambda e: e["type"] == "state" and e["state"] == "agent_speaking" and e.get("turn", 0) >= 2)
    assert reply is not None, story
    loud = [(t / 1000, peak) for t, peak in heard if peak > LOUD]
    assert any(began - 0.3 <= t < began for t, _ in loud), (
        f"the page was not playing the greeting when the caller's speech started: nothing to stop\n{story}")

    # 1. Playout pauses within one frame: the page hears nothing of the greeting sent later.
    jb = jitter_buffer_s(jitter, 1000 * (began - 1.0), 1000 * began)
    bound = began + FRAME_S + DELIVERY_MARGIN_S + jb + METER_S
    last = max(t for t, _ in loud if t < reply["ts"])
    late = [round(1000 * (t - began)) for t, _ in loud if bound < t < reply["ts"]]
    assert not late, (f"the page played greeting audio up to {1000 * (last - began):.0f} ms after the speech "
                      f"start (bound {1000 * (bound - began):.0f} ms, of which the page's jitter buffer "
                      f"{1000 * jb:.0f}); late samples at (ms): {late[:20]}\n{story}")
    # 2. The interruption is real: cleared, not resumed (the check above runs up to the reply),
    #    at most barge_in_min_speech_ms (plus one VAD window) after the speech start.
    cleared_s = interruption["ts"] - began
    assert cleared_s <= BARGE_IN_MIN_SPEECH_S + VAD_WINDOW_S + DELIVERY_MARGIN_S, (
        f"the interruption was cleared {1000 * cleared_s:.0f} ms after the speech start\n{story}")
    # 3. The question is answered, in text and aloud.
    final = first(events, lambda e: e["type"] == "transcript.final" and e["ts"] > began)
    assert final is not None and KEY_WORDS.search(final["text"]), f"the question was not heard:\n{story}"
    answer = first(events, lambda e: e["type"] == "agent.text" and e.get("final") and e.get("turn", 0) >= 2)
    assert answer is not None and answer["text"].strip(), story
    assert any(t > reply["ts"] for t, _ in loud), f"the answer was not heard:\n{story}"
    print(f"\nthe page heard the greeting until {1000 * (last - began):.0f} ms after the speech start "
          f"(bound {1000 * (bound - began):.0f} ms, jitter buffer {1000 * jb:.0f} ms); interruption "
          f"{1000 * (interruption['ts'] - began):.0f} ms after it; answer heard")
