"""Settings of who may call and from where: tokens, origins, host names, proxies."""

from __future__ import annotations

from pydantic import BaseModel

from voxline.config.types import Names, Origins


class SecuritySettings(BaseModel):
    """Bearer tokens, browser origins and CSP, accepted Host names, trusted proxies."""

    cors_origins: Origins = (
        "http://localhost:5173",
        "http://127.0.0.1:5173",
    )
    allowed_hosts: Names = ()  # Host names besides localhost, IP literals, host and public_url's (421 otherwise; * = any)
    page_servers: Origins = ()  # other servers the page may be pointed at with ?server= (its CSP connect-src)
    frame_ancestors: str = "'none'"  # CSP frame-ancestors: who may embed the page
    metrics_token: str = ""  # with auth_token set: a bearer token that opens /metrics only (Prometheus)
    auth_token: str = ""  # bearer token for WHIP/API/WebSocket; empty = open
    admin_token: str = ""  # the operator's bearer token: every route; once set, GET /sessions and /metrics need it
    trusted_proxies: Names = ()  # addresses/networks whose X-Forwarded-For names the client (e.g. 10.0.0.0/8)
