"""Benchmark statistics and report text: percentiles, summaries, the stage breakdown, Markdown
tables, and the latency and capacity reports as text (pure, apart from `emit_report`)."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# (label in the table, key in the server's turn.metrics); transport is computed here.
STAGES: tuple[tuple[str, str], ...] = (
    ("end_of_turn", "end_of_turn_ms"),
    ("stt", "stt_ms"),
    ("llm_first_token", "llm_first_token_ms"),
    ("first_sentence", "first_sentence_ms"),
    ("tts_first_audio", "tts_first_audio_ms"),
    ("server_voice_to_voice", "server_voice_to_voice_ms"),
    ("work_start (after speech end)", "work_start_ms"),
    ("first_audio_ready (after speech end)", "first_audio_ready_ms"),
    ("audio_after_commit", "audio_after_commit_ms"),
    ("transport", ""),
)


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


def runs_summary(turns: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per run (`repeat`) p50/p95 of the successful turns, and the headline: the median of the
    runs' figures with their min-max spread (one lucky run cannot make the headline)."""
    by_run: dict[Any, list[float]] = {}
    for t in turns:
        by_run.setdefault(t.get("repeat", 0), [])
        if t.get("ok") and t.get("voice_to_voice_ms") is not None:
            by_run[t.get("repeat", 0)].append(float(t["voice_to_voice_ms"]))
    per_run = [{"run": k, "p50": percentile(v, 50), "p95": percentile(v, 95), "n": len(v),
                "failed": sum(1 for t in turns if t.get("repeat", 0) == k and not t.get("ok"))}
               for k, v in sorted(by_run.items(), key=lambda kv: str(kv[0]))]
    out: dict[str, Any] = {"per_run": per_run}
    for q in ("p50", "p95"):
        vals = [r[q] for r in per_run if r[q] is not None]
        out[q] = percentile(vals, 50)
        out[f"{q}_spread"] = [min(vals), max(vals)] if vals else None
    return out


def stage_breakdown(turns: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | int | None]]:
    """Per-stage p50/p95 (and n) over the successful turns' server metrics and transport."""
    ok = [t for t in turns if t.get("ok")]
    out: dict[str, dict[str, float | int | None]] = {}
    for label, key in STAGES:
        found = [t.get("transport_ms") if not key else (t.get("server") or {}).get(key) for t in ok]
        vals: list[float] = [v for v in found if isinstance(v, (int, float))]
        out[label] = {"p50": percentile(vals, 50), "p95": percentile(vals, 95), "n": len(vals)}
    return out


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.0f}{unit}"
    return f"{v}{unit}"


def _spread(pair: Sequence[float] | None) -> str:
    return "-" if not pair else f"{pair[0]:.0f}-{pair[1]:.0f}"


def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain Markdown table (readable in a terminal, pasteable into README)."""
    cells = [[str(h) for h in header]] + [[_fmt(c) if not isinstance(c, str) else c for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"

    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in cells[1:]])


def latency_report_text(report: dict[str, Any]) -> str:
    """The latency report as text: machine, voice-to-voice summary, stage breakdown, failures."""
    v = report["voice_to_voice_ms"]
    u = report.get("voice_to_voice_unbuffered_ms") or {}
    r = report.get("runs") or {}
    m = report["machine"]
    lines = [f"voxline bench (latency) - {m.get('date')}",
             f"machine: {m.get('cores')} cores, {m.get('cpu_model')}, {m.get('ram_gb')} GB RAM, "
             f"load avg {m.get('loadavg_start')} at start; machine CPU busy during calls p50 "
             f"{report.get('machine_busy_pct_p50')} % of one core ({m.get('cores')} cores = {100 * (m.get('cores') or 1)} %)",
             f"server: {report['settings'].get('server')} ({report['settings'].get('server_kind')})",
             "",
             "voice-to-voice (client: end of question speech sent -> first reply sound played through a "
             "browser-like jitter buffer; 'as received' = off the socket, no buffer)",
             format_table([["through the jitter buffer", v["p50"], v["p95"], v["min"], v["max"], v["n"], report["failed"]],
                           ["as received", u.get("p50"), u.get("p95"), u.get("min"), u.get("max"), u.get("n"), report["failed"]]],
                          ["", "p50 ms", "p95 ms", "min ms", "max ms", "n", "failed"]),
             "",
             f"headline: median of {len(r.get('per_run', []))} runs: p50 {_fmt(r.get('p50'))} ms "
             f"(runs {_spread(r.get('p50_spread'))}), p95 {_fmt(r.get('p95'))} ms (runs {_spread(r.get('p95_spread'))})",
             "",
             "stage breakdown (server turn.metrics; transport = client v2v - server v2v)",
             format_table([[label, s["p50"], s["p95"], s["n"]] for label, s in report["stages_ms"].items()],
                          ["stage", "p50 ms", "p95 ms", "n"])]
    bad = [t for t in report["turns"] if not t.get("ok")]
    if bad:
        lines += ["", f"failed calls ({len(bad)}):"]
        lines += [f"  - {t['question']!r} (repeat {t['repeat']}): {t.get('error')}" for t in bad]
    return "\n".join(lines)


def comparison_report_text(report: dict[str, Any]) -> str:
    """Each configuration's latency report, then one table with them side by side."""
    configs: dict[str, dict[str, Any]] = report["configs"]
    names = list(configs)
    parts = [f"== {name} ==\n{latency_report_text(r)}" for name, r in configs.items()]
    rows: list[list[Any]] = []

    def row(label: str, values: list[Any]) -> None:
        base = values[0]
        ratio = (f"{values[-1] / base:.2f}" if isinstance(base, (int, float)) and base
                 and isinstance(values[-1], (int, float)) else "-")
        rows.append([label, *values, ratio])

    for q in ("p50", "p95"):
        row(f"voice-to-voice {q} (jitter buffer)", [c["voice_to_voice_ms"][q] for c in configs.values()])
    for q in ("p50", "p95"):
        row(f"voice-to-voice {q} (as received)", [(c.get("voice_to_voice_unbuffered_ms") or {}).get(q)
                                                 for c in configs.values()])
    for label in next(iter(configs.values()))["stages_ms"]:
        row(f"{label} p50", [c["stages_ms"].get(label, {}).get("p50") for c in configs.values()])
    row("answered", [c["voice_to_voice_ms"]["n"] for c in configs.values()])
    row("failed", [c["failed"] for c in configs.values()])
    header = ["", *(f"{n} ms" for n in names), f"{names[-1]} / {names[0]}"]
    parts.append("side by side (same questions, asked of each in turn)\n" + format_table(rows, header))
    return "\n\n".join(parts)


def capacity_row(run: dict[str, Any]) -> list[Any]:
    """One row of the capacity table from one run's report."""
    s, c = run["server"], run["clients"]
    return [run["sessions"], run.get("settings", {}).get("server_processes", 1), f"{c['connected']}/{run['sessions']}",
            f"{c['turns_answered']}/{c['turns_asked']}",
            c["v2v_ms"]["p50"], c["v2v_ms"]["p95"], s.get("frames_late"), c["rtp_packets_lost"],
            c["frame_gaps_over_100ms"], s.get("cpu_pct"), s.get("rss_mb"), s.get("cpu_pct_per_session"),
            s.get("rss_mb_per_session"), c.get("cpu_pct"), s.get("other_processes_cpu_pct")]


def lifecycle_text(life: dict[str, Any] | None) -> str:
    """One line on call set-up and tear-down (they are outside the talking window above)."""
    if not life:
        return "set-up and hang-up: not measured"
    c, h = life["connect_ms"], life["hangup_ms"]
    return (f"set-up: connected p50 {_fmt(c.get('p50'))} / p95 {_fmt(c.get('p95'))} / max {_fmt(c.get('max'))} ms, "
            f"{life['connect_failed']} failed to connect, server CPU {_fmt(life.get('setup_server_cpu_pct'))} %; "
            f"hang-up: p50 {_fmt(h.get('p50'))} / p95 {_fmt(h.get('p95'))} ms, {life['hangup_failed']} failed, "
            f"server CPU {_fmt(life.get('hangup_server_cpu_pct'))} %, server empty after "
            f"{_fmt(life.get('server_empty_after_s'))} s ({_fmt(life.get('server_sessions_left'))} left)")


CAPACITY_HEADER = ["N", "server procs", "connected", "answered/asked", "v2v p50", "v2v p95", "frames late (srv)",
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
        lifecycle_text(report.get("lifecycle")),
        f"callers' packets or frames dropped by the server's input bounds (live sessions, most seen): "
        f"{_fmt(report['server'].get('inbound_limited_max'))}",
        "frames late while other processes took > {others_threshold_pct:.0f} % CPU: "
        "{frames_late_while_others_busy} in {seconds_others_busy} s; otherwise: "
        "{frames_late_while_others_quiet} in {seconds_others_quiet} s".format(
            **report["server"].get("late_by_contention", {"others_threshold_pct": 0, "frames_late_while_others_busy": "-",
                                                           "seconds_others_busy": "-", "frames_late_while_others_quiet": "-",
                                                           "seconds_others_quiet": "-"}))])


def emit_report(report: dict[str, Any], args: argparse.Namespace, text: Any) -> None:
    """Write the report to `--out` (JSON) if asked; print it as JSON (`--json`) or as `text(report)`."""
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report) if args.json else text(report), flush=True)
