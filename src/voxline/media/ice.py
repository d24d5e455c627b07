"""ICE servers for callers: STUN/TURN URLs and time-limited TURN credentials.

TURN credentials use the "REST API" scheme that coturn implements (`use-auth-secret`,
`static-auth-secret`): the username is `<expiry unix time>:<tag>` and the password is
base64(HMAC-SHA1(secret, username)); coturn checks both and the expiry, so a credential
handed to a page stops working after `turn_ttl_s` and the secret itself never leaves the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from voxline.config import Settings


def turn_credential(secret: str, ttl_s: float, tag: str = "voxline", now: float | None = None) -> tuple[str, str]:
    """(username, password) valid for `ttl_s` from `now`, for a TURN server sharing `secret`."""
    expiry = int((time.time() if now is None else now) + ttl_s)
    username = f"{expiry}:{tag}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(settings: Settings, now: float | None = None) -> list[dict[str, Any]]:
    """The `iceServers` a caller should use (RTCIceServer dicts); [] = host candidates only."""
    urls = [u for u in settings.ice_servers if u]
    stun = [u for u in urls if u.startswith(("stun:", "stuns:"))]
    turn = [u for u in urls if u.startswith(("turn:", "turns:"))]
    servers: list[dict[str, Any]] = [{"urls": stun}] if stun else []
    if turn:
        server: dict[str, Any] = {"urls": turn}
        if settings.turn_secret:
            server["username"], server["credential"] = turn_credential(settings.turn_secret, settings.turn_ttl_s, now=now)
        servers.append(server)
    return servers
