"""The `voxline bench --answers` report: per configuration and group, from the rows of turns (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from voxline.bench.stats import format_table, percentile


def _pct(part: int, whole: int) -> float | None:
    return round(100 * part / whole) if whole else None


def group_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy over scored turns; heard right; accuracy of the turns heard right (the LLM's own
    share); latency and reply length over every turn said (a follow-up's first turns too)."""
    scored = [r for r in rows if r["scored"]]
    heard = [r for r in scored if r["heard_right"]]
    v2v = [r["voice_to_voice_ms"] for r in rows if r.get("voice_to_voice_ms") is not None]
    first_token = [r["llm_first_token_ms"] for r in rows if isinstance(r.get("llm_first_token_ms"), (int, float))]
    lengths = [r["reply_words"] for r in rows if r.get("reply_words") is not None]
    return {"n": len(scored), "right": sum(r["right"] for r in scored),
            "accuracy_pct": _pct(sum(r["right"] for r in scored), len(scored)),
            "heard_right_pct": _pct(len(heard), len(scored)),
            "accuracy_heard_right_pct": _pct(sum(r["right"] for r in heard), len(heard)),
            "wrong_heard_right": sum(1 for r in heard if not r["right"]),
            "wrong_misheard": sum(1 for r in scored if not r["heard_right"] and not r["right"]),
            "voice_to_voice_p50_ms": percentile(v2v, 50), "voice_to_voice_p95_ms": percentile(v2v, 95),
            "llm_first_token_p50_ms": percentile(first_token, 50),
            "reply_words_p50": percentile(lengths, 50), "reply_words_max": max(lengths) if lengths else None,
            "failed_calls": sum(1 for r in rows if r.get("error"))}


def answers_report(rows: list[dict[str, Any]], configs: Sequence[str], groups: Sequence[str],
                   machine: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, dict[str, Any]] = {}
    for config in configs:
        mine = [r for r in rows if r["config"] == config]
        summary[config] = {g: group_summary([r for r in mine if r["group"] == g]) for g in groups
                           if any(r["group"] == g for r in mine)}
        summary[config]["all"] = group_summary(mine)
    return {"summary": summary, "rows": rows, "machine": machine, "settings": settings}


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.0f}" if isinstance(value, float) else str(value)


def answers_report_text(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"voxline bench --answers - {m.get('date')}, {m.get('cores')} cores, load {m.get('loadavg_start')} "
             f"at start; split {report['settings'].get('split')!r}, {report['settings'].get('items')} items", "",
             "right = expected words, none of the contradicting ones; heard = every content word of the question "
             "(and of the turns before it) transcribed; right|heard = accuracy over the questions heard right", ""]
    table = []
    for config, groups in report["summary"].items():
        for group, s in groups.items():
            table.append([config, group, s["n"], f"{_cell(s['accuracy_pct'])} %", f"{_cell(s['heard_right_pct'])} %",
                          f"{_cell(s['accuracy_heard_right_pct'])} %", _cell(s["voice_to_voice_p50_ms"]),
                          _cell(s["voice_to_voice_p95_ms"]), _cell(s["llm_first_token_p50_ms"]),
                          _cell(s["reply_words_p50"]), s["failed_calls"]])
    lines.append(format_table(table, ["config", "group", "n", "right", "heard", "right|heard", "v2v p50 ms",
                                      "v2v p95 ms", "LLM 1st token p50", "words p50", "failed"]))
    wrong = [r for r in report["rows"] if r["scored"] and not r["right"]]
    if wrong:
        lines += ["", f"wrong answers ({len(wrong)}):"]
        lines += [f"  [{r['config']}] {r['said']!r}{'' if r['heard_right'] else ' MISHEARD as ' + repr(r['transcript'])}"
                  f" -> {r['reply'][:120]!r}{' (' + r['error'] + ')' if r.get('error') else ''}" for r in wrong]
    return "\n".join(lines)
