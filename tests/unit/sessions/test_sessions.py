"""Session IDs and the session registry."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxline.sessions.ids import ALPHABET, MAX_CLOCK_SKEW_MS, RANDOM_LEN, is_valid_session_id, new_session_id
from voxline.sessions.registry import SessionLimitReached, SessionRegistry, SessionState

NOW_MS = 1_760_000_000_000
ID_SHAPE = re.compile(r"session_(0|[1-9][0-9]*)_[0-9a-z]{16}")

# -- IDs --------------------------------------------------------------------------------------


def test_new_id_has_the_documented_shape_and_is_valid() -> None:
    sid = new_session_id()
    assert re.fullmatch(r"session_[0-9]{13}_[0-9a-z]{16}", sid)
    assert is_valid_session_id(sid)
    ms = int(sid.split("_")[1])
    assert abs(ms - time.time() * 1000) < 5_000


def test_new_ids_are_unique_and_use_the_whole_alphabet() -> None:
    ids = {new_session_id(NOW_MS) for _ in range(2_000)}
    assert len(ids) == 2_000
    used = set("".join(sid.rsplit("_", 1)[1] for sid in ids))
    assert used == set(ALPHABET)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, NOW_MS + MAX_CLOCK_SKEW_MS))
def test_id_of_any_past_or_present_time_is_valid(ms: int) -> None:
    sid = new_session_id(ms)
    assert ID_SHAPE.fullmatch(sid)
    assert is_valid_session_id(sid, now_ms=NOW_MS)


@settings(max_examples=200, deadline=None)
@given(st.integers(NOW_MS + MAX_CLOCK_SKEW_MS + 1, 10**16))
def test_id_more_than_a_minute_ahead_is_invalid(ms: int) -> None:
    assert not is_valid_session_id(new_session_id(ms), now_ms=NOW_MS)


def test_clock_skew_boundary() -> None:
    rand = "a" * RANDOM_LEN
    assert is_valid_session_id(f"session_{NOW_MS + MAX_CLOCK_SKEW_MS}_{rand}", now_ms=NOW_MS)
    assert not is_valid_session_id(f"session_{NOW_MS + MAX_CLOCK_SKEW_MS + 1}_{rand}", now_ms=NOW_MS)


@pytest.mark.parametrize("value", [
    None, 42, b"session_1760000000000_abcdefghijklmnop", "", "session_", "session__abcdefghijklmnop",
    "session_1760000000000_abcdefghijklmno",  # 15 random chars
    "session_1760000000000_abcdefghijklmnopq",  # 17
    "session_1760000000000_ABCDEFGHIJKLMNOP",  # upper case
    "session_1760000000000_abcdefgh-jklmnop",
    "Session_1760000000000_abcdefghijklmnop",
    "session-1760000000000-abcdefghijklmnop",
    " session_1760000000000_abcdefghijklmnop",
    "session_1760000000000_abcdefghijklmnop\n",
    "session_-1_abcdefghijklmnop",
    "session_01760000000000_abcdefghijklmnop",  # not canonical: leading zero
    "session_１７６0000000000_abcdefghijklmnop",  # non-ASCII digits
    "session_1760000000000_abcdefghijklmnop/../x",
    "session_" + "1" * 5000 + "_abcdefghijklmnop",
])
def test_malformed_ids_are_rejected(value: object) -> None:
    assert not is_valid_session_id(value, now_ms=NOW_MS)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60)
       | st.from_regex(r"session_[0-9]{1,17}_[0-9a-z]{16}", fullmatch=True)
       | st.from_regex(r"session_[0-9]{1,14}_[0-9a-zA-Z_-]{14,18}", fullmatch=True))
def test_random_strings_validate_only_when_well_formed(value: str) -> None:
    valid = is_valid_session_id(value, now_ms=NOW_MS)
    match = ID_SHAPE.fullmatch(value)
    expected = match is not None and int(match.group(1)) <= NOW_MS + MAX_CLOCK_SKEW_MS
    assert valid == expected


# -- registry ---------------------------------------------------------------------------------


def test_registry_creates_gets_and_ends_sessions() -> None:
    reg = SessionRegistry(max_sessions=5)
    s = reg.create(client_ref="tmp-123")
    assert is_valid_session_id(s.id)
    assert reg.get(s.id) is s
    assert s.client_ref == "tmp-123"
    assert s.state is SessionState.CONNECTING and not s.ended
    assert reg.get("session_1_nope") is None

    s.listening = True
    ended = reg.end(s.id, "client_delete", now=s.created_at + 12.5)
    assert ended is s and s.ended
    assert s.end_reason == "client_delete"
    assert not s.listening
    assert s.duration_s() == 12.5
    assert reg.end(s.id, "again") is None  # ending twice is a no-op
    assert reg.end("session_1_unknown", "x") is None
    assert reg.get(s.id) is s  # ended sessions stay visible for a while


def test_registry_limits_live_sessions_only() -> None:
    reg = SessionRegistry(max_sessions=2)
    a, b = reg.create(), reg.create()
    with pytest.raises(SessionLimitReached):
        reg.create()
    reg.end(a.id, "done")
    c = reg.create()  # ending one frees its place
    assert {s.id for s in reg.live()} == {b.id, c.id}
    assert reg.live_count() == 2


def test_registry_finds_idle_sessions() -> None:
    reg = SessionRegistry(max_sessions=5)
    quiet, busy, ended = reg.create(), reg.create(), reg.create()
    quiet.touch(1_000.0)
    busy.touch(1_250.0)
    ended.touch(1_000.0)
    reg.end(ended.id, "done")
    assert reg.idle(timeout_s=100, now=1_300.0) == [quiet]
    assert reg.idle(timeout_s=300, now=1_300.0) == []


def test_registry_trims_the_oldest_ended_sessions() -> None:
    reg = SessionRegistry(max_sessions=100, keep_ended=3)
    sessions = [reg.create() for _ in range(6)]
    for i, s in enumerate(sessions):
        reg.end(s.id, "done", now=1_000.0 + i)
    reg.create()  # trimming happens as sessions come and go
    kept = [s for s in reg.all() if s.ended]
    assert [s.id for s in kept] == [s.id for s in sessions[3:]]
    assert len(reg.all()) == 4


def test_session_json_has_analytics_fields() -> None:
    reg = SessionRegistry(max_sessions=1)
    s = reg.create()
    s.turns, s.interruptions = 3, 1
    out = s.to_json()
    assert out["session_id"] == s.id and "id" not in out
    assert out["state"] == "connecting"
    assert out["turns"] == 3 and out["interruptions"] == 1
    assert isinstance(out["duration_s"], float)
