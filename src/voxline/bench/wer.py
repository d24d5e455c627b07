"""`voxline bench --wer`: is a caller heard as well as their audio file would be?

A corpus of spoken questions (24 texts, each in 2 of 11 voices: espeak-ng in eight accents
and voices at 140-190 words a minute, Piper at three speeds; 48 utterances)
is transcribed twice with the server's own STT settings: from the file (16 kHz, straight into
Whisper) and over real calls (WebRTC, Opus, the server's turn detection and pipeline: the
`transcript.final` it emits). Between the two, the call path is replayed offline
(`voxline.bench.wer_replay`: the caller's codec, then the turn's cut at each phase of the
packets against the VAD's windows), so each word the call changed is set on a stage. The word
error rates are printed side by side, with every utterance the file and the call heard
differently.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxline.audio.resample import resample_s16
from voxline.bench.stats import emit_report, format_table
from voxline.bench.system import ServerProcess, free_port, machine_info
from voxline.bench.voices import MORE_VOICES, VOICES, Speaker, Voice

TEXTS = (
    "How many legs does a spider have?", "What color is the sky on a clear day?", "Who wrote Romeo and Juliet?",
    "What is two plus two?", "What is the capital of France?", "Can you recommend a good breakfast?",
    "How many days are in a week?", "How do I boil an egg?", "Why is the ocean salty?",
    "Please turn off the lights in the kitchen.", "What is the tallest mountain in the world?",
    "How far away is the moon?", "What should I wear when it rains?", "Tell me a joke about a cat.",
    "How long does it take to fly to London?", "What time does the bank open tomorrow?",
    "Can you set a timer for ten minutes?", "Where do penguins live?",
    "Remind me to call my sister at six.", "What is the weather like in Paris?", "How do you spell necessary?",
    "Play some quiet music for dinner.", "Which train goes to the airport?", "How much sugar is in a teaspoon?",
)
WER_VOICES = VOICES + MORE_VOICES


@dataclass
class Utterance:
    text: str
    voice: str
    pcm16k: bytes


def corpus_plan(texts: Sequence[str] = TEXTS, per_text: int = 2) -> list[tuple[str, Voice]]:
    """Each text in `per_text` different voices, rotating through WER_VOICES."""
    return [(text, WER_VOICES[(i + 5 * k) % len(WER_VOICES)]) for i, text in enumerate(texts) for k in range(per_text)]


def corpus(texts: Sequence[str] = TEXTS, per_text: int = 2) -> list[Utterance]:
    """The utterances of `corpus_plan` (48 by default), spoken."""
    speak = Speaker()
    return [Utterance(text, voice[0], speak(text, voice)) for text, voice in corpus_plan(texts, per_text)]


def normalize(text: str) -> list[str]:
    text = text.lower().replace("-", " ")
    for digit, word in (("10", "ten"), ("2", "two"), ("4", "four"), ("6", "six"), ("7", "seven"), ("8", "eight")):
        text = re.sub(rf"\b{digit}\b", word, text)
    return re.findall(r"[a-z0-9']+", text)


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words): the numerator and denominator of the word error rate."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    row = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        diagonal, row[0] = row[0], i
        for j in range(1, len(hyp) + 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (ref[i - 1] != hyp[j - 1]))
    return row[len(hyp)], len(ref)


def wer(pairs: Sequence[tuple[str, str]]) -> float | None:
    edits = words = 0
    for ref, hyp in pairs:
        e, n = word_errors(ref, hyp)
        edits, words = edits + e, words + n
    return round(100 * edits / words, 1) if words else None


async def call_transcripts(server: str, utterances: Sequence[Utterance], timeout: float) -> list[str | None]:
    """What the server heard of each utterance, one call (a fresh session) each."""
    from voxline.client.audio import RATE
    from voxline.client.call import call

    heard: list[str | None] = []
    for n, u in enumerate(utterances, 1):
        lead = np.zeros(int(0.3 * RATE), dtype=np.int16)
        samples = np.concatenate([lead, np.frombuffer(resample_s16(u.pcm16k, 16_000, RATE), dtype=np.int16)])
        result = await call(server, samples, timeout=timeout, split_silence_s=0)
        heard.append(result.transcript if result.turns else None)
        print(f"  [{n}/{len(utterances)}] {u.voice}: {result.transcript!r}", file=sys.stderr, flush=True)
    return heard


def cut_wer(rows: Sequence[dict[str, Any]]) -> float | None:
    """The mean over the replay's phases of the WER of the turns cut at that phase (each phase
    has the same reference words, so this is the WER of all the phases' cuts pooled)."""
    phases = min((len(r.get("cuts") or []) for r in rows), default=0)
    return wer([(r["text"], r["cuts"][k]) for r in rows for k in range(phases)]) if phases else None


def wer_report(utterances: Sequence[Utterance], from_file: Sequence[str], over_call: Sequence[str | None],
               machine: dict[str, Any], settings: dict[str, Any],
               replayed: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    rows: list[dict[str, Any]] = [{"text": u.text, "voice": u.voice, "file": f, "call": c}
            for u, f, c in zip(utterances, from_file, over_call, strict=True)]
    for r, rep in zip(rows, replayed or (), strict=False):
        r.update(codec=rep["codec"], cuts=rep["cuts"], splits=rep["splits"])

    def stages(some: list[dict[str, Any]]) -> dict[str, float | None]:
        out = {"file": wer([(r["text"], r["file"]) for r in some]),
               "call": wer([(r["text"], r["call"] or "") for r in some])}
        if replayed:
            out.update(codec=wer([(r["text"], r["codec"]) for r in some]), cut=cut_wer(some))
        return out

    voices = sorted({u.voice for u in utterances})
    by_voice = {v: stages([r for r in rows if r["voice"] == v]) for v in voices}
    every = stages(rows)
    report = {"utterances": len(rows), "wer_file_pct": every["file"], "wer_call_pct": every["call"],
              "calls_failed": sum(1 for r in rows if r["call"] is None), "by_voice": by_voice,
              "rows": rows, "machine": machine, "settings": settings}
    if replayed:
        report.update(wer_codec_pct=every["codec"], wer_cut_pct=every["cut"],
                      replay_splits=sum(r.get("splits", 0) for r in rows))
    return report


def wer_report_text(report: dict[str, Any]) -> str:
    replayed = "wer_cut_pct" in report
    keys = ("file", "codec", "cut", "call") if replayed else ("file", "call")
    names = {"file": "WER file %", "codec": "codec %", "cut": "cut % (mean of phases)", "call": "WER call %"}
    every = {"file": report["wer_file_pct"], "call": report["wer_call_pct"],
             "codec": report.get("wer_codec_pct"), "cut": report.get("wer_cut_pct")}
    table = format_table([[v, *(f"{w.get(k)}" for k in keys)] for v, w in report["by_voice"].items()]
                         + [["all", *(f"{every[k]}" for k in keys)]], ["voice", *(names[k] for k in keys)])
    lines = [f"Word error rate, {report['utterances']} utterances (Whisper tiny.en, the server's settings)", "",
             table, ""]
    if replayed and None not in every.values():
        step = [f"{b} {every[b] - every[a]:+.1f}" for a, b in zip(keys, keys[1:], strict=False)]
        lines += [f"call - file {every['call'] - every['file']:+.1f} points: " + ", ".join(step)
                  + f" (the turn split in {report['replay_splits']} replayed cuts)", ""]
    differ = [r for r in report["rows"] if normalize(r["file"]) != normalize(r["call"] or "")]
    if differ:
        lines.append(f"heard differently ({len(differ)}):")
        for r in differ:
            lines.append(f"  {r['voice']:24} {r['text']!r}\n  {'':24} file {r['file']!r}")
            if "cuts" in r:
                same = sum(normalize(c) == normalize(r["call"] or "") for c in r["cuts"])
                lines.append(f"  {'':24} codec {r['codec']!r}\n  {'':24} cut  {same} of {len(r['cuts'])} phases"
                             " heard what the call heard")
            lines.append(f"  {'':24} call {r['call']!r}")
    if report["calls_failed"]:
        lines.append(f"{report['calls_failed']} calls gave no transcript")
    return "\n".join(lines)


async def wer_main(args: argparse.Namespace) -> int:
    from voxline.config import Settings
    from voxline.services.stt.whisper import WhisperSTT

    machine = machine_info()
    limit = getattr(args, "wer_limit", 0) or None
    utterances = corpus()[:limit]
    stt = WhisperSTT(beam_size=Settings().stt_beam_size)  # the server's defaults (beam, the 10 s window)
    from_file = [await stt.transcribe(u.pcm16k) for u in utterances]
    replayed = None
    if not getattr(args, "wer_no_replay", False):
        from voxline.bench.wer_replay import replay, turn_config
        from voxline.services.vad import SileroModel

        print(f"replaying the call path offline ({len(utterances)} utterances)", file=sys.stderr, flush=True)
        s = Settings()
        replayed = await asyncio.to_thread(replay, utterances, lambda pcm: str(stt.transcribe_sync(pcm)),
                                           SileroModel(), turn_config(s), s.rtc_opus_max_bitrate or 32_000,
                                           s.rtc_opus_max_playback_rate or 48_000)  # 0: not asked
    await stt.close()
    work = Path(tempfile.mkdtemp(prefix="voxline-wer-"))
    server, proc = args.server, None
    settings: dict[str, Any] = {"voices": sorted({u.voice for u in utterances})}
    if server is None:
        port = free_port()
        server = f"http://127.0.0.1:{port}"
        # Only the transcripts count: short replies keep each call short.
        cmd = [sys.executable, "-m", "voxline", "run", "--port", str(port), "--log-format", "text",
               "--session-create-rate-per-min", "10000", "--llm-max-tokens", "4"]
        proc = ServerProcess(cmd, work / "server.log", server)
        print(f"starting {' '.join(cmd[1:])} (log: {proc.log_path})", file=sys.stderr, flush=True)
        await proc.start()
        settings["server_cmd"] = " ".join(cmd[1:])
    settings["server"] = server
    try:
        over_call = await call_transcripts(server, utterances, args.timeout)
    finally:
        if proc is not None:
            proc.stop()
    emit_report(wer_report(utterances, from_file, over_call, machine, settings, replayed), args, wer_report_text)
    return 0
