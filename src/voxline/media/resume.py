"""Resume tokens: a dropped caller proves it owns a session with a secret issued at creation.

The session ID alone is not enough to take a session over (it appears in logs, URLs and
events), so the 201 answer of `POST /whip` also carries `X-Resume-Token`: 128 random bits
from `secrets`, given out once and kept only as a SHA-256 hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from voxline.http_errors import ApiError

TOKEN_BYTES = 16  # 128 bits
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,64}")


class ResumeError(ApiError):
    """A resume that cannot happen: the API error the WHIP route answers with."""


def new_resume_token() -> tuple[str, str]:
    """A fresh token and the hash to store."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(stored_hash: str, token: str) -> bool:
    """Constant-time comparison; a session without a stored hash never matches."""
    if not stored_hash or not TOKEN_SHAPE.fullmatch(token or ""):
        return False
    return hmac.compare_digest(stored_hash, hash_token(token))
