"""`voxline bench`: voice-to-voice latency and concurrent-session capacity, measured by a caller.

Latency mode (default) starts `voxline run` (or uses `--server`), speaks a set of espeak-ng
questions one call at a time over real WebRTC, and reports the voice-to-voice latency the
caller hears (end of the question's speech in the audio sent -> first non-silent reply
sample received, both on this machine's clock) with the server's own stage breakdown from its
`turn.metrics` events beside it. The server's timestamps never replace the caller's measure.

Capacity mode (`--sessions N`) starts `benchmarks/capacity_server.py` (real WebRTC, bus, VAD
and agent; FIXED-RESPONSE model back-ends that exist only for the benchmark) as its own
process, drives N concurrent callers from client subprocesses, and reports sessions
connected, turns answered, late and lost frames, and the server's and clients' CPU and RSS
read from /proc once a second.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

QUESTIONS = (
    "What is the capital of France?",
    "How many days are in a week?",
    "What color is the sky?",
    "Can you recommend a good breakfast?",
    "What should I wear when it rains?",
    "How do I boil an egg?",
)

# (label in the table, key in the server's turn.metrics); transport is computed here.
STAGES: tuple[tuple[str, str], ...] = (
    ("end_of_turn", "end_of_turn_ms"),
    ("stt", "stt_ms"),
    ("llm_first_token", "llm_first_token_ms"),
    ("first_sentence", "first_sentence_ms"),
    ("tts_first_audio", "tts_first_audio_ms"),
    ("server_voice_to_voice", "server_voice_to_voice_ms"),
    ("transport", ""),
)
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
REPO = Path(__file__).resolve().parents[3]


# -- statistics (pure; unit-tested) -------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between ranks; None if empty."""
    data = sorted(float(v) for v in values if v is not None)
    if not data:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in 0..100, not {q}")
    pos = (len(data) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return round(data[lo] + (data[hi] - data[lo]) * (pos - lo), 1)


def summarize(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """p50, p95, min, max and n of the values that are not None."""
    data = [float(v) for v in values if v is not None]
    return {"p50": percentile(data, 50), "p95": percentile(data, 95),
            "min": round(min(data), 1) if data else None, "max": round(max(data), 1) if data else None,
            "n": len(data)}


def stage_breakdown(turns: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | int | None]]:
    """Per-stage p50/p95 (and n) over the successful turns' server metrics and transport."""
    ok = [t for t in turns if t.get("ok")]
    out: dict[str, dict[str, float | int | None]] = {}
    for label, key in STAGES:
        vals = [t.get("transport_ms") if not key else (t.get("server") or {}).get(key) for t in ok]
        vals = [v for v in vals if isinstance(v, (int, float))]
        out[label] = {"p50": percentile(vals, 50), "p95": percentile(vals, 95), "n": len(vals)}
    return out


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.0f}{unit}"
    return f"{v}{unit}"


def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain Markdown table (readable in a terminal, pasteable into RESULTS.md)."""
    cells = [[str(h) for h in header]] + [[_fmt(c) if not isinstance(c, str) else c for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in cells[1:]])


def latency_report_text(report: dict[str, Any]) -> str:
    """The latency report as text: machine, voice-to-voice summary, stage breakdown, failures."""
    v = report["voice_to_voice_ms"]
    m = report["machine"]
    lines = [f"voxline bench (latency) - {m.get('date')}",
             f"machine: {m.get('cores')} cores, {m.get('cpu_model')}, {m.get('ram_gb')} GB RAM, "
             f"load avg {m.get('loadavg_start')} at start; machine CPU busy during calls p50 "
             f"{report.get('machine_busy_pct_p50')} % of one core ({m.get('cores')} cores = {100 * (m.get('cores') or 1)} %)",
             f"server: {report['settings'].get('server')} ({report['settings'].get('server_kind')})",
             "",
             "voice-to-voice (client: end of question speech sent -> first reply sound received)",
             format_table([[v["p50"], v["p95"], v["min"], v["max"], v["n"], report["failed"]]],
                          ["p50 ms", "p95 ms", "min ms", "max ms", "n", "failed"]),
             "",
             "stage breakdown (server turn.metrics; transport = client v2v - server v2v)",
             format_table([[label, s["p50"], s["p95"], s["n"]] for label, s in report["stages_ms"].items()],
                          ["stage", "p50 ms", "p95 ms", "n"])]
    bad = [t for t in report["turns"] if not t.get("ok")]
    if bad:
        lines += ["", f"failed calls ({len(bad)}):"]
        lines += [f"  - {t['question']!r} (repeat {t['repeat']}): {t.get('error')}" for t in bad]
    return "\n".join(lines)


def capacity_row(run: dict[str, Any]) -> list[Any]:
    """One row of the capacity table from one run's report."""
    s, c = run["server"], run["clients"]
    return [run["sessions"], f"{c['connected']}/{run['sessions']}", f"{c['turns_answered']}/{c['turns_asked']}",
            c["v2v_ms"]["p50"], c["v2v_ms"]["p95"], s.get("frames_late"), c["rtp_packets_lost"],
            c["frame_gaps_over_100ms"], s.get("cpu_pct"), s.get("rss_mb"), s.get("cpu_pct_per_session"),
            s.get("rss_mb_per_session"), c.get("cpu_pct"), s.get("other_processes_cpu_pct")]


CAPACITY_HEADER = ["N", "connected", "answered/asked", "v2v p50", "v2v p95", "frames late (srv)",
                   "RTP lost (cli)", "gaps>100ms (cli)", "server CPU %", "server RSS MB",
                   "CPU %/session", "RSS MB/session", "clients CPU %", "others CPU %"]


def capacity_report_text(report: dict[str, Any]) -> str:
    m = report["machine"]
    return "\n".join([
        f"voxline bench (capacity) - {m.get('date')}",
        f"machine: {m.get('cores')} cores, {m.get('cpu_model')}, {m.get('ram_gb')} GB RAM, "
        f"load avg {m.get('loadavg_start')} at start",
        f"server: {report['settings'].get('server_kind')}",
        "CPU % is of one core (200 % = both cores); per-session figures are (loaded - idle) / N; "
        "others = machine busy - server - clients - this conductor (other people's work).",
        format_table([capacity_row(report)], CAPACITY_HEADER),
        "frames late while other processes took > {others_threshold_pct:.0f} % CPU: "
        "{frames_late_while_others_busy} in {seconds_others_busy} s; otherwise: "
        "{frames_late_while_others_quiet} in {seconds_others_quiet} s".format(
            **report["server"].get("late_by_contention", {"others_threshold_pct": 0, "frames_late_while_others_busy": "-",
                                                           "seconds_others_busy": "-", "frames_late_while_others_quiet": "-",
                                                           "seconds_others_quiet": "-"}))])


# -- machine and processes ----------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    """Cores, CPU model (/proc/cpuinfo), RAM (/proc/meminfo), load, kernel, Python, date."""
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        ram_gb = round(kb / 1024 / 1024, 1)
    except (OSError, AttributeError, ValueError):
        pass
    return {"cores": os.cpu_count(), "cpu_model": cpu_model, "ram_gb": ram_gb,
            "loadavg_start": round(os.getloadavg()[0], 2), "kernel": platform.release(),
            "python": platform.python_version(),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def proc_sample(pid: int) -> tuple[float, float] | None:
    """(CPU seconds user+system, RSS MB) of `pid` from /proc, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields_ = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields_[11]) + int(fields_[12])) / CLK_TCK  # utime, stime (fields 14, 15)
    m = re.search(r"VmRSS:\s+(\d+)", status)
    return cpu, (int(m.group(1)) / 1024 if m else 0.0)


def system_cpu() -> tuple[float, float] | None:
    """(busy seconds, idle seconds) of the whole machine, summed over cores, from /proc/stat."""
    try:
        parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)  # idle + iowait
    busy = sum(parts[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / CLK_TCK, idle / CLK_TCK


def machine_busy_pct(a: tuple[float, float] | None, b: tuple[float, float] | None) -> float | None:
    """Machine CPU busy between two `system_cpu()` readings, in % of one core (cores x 100 = all)."""
    if a is None or b is None:
        return None
    busy, idle = b[0] - a[0], b[1] - a[1]
    total = busy + idle
    return round(busy / total * 100 * (os.cpu_count() or 1), 1) if total > 0 else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A server run as a subprocess with its output in a log file; stopped with SIGTERM."""

    cmd: list[str]
    log_path: Path
    url: str
    proc: subprocess.Popen[bytes] | None = None

    async def start(self, timeout: float = 180.0) -> None:
        import aiohttp

        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO),
                                     start_new_session=True)
        log.close()
        deadline = time.time() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log_path}")
                try:
                    async with http.get(self.url + "/healthz") as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    pass
                await asyncio.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server not healthy within {timeout:.0f} s; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def make_questions(directory: Path, texts: Sequence[str] = QUESTIONS) -> list[tuple[str, Path]]:
    """Speak each text with espeak-ng into a 16-bit WAV in `directory`."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    out = []
    for i, text in enumerate(texts):
        path = directory / f"q{i}.wav"
        subprocess.run([espeak, "-w", str(path), text], check=True, timeout=30, capture_output=True)
        out.append((text, path))
    return out


# -- latency mode -------------------------------------------------------------------------------
async def run_latency(server: str, questions: Sequence[tuple[str, np.ndarray]], repeats: int,
                      timeout: float, pause_s: float = 0.5) -> list[dict[str, Any]]:
    """Call `server` once per question x repeat, sequentially, a fresh session each time."""
    from voxline.client.call import call

    turns: list[dict[str, Any]] = []
    for rep in range(repeats):
        for text, samples in questions:
            started = time.time()
            cpu0 = system_cpu()
            try:
                result = await asyncio.wait_for(call(server, samples, timeout=timeout), timeout + 30)
            except asyncio.TimeoutError:
                turns.append({"question": text, "repeat": rep, "ok": False,
                              "error": f"call did not finish within {timeout + 30:.0f} s"})
                continue
            server_m = result.turn_metrics[-1] if result.turn_metrics else {}
            v2v = result.voice_to_voice_ms
            sv2v = server_m.get("server_voice_to_voice_ms")
            ok = result.error is None and v2v is not None and bool(result.reply_text)
            error = result.error or (None if ok else
                                     "no reply sound after the question" if v2v is None else "no reply text")
            turns.append({
                "question": text, "repeat": rep, "ok": ok, "error": error,
                "session_id": result.session_id, "transcript": result.transcript, "reply_text": result.reply_text,
                "voice_to_voice_ms": v2v,
                "transport_ms": round(v2v - sv2v, 1) if v2v is not None and isinstance(sv2v, (int, float)) else None,
                "server": server_m, "server_turns": len(result.turn_metrics),
                "reply_audio_s": round(result.reply_audio.size / 48_000, 2),
                "call_s": round(time.time() - started, 1),
                "machine_busy_pct": machine_busy_pct(cpu0, system_cpu()),
                "loadavg_1m": round(os.getloadavg()[0], 2),
            })
            print(f"  [{len(turns)}/{repeats * len(questions)}] {text!r}: "
                  f"{'%.0f ms' % v2v if v2v is not None else 'n/a'}"
                  f"{'' if ok else '  FAILED: ' + str(error)}", file=sys.stderr, flush=True)
            await asyncio.sleep(pause_s)
    return turns


def latency_report(turns: list[dict[str, Any]], machine: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The one JSON object of a latency run."""
    ok = [t for t in turns if t.get("ok")]
    return {"voice_to_voice_ms": summarize([t["voice_to_voice_ms"] for t in ok]),
            "stages_ms": stage_breakdown(turns),
            "failed": len(turns) - len(ok),
            "machine_busy_pct_p50": percentile([t["machine_busy_pct"] for t in turns
                                                if t.get("machine_busy_pct") is not None], 50),
            "turns": turns, "machine": machine, "settings": settings}


async def latency_main(args: argparse.Namespace) -> int:
    from voxline.client.audio import read_wav_mono

    machine = machine_info()
    work = Path(tempfile.mkdtemp(prefix="voxline-bench-"))
    questions = [(text, read_wav_mono(path)) for text, path in make_questions(work)]
    server = args.server
    proc: ServerProcess | None = None
    settings: dict[str, Any] = {"repeats": args.repeats, "questions": [q for q, _ in questions],
                                "timeout_s": args.timeout,
                                "env": {k: v for k, v in os.environ.items() if k.startswith("VOXLINE_")}}
    if server is None:
        port = free_port()
        server = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "voxline", "run", "--port", str(port), "--log-format", "text",
               "--session-create-rate-per-min", "10000"]
        proc = ServerProcess(cmd, work / "server.log", server)
        print(f"starting {' '.join(cmd[1:])} (log: {proc.log_path})", file=sys.stderr, flush=True)
        await proc.start()
        settings.update(server_kind="voxline run (embedded default models), started by the benchmark",
                        server_cmd=" ".join(cmd[1:]), server_log=str(proc.log_path))
    else:
        settings["server_kind"] = "external (--server)"
    settings["server"] = server
    try:
        turns = await run_latency(server, questions, args.repeats, args.timeout)
    finally:
        if proc is not None:
            settings["server_exit_code"] = proc.stop()
    report = latency_report(turns, machine, settings)
    _emit(report, args, latency_report_text)
    return 0 if report["failed"] == 0 and report["voice_to_voice_ms"]["n"] else 1


def _emit(report: dict[str, Any], args: argparse.Namespace, text: Any) -> None:
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report) if args.json else text(report), flush=True)


# -- capacity mode: one client worker process -------------------------------------------------
@dataclass
class SessionStats:
    """What one concurrent caller saw."""

    connected: bool = False
    error: str | None = None
    turns_asked: int = 0
    turns_answered: int = 0
    v2v_ms: list[float] = field(default_factory=list)
    frames: int = 0
    first_frame: float | None = None
    last_frame: float | None = None
    gaps_over_100ms: int = 0
    max_gap_ms: float = 0.0
    rtp_received: int = 0
    rtp_lost: int = 0
    jitter_ms: float | None = None
    server_rtp_lost: int | None = None  # what the server reported losing of ours (RTCP)


def _gap_recorder(stats: SessionStats) -> Any:
    """A Recorder that keeps no audio, only sound times, frame counts and arrival gaps."""
    from aiortc.mediastreams import MediaStreamError

    from voxline.client.audio import Recorder

    class GapRecorder(Recorder):
        async def run(self, track: Any) -> None:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    return
                arrived = time.time()
                pcm = frame.to_ndarray().reshape(-1)  # s16 interleaved: any channel loud is sound
                self.frames += 1
                stats.frames += 1
                if stats.last_frame is not None:
                    gap = (arrived - stats.last_frame) * 1000
                    stats.max_gap_ms = max(stats.max_gap_ms, gap)
                    stats.gaps_over_100ms += gap > 100
                else:
                    stats.first_frame = arrived
                stats.last_frame = arrived
                loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > self.threshold)
                if loud.size:
                    channels = len(frame.layout.channels)
                    self.sounds.append(arrived + (loud[0] // channels) / frame.sample_rate)

    return GapRecorder()


async def _one_session(server: str, questions: Sequence[np.ndarray], connect_at: float, talk_from: float,
                       end_at: float, gap_s: float, stats: SessionStats, index: int) -> None:
    from voxline.client.caller import Caller

    await asyncio.sleep(max(0.0, connect_at - time.time()))
    caller = Caller(server)
    caller.recorder = _gap_recorder(stats)
    try:
        await caller.connect(timeout=20)
        stats.connected = True
        await caller.client.set_listening(True)
        await asyncio.sleep(max(0.0, talk_from - time.time()) + (index % 10) * gap_s / 10)
        turn = 0
        while time.time() < end_at - 3:  # each turn needs ~3 s: question, reply
            q = questions[(index + turn) % len(questions)]
            turn += 1
            stats.turns_asked += 1
            said = await caller.say(q)
            done = await caller.wait_reply_done(after=turn, timeout=max(1.0, min(15.0, end_at + 10 - time.time())))
            first = caller.first_sound_after(said)
            if done and first is not None:
                stats.turns_answered += 1
                stats.v2v_ms.append(round((first - said) * 1000, 1))
            # Later questions are counted by the server's turn numbers: follow them.
            turn = max(turn, max((e.get("turn", 0) for e in caller.of_type("turn.metrics")), default=0))
            await asyncio.sleep(gap_s)
        await asyncio.sleep(max(0.0, end_at - time.time()))
        report = await caller.client.pc.getStats()
        for s in report.values():
            if s.type == "inbound-rtp":
                stats.rtp_received += s.packetsReceived
                stats.rtp_lost += max(0, s.packetsLost)
                stats.jitter_ms = round(s.jitter / 48, 1)
            elif s.type == "remote-inbound-rtp":
                stats.server_rtp_lost = (stats.server_rtp_lost or 0) + max(0, s.packetsLost)
    except Exception as exc:  # noqa: BLE001 - one caller's failure is a result, not a crash
        stats.error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        try:
            await asyncio.wait_for(caller.close(), 10)
        except Exception:  # noqa: BLE001
            pass


async def worker_main(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run this worker's share of the concurrent callers; returns per-session stats."""
    from voxline.client.audio import read_wav_mono

    questions = [read_wav_mono(p) for p in cfg["questions"]]
    all_stats = [SessionStats() for _ in cfg["indices"]]
    tasks = [asyncio.create_task(_one_session(
        cfg["server"], questions, cfg["start_at"] + i * cfg["ramp_interval_s"], cfg["talk_from"], cfg["end_at"],
        cfg["gap_s"], st, i)) for i, st in zip(cfg["indices"], all_stats)]
    hard = cfg["end_at"] + 45 - time.time()
    done, pending = await asyncio.wait(tasks, timeout=hard)
    for t in pending:
        t.cancel()
    for st, t in zip(all_stats, tasks):
        if t in pending and st.error is None:
            st.error = "did not finish in time"
    return {"sessions": [st.__dict__ for st in all_stats]}


# -- capacity mode: the conductor ---------------------------------------------------------------
def _metric(text: str, name: str) -> float | None:
    m = re.search(rf"^{re.escape(name)} ([0-9.eE+-]+)$", text, re.M)
    return float(m.group(1)) if m else None


class Sampler:
    """Once a second: CPU seconds and RSS of the server and client processes, and server /metrics."""

    def __init__(self, server_url: str, server_pid: int | None, client_pids: list[int]) -> None:
        self.server_url = server_url
        self.server_pid = server_pid
        self.client_pids = client_pids
        self.samples: list[dict[str, Any]] = []

    async def sample(self, http: Any) -> dict[str, Any]:
        row: dict[str, Any] = {"t": time.time(), "system": system_cpu(), "conductor": proc_sample(os.getpid())}
        if self.server_pid is not None:
            row["server"] = proc_sample(self.server_pid)
        row["clients"] = [proc_sample(p) for p in self.client_pids]
        try:
            async with http.get(self.server_url + "/metrics") as resp:
                text = await resp.text()
            row["frames_late"] = _metric(text, "voxline_playout_frames_late_total")
            row["active"] = _metric(text, "voxline_sessions_active")
        except Exception:  # noqa: BLE001 - a busy server may miss a scrape; that is recorded
            row["frames_late"] = row["active"] = None
        self.samples.append(row)
        return row

    async def run(self, until: float, stop: asyncio.Event) -> None:
        import aiohttp

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while time.time() < until and not stop.is_set():
                await self.sample(http)
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass

    def window(self, t0: float, t1: float) -> list[dict[str, Any]]:
        return [s for s in self.samples if t0 <= s["t"] <= t1]


def cpu_pct(rows: list[dict[str, Any]], key: str, index: int | None = None) -> float | None:
    """Average CPU % (of one core) between the first and last sample of `rows`."""
    pts = [(r["t"], (r[key] if index is None else r[key][index])) for r in rows]
    pts = [(t, s) for t, s in pts if s is not None]
    if len(pts) < 2 or pts[-1][0] <= pts[0][0]:
        return None
    return round((pts[-1][1][0] - pts[0][1][0]) / (pts[-1][0] - pts[0][0]) * 100, 1)


def timeline(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per sampling interval: server frames late, and CPU % of server, clients, machine, others."""
    out = []
    for a, b in zip(rows, rows[1:]):
        dt = b["t"] - a["t"]
        if dt <= 0:
            continue
        pct = lambda x, y: round((y[0] - x[0]) / dt * 100, 1) if x and y else None  # noqa: E731
        srv = pct(a.get("server"), b.get("server"))
        cli = [pct(x, y) for x, y in zip(a.get("clients") or [], b.get("clients") or [])]
        me = pct(a.get("conductor"), b.get("conductor"))
        mach = machine_busy_pct(a.get("system"), b.get("system"))
        late = (b["frames_late"] - a["frames_late"]
                if b.get("frames_late") is not None and a.get("frames_late") is not None else None)
        ours = (srv or 0) + sum(c or 0 for c in cli) + (me or 0)
        out.append({"t": b["t"], "frames_late": late, "server_cpu_pct": srv, "clients_cpu_pct": round(sum(
            c or 0 for c in cli), 1), "machine_cpu_pct": mach,
            "others_cpu_pct": round(mach - ours, 1) if mach is not None else None})
    return out


def late_by_contention(tl: list[dict[str, Any]], others_threshold: float = 20.0) -> dict[str, Any]:
    """Server frames late split by whether other processes took > `others_threshold` % CPU that second."""
    busy = [r for r in tl if (r["others_cpu_pct"] or 0) > others_threshold]
    quiet = [r for r in tl if (r["others_cpu_pct"] or 0) <= others_threshold]
    total = lambda rs: int(sum(r["frames_late"] or 0 for r in rs))  # noqa: E731
    return {"others_threshold_pct": others_threshold,
            "seconds_others_busy": len(busy), "frames_late_while_others_busy": total(busy),
            "seconds_others_quiet": len(quiet), "frames_late_while_others_quiet": total(quiet)}


def capacity_summary(n: int, sessions: list[dict[str, Any]], idle: list[dict[str, Any]],
                     loaded: list[dict[str, Any]], n_clients: int) -> dict[str, Any]:
    """Server and client figures of one capacity run (pure, given the samples)."""
    server: dict[str, Any] = {}
    if idle and idle[0].get("server") is not None:
        idle_cpu = cpu_pct(idle, "server")
        busy_cpu = cpu_pct(loaded, "server")
        rss = [r["server"][1] for r in loaded if r.get("server")]
        idle_rss = idle[-1]["server"][1]
        server = {"cpu_pct_idle": idle_cpu, "cpu_pct": busy_cpu,
                  "rss_mb_idle": round(idle_rss, 1), "rss_mb": round(max(rss), 1) if rss else None}
        if busy_cpu is not None and idle_cpu is not None and n:
            server["cpu_pct_per_session"] = round((busy_cpu - idle_cpu) / n, 2)
        if rss and n:
            server["rss_mb_per_session"] = round((max(rss) - idle_rss) / n, 2)
    late = [r["frames_late"] for r in loaded if r.get("frames_late") is not None]
    server["frames_late"] = int(max(late) - min(late)) if len(late) >= 2 else None
    server["frames_late_total"] = int(max(late)) if late else None
    server["sessions_active_max"] = max((r["active"] or 0 for r in loaded), default=None)
    server["metrics_scrapes_missed"] = sum(1 for r in loaded if r.get("frames_late") is None)
    client_cpu = [cpu_pct(loaded, "clients", i) for i in range(n_clients)]
    sys_rows = [r for r in loaded if r.get("system")]
    machine = machine_busy_pct(sys_rows[0]["system"], sys_rows[-1]["system"]) if len(sys_rows) >= 2 else None
    ours = (server.get("cpu_pct") or 0) + sum(c or 0 for c in client_cpu) + (cpu_pct(loaded, "conductor") or 0)
    server["machine_cpu_pct"] = machine
    server["late_by_contention"] = late_by_contention(timeline(loaded))
    server["other_processes_cpu_pct"] = round(machine - ours, 1) if machine is not None else None
    v2v = [v for s in sessions for v in s["v2v_ms"]]
    expected = sum(round((s["last_frame"] - s["first_frame"]) * 50) + 1 for s in sessions
                   if s["first_frame"] is not None and s["last_frame"] is not None)
    received = sum(s["frames"] for s in sessions)
    clients = {
        "connected": sum(s["connected"] for s in sessions),
        "errors": sorted({s["error"] for s in sessions if s["error"]}),
        "sessions_failed": sum(1 for s in sessions if s["error"] or not s["connected"]),
        "turns_asked": sum(s["turns_asked"] for s in sessions),
        "turns_answered": sum(s["turns_answered"] for s in sessions),
        "v2v_ms": summarize(v2v),
        "frames_received": received, "frames_expected_50_per_s": expected,
        "frames_missing": max(0, expected - received),
        "frame_gaps_over_100ms": sum(s["gaps_over_100ms"] for s in sessions),
        "max_frame_gap_ms": round(max((s["max_gap_ms"] for s in sessions), default=0.0), 1),
        "rtp_packets_received": sum(s["rtp_received"] for s in sessions),
        "rtp_packets_lost": sum(s["rtp_lost"] for s in sessions),
        "server_reported_rtp_lost": sum(s["server_rtp_lost"] or 0 for s in sessions),
        "cpu_pct": round(sum(c for c in client_cpu if c is not None), 1) if any(c is not None for c in client_cpu)
        else None,
        "cpu_pct_per_process": client_cpu,
    }
    return {"server": server, "clients": clients}


async def capacity_main(args: argparse.Namespace) -> int:
    n = args.sessions
    machine = machine_info()
    work = Path(tempfile.mkdtemp(prefix="voxline-capacity-"))
    q_paths = [str(p) for _, p in make_questions(work, QUESTIONS[:4])]
    settings: dict[str, Any] = {"sessions": n, "duration_s": args.duration, "gap_s": args.turn_gap,
                                "ramp_interval_s": args.ramp_interval}
    proc: ServerProcess | None = None
    server = args.server
    if server is None:
        script = Path(args.capacity_server or REPO / "benchmarks" / "capacity_server.py")
        if not script.exists():
            print(f"voxline bench: {script} not found (run from the repository, or --capacity-server)",
                  file=sys.stderr)
            return 2
        port = free_port()
        server = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, str(script), "--port", str(port), "--max-sessions", str(n + 20),
               "--session-create-rate-per-min", "100000"]
        proc = ServerProcess(cmd, work / "server.log", server)
        print(f"starting {script.name} (FIXED-RESPONSE BACK-ENDS, BENCHMARK ONLY; log: {proc.log_path})",
              file=sys.stderr, flush=True)
        await proc.start(timeout=60)
        settings.update(server_kind="benchmarks/capacity_server.py: real WebRTC, bus, Silero VAD and agent; "
                        "FIXED-RESPONSE STT/LLM/TTS back-ends (benchmark only)", server_cmd=" ".join(cmd[1:]))
    else:
        settings["server_kind"] = "external (--server); server CPU/RSS not measured"
    settings["server"] = server
    client_procs = args.client_procs or (1 if n <= 20 else 2)
    settings["client_processes"] = client_procs
    sampler = Sampler(server, proc.pid if proc else None, [])
    stop = asyncio.Event()
    report: dict[str, Any]
    workers: list[subprocess.Popen[bytes]] = []
    try:
        # Idle baseline: the server with no sessions.
        sampler_task = asyncio.create_task(sampler.run(time.time() + 3.5, stop))
        await sampler_task
        idle = list(sampler.samples)
        ramp_s = n * args.ramp_interval
        start_at = time.time() + 3.0
        talk_from = start_at + ramp_s + 2.0
        end_at = talk_from + args.duration
        shares = [list(range(i, n, client_procs)) for i in range(client_procs)]
        for k, idx in enumerate(shares):
            cfg = {"server": server, "questions": q_paths, "indices": idx, "start_at": start_at,
                   "ramp_interval_s": args.ramp_interval, "talk_from": talk_from, "end_at": end_at,
                   "gap_s": args.turn_gap}
            out = open(work / f"client{k}.json", "wb")
            err = open(work / f"client{k}.log", "wb")
            workers.append(subprocess.Popen([sys.executable, "-m", "voxline.client.bench", "--worker", json.dumps(cfg)],
                                            stdout=out, stderr=err, cwd=str(REPO), start_new_session=True))
            out.close()
            err.close()
        sampler.client_pids = [w.pid for w in workers]
        stop = asyncio.Event()
        sampler_task = asyncio.create_task(sampler.run(end_at + 60, stop))
        print(f"{n} callers in {client_procs} client process(es): connecting over {ramp_s:.0f} s, "
              f"talking for {args.duration:.0f} s", file=sys.stderr, flush=True)
        while time.time() < end_at + 55 and any(w.poll() is None for w in workers):
            await asyncio.sleep(0.5)
        stop.set()
        await sampler_task
        sessions: list[dict[str, Any]] = []
        worker_errors = []
        for k, w in enumerate(workers):
            if w.poll() is None:
                w.kill()
                worker_errors.append(f"client {k} killed after the time limit")
            try:
                sessions += json.loads((work / f"client{k}.json").read_text())["sessions"]
            except (OSError, ValueError, KeyError):
                worker_errors.append(f"client {k}: no result (exit {w.returncode}); see {work}/client{k}.log")
        loaded = sampler.window(talk_from, end_at)
        report = {"sessions": n, **capacity_summary(n, sessions, idle, loaded, len(workers)),
                  "machine": machine, "settings": settings, "worker_errors": worker_errors,
                  "samples": [{**r, "t": round(r["t"] - talk_from, 1)} for r in sampler.samples]}
        report["timeline"] = timeline(report["samples"])
        report["clients"]["sessions_lost"] = n - len(sessions)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        if proc is not None:
            settings["server_exit_code"] = proc.stop()
    _emit(report, args, capacity_report_text)
    c = report["clients"]
    return 0 if c["connected"] == n and not c["sessions_failed"] and not report["worker_errors"] else 1


async def bench_main(args: argparse.Namespace) -> int:
    """`voxline bench`: latency (default) or capacity (`--sessions N`)."""
    for name, default in (("timeout", 60.0), ("turn_gap", 2.0), ("ramp_interval", 0.15),
                          ("client_procs", 0), ("capacity_server", None)):
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        if args.sessions and args.sessions > 0:
            return await capacity_main(args)
        return await latency_main(args)
    except RuntimeError as exc:
        print(f"voxline bench: {exc}", file=sys.stderr)
        return 2


def _worker_entry(argv: list[str]) -> int:
    from voxline.logs import setup_logging

    setup_logging("WARNING", "text")
    cfg = json.loads(argv[argv.index("--worker") + 1])
    result = asyncio.run(worker_main(cfg))
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(_worker_entry(sys.argv))
