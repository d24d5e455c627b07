"""Capacity mode of `voxline bench --sessions N`: the conductor. Starts
`voxline.bench.capacity_server` (real WebRTC, bus, VAD and agent; FIXED-RESPONSE model back-ends
that exist only for the benchmark, or the real embedded models with `--real-models`) as its own
process, drives N concurrent callers from client subprocesses (`voxline.bench.capacity_worker`),
and reports sessions connected, turns answered, late and lost frames, the server's and clients'
CPU and RSS read from /proc once a second, and the set-up and hang-up windows around the talk."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from voxline.bench.children import spawn
from voxline.bench.latency import QUESTIONS, make_questions
from voxline.bench.stats import capacity_report_text, emit_report, format_table, stage_breakdown, summarize
from voxline.bench.system import Sampler, ServerProcess, free_port, machine_busy_pct, machine_info


def cpu_pct(rows: list[dict[str, Any]], key: str, index: int | None = None) -> float | None:
    """Average CPU % (of one core) between the first and last sample of `rows`."""
    pts = [(r["t"], (r[key] if index is None else r[key][index])) for r in rows]
    pts = [(t, s) for t, s in pts if s is not None]
    if len(pts) < 2 or pts[-1][0] <= pts[0][0]:
        return None
    busy_s: float = pts[-1][1][0] - pts[0][1][0]
    wall_s: float = pts[-1][0] - pts[0][0]
    return round(busy_s / wall_s * 100, 1)


def timeline(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per sampling interval: server frames late, and CPU % of server, clients, machine, others."""
    out = []
    for a, b in zip(rows, rows[1:]):
        dt = b["t"] - a["t"]
        if dt <= 0:
            continue

        def pct(x: Any, y: Any, dt: float = dt) -> float | None:
            return round((y[0] - x[0]) / dt * 100, 1) if x and y else None

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

    def total(rs: list[dict[str, Any]]) -> int:
        return int(sum(r["frames_late"] or 0 for r in rs))

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
    limited = [r["inbound_limited"] for r in loaded if r.get("inbound_limited") is not None]
    server["inbound_limited_max"] = int(max(limited)) if limited else None  # callers' audio the input bounds dropped
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
    # The server sends only while the agent speaks (DTX): frames expected are those received
    # plus the short holes in media time inside talk spurts.
    received = sum(s["frames"] for s in sessions)
    expected = received + sum(s.get("frames_skipped", 0) for s in sessions)
    clients = {
        "connected": sum(s["connected"] for s in sessions),
        "errors": sorted({s["error"] for s in sessions if s["error"]}),
        "sessions_failed": sum(1 for s in sessions if s["error"] or not s["connected"]),
        "turns_asked": sum(s["turns_asked"] for s in sessions),
        "turns_answered": sum(s["turns_answered"] for s in sessions),
        "turns_failed": sum(s.get("turns_failed", 0) for s in sessions),
        "v2v_ms": summarize(v2v),
        # Where the answered turns' time went (the server's turn.metrics): which stage the callers queue on.
        "stages_ms": stage_breakdown([t for s in sessions for t in s.get("turns", [])]),
        "frames_received": received, "frames_expected": expected,
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


def lifecycle_summary(sessions: list[dict[str, Any]], rows: list[dict[str, Any]], setup: tuple[float, float],
                      hangup_from: float | None) -> dict[str, Any]:
    """The set-up and tear-down windows: time to connect and its failures, hang-up time and its
    failures, the server's CPU in each window, and how long until the server held no session."""
    connected = [s for s in sessions if s.get("connected")]
    out: dict[str, Any] = {
        "connect_ms": summarize([s["connect_ms"] for s in connected if s.get("connect_ms") is not None]),
        "connect_failed": sum(1 for s in sessions if not s.get("connected")),
        "hangup_ms": summarize([s["hangup_ms"] for s in connected if s.get("hangup_ms") is not None]),
        "hangup_failed": sum(1 for s in connected if s.get("hangup_ms") is None),
        "setup_server_cpu_pct": cpu_pct([r for r in rows if setup[0] <= r["t"] <= setup[1]], "server"),
    }
    if hangup_from is not None:
        after = [r for r in rows if r["t"] >= hangup_from - 1.0]
        out["hangup_server_cpu_pct"] = cpu_pct(after, "server")
        empty = next((r["t"] for r in after if r.get("active") == 0), None)
        out["server_empty_after_s"] = round(empty - hangup_from, 1) if empty is not None else None
        out["server_sessions_left"] = after[-1].get("active") if after else None
    return out


def report_text(report: dict[str, Any]) -> str:
    """The capacity report, then the answered turns' stage breakdown when the server sent stage times."""
    text = capacity_report_text(report)
    stages = report.get("clients", {}).get("stages_ms") or {}
    if not any(s.get("n") for s in stages.values()):
        return text
    return "\n".join([text, "stage breakdown of the answered turns (server turn.metrics; transport = client v2v "
                       "- server v2v)", format_table([[k, s["p50"], s["p95"], s["n"]] for k, s in stages.items()],
                                                     ["stage", "p50 ms", "p95 ms", "n"])])


async def capacity_main(args: argparse.Namespace) -> int:
    n = args.sessions
    machine = machine_info()
    work = Path(tempfile.mkdtemp(prefix="voxline-capacity-"))
    q_paths = [str(p) for _, p in make_questions(work, tuple(QUESTIONS)[:4])]
    real = bool(args.real_models)
    at_once = float(args.at_once)
    settings: dict[str, Any] = {"sessions": n, "duration_s": args.duration, "gap_s": args.turn_gap,
                                "ramp_interval_s": args.ramp_interval, "spread_s": 0.0 if at_once else args.spread,
                                "at_once_s": at_once, "real_models": real}
    procs: list[ServerProcess] = []
    servers = [args.server] if args.server else []
    if not servers:
        # The capacity server ships in the package; --capacity-server runs another script instead.
        script = Path(args.capacity_server) if args.capacity_server else None
        if script is not None and not script.exists():
            print(f"voxline bench: {script} not found", file=sys.stderr)
            return 2
        program = [str(script)] if script else ["-m", "voxline.bench.capacity_server"]
        cmd: list[str] = []
        for k in range(max(1, args.server_procs)):
            port = free_port()
            servers.append(f"http://127.0.0.1:{port}")
            cmd = [sys.executable, *program, "--port", str(port), "--max-sessions", str(n + 20),
                   "--session-create-rate-per-min", "100000", *(["--real-models"] if real else [])]
            procs.append(ServerProcess(cmd, work / f"server{k}.log", servers[-1]))
        kind = ("REAL embedded STT/LLM/TTS models" if real
                else "FIXED-RESPONSE STT/LLM/TTS back-ends (benchmark only)")
        print(f"starting {len(procs)} x {' '.join(program)} ({kind}; logs in {work})", file=sys.stderr, flush=True)
        await asyncio.gather(*(p.start(timeout=240 if real else 60) for p in procs))
        settings.update(server_kind=f"{len(procs)} x voxline.bench.capacity_server (callers spread over them, "
                        f"as a load balancer with session affinity would): real WebRTC, bus, Silero VAD and agent; "
                        f"{kind}", server_cmd=" ".join(cmd[1:]),
                        server_processes=len(procs))
    else:
        settings["server_kind"] = "external (--server); server CPU/RSS not measured"
    settings["server"] = servers
    client_procs = args.client_procs or (1 if n <= 20 else 2)
    settings["client_processes"] = client_procs
    sampler = Sampler(servers, [p.pid for p in procs], [])
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
            cfg = {"servers": servers, "questions": q_paths, "indices": idx, "start_at": start_at,
                   "ramp_interval_s": args.ramp_interval, "talk_from": talk_from, "end_at": end_at,
                   "gap_s": args.turn_gap, "spread_s": settings["spread_s"], "sessions": n, "at_once_s": at_once}
            with open(work / f"client{k}.json", "wb") as out, open(work / f"client{k}.log", "wb") as err:
                workers.append(spawn([sys.executable, "-m", "voxline.bench.capacity_worker", "--worker",
                                      json.dumps(cfg)], stdout=out, stderr=err))
        sampler.client_pids = [w.pid for w in workers]
        stop = asyncio.Event()
        sampler_task = asyncio.create_task(sampler.run(end_at + 60, stop))
        print(f"{n} callers in {client_procs} client process(es): connecting over {ramp_s:.0f} s, "
              f"talking for {args.duration:.0f} s", file=sys.stderr, flush=True)
        while time.time() < end_at + 55 and any(w.poll() is None for w in workers):
            await asyncio.sleep(0.5)
        # Tear-down is part of the run: sample until the server holds no session (or 15 s).
        quiet_by = time.time() + 15
        while time.time() < quiet_by and not (sampler.samples and sampler.samples[-1].get("active") == 0):
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
        hung = [s["hangup_at"] for s in sessions if s.get("connected") and s.get("hangup_at")]
        report["lifecycle"] = lifecycle_summary(sessions, sampler.samples, (start_at, talk_from),
                                                min(hung) if hung else None)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        if procs:
            settings["server_exit_codes"] = [p.stop() for p in procs]
    emit_report(report, args, report_text)
    c = report["clients"]
    return 0 if c["connected"] == n and not c["sessions_failed"] and not report["worker_errors"] else 1
