"""`GET /sessions`: sessions from the store, filtered, paged, with aggregate latency figures.

Query parameters: `state` (one or more, comma-separated: connecting, connected,
disconnected, ended), `since` (unix seconds, created at or after), `client_ref`, `limit`
(1..500, default 50), and `cursor` (the `next_cursor` of the previous page) or `offset`.
Aggregates cover every matching session (up to MAX_SCAN), not just the page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from voxline.http_errors import ApiError
from voxline.media.metrics import stage_of
from voxline.sessions.ids import is_valid_session_id
from voxline.sessions.registry import Session, SessionState
from voxline.sessions.store import MAX_SCAN, SessionQuery

STATES = {s.value for s in SessionState}
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
PARAMS = {"state", "since", "client_ref", "limit", "cursor", "offset"}


def parse_query(params: Mapping[str, str]) -> tuple[SessionQuery, int, int, str | None]:
    """The store filter, page size, offset and cursor; any bad value is a 400 that says which."""
    unknown = sorted(set(params) - PARAMS)
    if unknown:
        raise ApiError(400, "bad_query", f"unknown query parameter(s): {', '.join(unknown)}; "
                                         f"use {', '.join(sorted(PARAMS))}")
    states: tuple[str, ...] = ()
    if params.get("state"):
        states = tuple(dict.fromkeys(part.strip() for part in params["state"].split(",") if part.strip()))
        bad = [s for s in states if s not in STATES]
        if bad:
            raise ApiError(400, "bad_query", f"state must be one of {', '.join(sorted(STATES))}, not {bad[0][:40]!r}")
    since = _number(params, "since", float, 0, 1e11)
    limit = int(_number(params, "limit", int, 1, MAX_LIMIT) or DEFAULT_LIMIT)
    offset = int(_number(params, "offset", int, 0, MAX_SCAN) or 0)
    cursor = params.get("cursor") or None
    if cursor is not None and not is_valid_session_id(cursor):
        raise ApiError(400, "bad_query", "cursor must be the next_cursor of a previous page")
    if cursor is not None and offset:
        raise ApiError(400, "bad_query", "use cursor or offset, not both")
    client_ref = params.get("client_ref") or None
    if client_ref is not None and len(client_ref) > 64:
        raise ApiError(400, "bad_query", "client_ref is at most 64 characters")
    return SessionQuery(states=states, since=since, client_ref=client_ref), limit, offset, cursor


def _number(params: Mapping[str, str], name: str, kind: type, low: float, high: float) -> Any:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise ApiError(400, "bad_query", f"{name} must be a{'n integer' if kind is int else ' number'}") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise ApiError(400, "bad_query", f"{name} must be between {low:g} and {high:g}")
    return value


def page(sessions: list[Session], limit: int, offset: int, cursor: str | None) -> tuple[list[Session], str | None]:
    """One page of newest-first sessions, and the cursor of the next page (None at the end)."""
    if cursor is not None:
        sessions = [s for s in sessions if s.id < cursor]
    chunk = sessions[offset:offset + limit]
    more = len(sessions) > offset + limit
    return chunk, (chunk[-1].id if more and chunk else None)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return round(ordered[rank - 1], 1)


def aggregates(sessions: list[Session]) -> dict[str, Any]:
    """Counts and latency percentiles over the sessions' turns."""
    stages: dict[str, list[float]] = {}
    for s in sessions:
        for turn in s.turn_metrics:
            for key, value in turn.items():
                stage = stage_of(key)
                if stage and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    stages.setdefault(stage, []).append(float(value))
    by_state: dict[str, int] = {}
    ended_by: dict[str, int] = {}
    for s in sessions:
        by_state[s.state.value] = by_state.get(s.state.value, 0) + 1
        if s.end_reason:
            ended_by[s.end_reason] = ended_by.get(s.end_reason, 0) + 1
    v2v = stages.get("server_voice_to_voice", [])
    durations = [s.duration_s() for s in sessions]
    return {
        "count": len(sessions),
        "by_state": by_state,
        "ended_by_reason": ended_by,
        "turns": sum(s.turns for s in sessions),
        "interruptions": sum(s.interruptions for s in sessions),
        "errors": sum(s.errors for s in sessions),
        "duration_s": {"total": round(sum(durations), 3), "p50": percentile(durations, 50),
                       "p95": percentile(durations, 95)},
        "server_voice_to_voice_ms": {"p50": percentile(v2v, 50), "p95": percentile(v2v, 95), "n": len(v2v)},
        "stages_ms": {stage: {"p50": percentile(v, 50), "p95": percentile(v, 95), "n": len(v)}
                      for stage, v in sorted(stages.items())},
    }
