"""Session IDs: `session_{unix_ms}_{16 chars of [0-9a-z]}`, generated only by the server.

16 characters from a 36-letter alphabet carry log2(36**16) ~ 82.7 bits of randomness from
`secrets`, enough that IDs cannot be guessed.
"""

from __future__ import annotations

import re
import secrets
import time

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
RANDOM_LEN = 16
MAX_CLOCK_SKEW_MS = 60_000
_PATTERN = re.compile(r"session_(0|[1-9][0-9]{0,15})_([0-9a-z]{16})")  # unix ms, no leading zeros


def new_session_id(now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LEN))
    return f"session_{ms}_{rand}"


def is_valid_session_id(value: object, now_ms: int | None = None) -> bool:
    """True for a well-formed ID whose timestamp is not more than a minute in the future.

    Any past timestamp is well-formed: an unknown but well-formed ID is "not found", not
    "malformed".
    """
    if not isinstance(value, str):
        return False
    match = _PATTERN.fullmatch(value)
    if match is None:
        return False
    ms = int(match.group(1))
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return ms <= now + MAX_CLOCK_SKEW_MS
