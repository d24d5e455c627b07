"""`voxline bench --answers`: are the agent's answers right, and was the question heard right?

The questions of `answers_corpus` are spoken (espeak-ng voices and Piper, in rotation) and asked
over real WebRTC calls to `voxline run` (or `--server`), one call per item: a follow-up's
turns are said in one call, each after the last reply was heard out. Each configuration of
`--answers-config` (a JSON object: name -> settings) gets a server of its own, so system
prompts and generation settings are compared in one run on the same audio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voxline.audio.resample import resample_s16
from voxline.bench.answers_corpus import GROUPS, Item, answer_right, heard_right, select, words
from voxline.bench.answers_report import answers_report, answers_report_text
from voxline.bench.stats import emit_report
from voxline.bench.system import ServerProcess, free_port, machine_info
from voxline.bench.voices import VOICES, Speaker

LEAD_IN_S = 0.3
GAP_S = 0.2


def speak_items(items: Sequence[Item]) -> list[tuple[str, list[np.ndarray]]]:
    """Each item's turns as 48 kHz mono s16, all in one voice (item i gets VOICES[i % 8])."""
    speak = Speaker()
    out = []
    for i, item in enumerate(items):
        voice = VOICES[i % len(VOICES)]
        lead = np.zeros(int(LEAD_IN_S * 48_000), dtype=np.int16)
        audio = [np.concatenate([lead, np.frombuffer(resample_s16(speak(t.say, voice), 16_000, 48_000),
                                                     dtype=np.int16)]) for t in item.turns]
        out.append((voice[0], audio))
    return out


def answered(event: dict[str, Any], after: int) -> bool:
    """The event that ends a turn from `after` on: its final reply text, an error, or no words heard."""
    from voxline.agent.conversation import has_words

    if not isinstance(event.get("turn"), int) or event["turn"] < after:
        return False
    kind = event.get("type")
    return bool((kind == "agent.text" and event.get("final")) or kind == "error"
                or (kind == "transcript.final" and not has_words(str(event.get("text", "")))))


async def ask(server: str, item: Item, audio: Sequence[np.ndarray], timeout: float) -> tuple[list[Any], str | None]:
    """One call: say each turn after the last reply was heard out; the last reply only until its
    text is final and its first sound could be played. Returns the turns' results and an error."""
    from voxline.client.audio import JITTER_WINDOW_S
    from voxline.client.call import last_turn, turn_results
    from voxline.client.caller import Caller

    caller = Caller(server)
    asked: list[tuple[int, float]] = []
    error = None
    try:
        await caller.connect()
        await caller.client.set_listening(True)
        await asyncio.sleep(0.4)
        for k, samples in enumerate(audio):
            after = last_turn(caller.events) + 1
            end = await caller.say(samples)
            asked.append((after, end))
            if k + 1 < len(audio):
                if not await caller.wait_reply_done(after=after, timeout=timeout):
                    error = f"no complete reply to turn {k + 1} within {timeout:.0f} s"
                    break
                continue
            if await caller.wait_for(lambda e, a=after: answered(e, a), timeout) is None:
                error = f"no reply within {timeout:.0f} s"
                break
            deadline = time.time() + 5.0  # the reply's first sound, and a jitter window after it
            while time.time() < deadline:
                first = caller.first_sound_after(end)
                if first is not None and time.time() > first + JITTER_WINDOW_S + 0.1:
                    break
                await asyncio.sleep(0.05)
    except (TimeoutError, OSError) as exc:
        error = str(exc) or type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - a failed call is a failed item, reported; the run goes on
        error = f"{type(exc).__name__}: {exc}"
    finally:
        await caller.close()
    return turn_results(caller, asked), error


async def run_answers(server: str, items: Sequence[Item], spoken: Sequence[tuple[str, list[np.ndarray]]],
                      timeout: float, config: str = "default") -> list[dict[str, Any]]:
    """One row per turn said: what was heard and answered, whether that was right, the latency."""
    rows: list[dict[str, Any]] = []
    for n, (item, (voice, audio)) in enumerate(zip(items, spoken, strict=True), 1):
        results, error = await ask(server, item, audio, timeout)
        heard_so_far = True
        for k, turn in enumerate(item.turns):
            got = results[k] if k < len(results) else None
            transcript, reply = (got.transcript, got.reply_text) if got else ("", "")
            heard_so_far = heard_so_far and got is not None and heard_right(turn.say, transcript)
            scored = bool(turn.answers)
            rows.append({
                "config": config, "group": item.group, "split": item.split, "item": n, "turn": k + 1,
                "voice": voice, "said": turn.say, "transcript": transcript, "reply": reply,
                "scored": scored, "right": scored and answer_right(turn, reply), "heard_right": heard_so_far,
                "reply_words": len(words(reply)) if reply else None,
                "voice_to_voice_ms": got.voice_to_voice_ms if got else None,
                "llm_first_token_ms": got.metrics.get("llm_first_token_ms") if got else None,
                "error": error if got is None or k + 1 == len(item.turns) else None})
        last = rows[-1]
        print(f"  [{config} {n}/{len(items)}] {last['said']!r} heard {last['transcript']!r} -> {last['reply'][:80]!r}"
              f" {'right' if last['right'] else 'WRONG'}{'' if last['heard_right'] else ' (misheard)'}",
              file=sys.stderr, flush=True)
        await asyncio.sleep(0.3)
    return rows


def load_configs(path: str | None) -> dict[str, dict[str, Any]]:
    """`--answers-config FILE`: {"name": {"setting": value, ...}, ...}; none: the defaults."""
    if not path:
        return {"default": {}}
    try:
        configs = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"--answers-config {path}: {exc}") from None
    if not isinstance(configs, dict) or not configs or not all(isinstance(v, dict) for v in configs.values()):
        raise RuntimeError(f"--answers-config {path}: expected a JSON object of name -> {{setting: value}}")
    from voxline.config import Settings

    for name, overrides in configs.items():
        unknown = sorted(set(overrides) - set(Settings.model_fields))
        if unknown:
            raise RuntimeError(f"--answers-config {path}: {name!r} sets unknown settings {', '.join(unknown)}")
    return configs


def config_flags(overrides: dict[str, Any]) -> list[str]:
    """The settings as `voxline run` flags (checked by Settings there, like any flag)."""
    flags: list[str] = []
    for name, value in overrides.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        else:
            flags += [flag, value if isinstance(value, str) else json.dumps(value)]
    return flags


async def answers_main(args: argparse.Namespace) -> int:
    machine = machine_info()
    items = select(getattr(args, "answers_split", "test"), getattr(args, "answers_limit", 0))
    configs = load_configs(getattr(args, "answers_config", None))
    if args.server is not None and configs != {"default": {}}:
        raise RuntimeError("--answers-config starts a server per configuration; it cannot be used with --server")
    spoken = speak_items(items)
    work = Path(tempfile.mkdtemp(prefix="voxline-answers-"))
    rows: list[dict[str, Any]] = []
    settings: dict[str, Any] = {"split": getattr(args, "answers_split", "test"), "items": len(items),
                                "configs": configs, "server": args.server or "voxline run, one per configuration"}
    for name, overrides in configs.items():
        server, proc = args.server, None
        if server is None:
            port = free_port()
            server = f"http://127.0.0.1:{port}"
            cmd = [sys.executable, "-m", "voxline", "run", "--port", str(port), "--log-format", "text",
                   "--session-create-rate-per-min", "10000", *config_flags(overrides)]
            proc = ServerProcess(cmd, work / f"server-{len(rows)}.log", server)
            print(f"[{name}] starting voxline run {' '.join(cmd[4:])} (log: {proc.log_path})", file=sys.stderr,
                  flush=True)
            await proc.start()
        try:
            rows += await run_answers(server, items, spoken, args.timeout, name)
        finally:
            if proc is not None:
                proc.stop()
    report = answers_report(rows, list(configs), GROUPS, machine, settings)
    emit_report(report, args, answers_report_text)
    return 0
