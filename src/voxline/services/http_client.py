"""What the remote back-ends share: base URL handling, one lazy session, and error mapping.

Every failure of a model service (HTTP error, refused connection, timeout, bad reply)
becomes a `ServiceError` naming the service and the reason, so the agent can end the turn
and go on; cancellation is never swallowed.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from voxline.services.base import ServiceError


def api_base(base_url: str) -> str:
    """`http://host:port`, `.../v1` or `.../v1/` -> `http://host:port/v1` (no trailing slash)."""
    base = base_url.strip().rstrip("/")
    if not base:
        raise ValueError("a model service URL is required")
    if "://" not in base:
        base = "http://" + base
    return base if base.endswith("/v1") else base + "/v1"


class ServiceClient:
    """One `aiohttp.ClientSession` per back-end, created on first use inside the running loop."""

    def __init__(self, what: str, base_url: str, api_key: str, timeout_s: float) -> None:
        self.what = what
        self.base = api_base(base_url)
        self.api_key = api_key
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._session = aiohttp.ClientSession(headers=headers)
        return self._session

    def whole_timeout(self) -> aiohttp.ClientTimeout:
        """For request/response calls: the whole exchange must finish in time."""
        return aiohttp.ClientTimeout(total=self.timeout_s)

    def stream_timeout(self) -> aiohttp.ClientTimeout:
        """For streams: connecting, and every wait for the next bytes, must finish in time."""
        return aiohttp.ClientTimeout(total=None, connect=self.timeout_s, sock_read=self.timeout_s)

    def failure(self, url: str, exc: BaseException) -> ServiceError:
        if isinstance(exc, TimeoutError):
            return ServiceError(f"{self.what} service {url} timed out after {self.timeout_s:g} s")
        return ServiceError(f"{self.what} service {url} failed: {type(exc).__name__}: {exc}")

    async def check(self, resp: aiohttp.ClientResponse) -> None:
        """Raise a ServiceError carrying the server's own message for any non-2xx reply."""
        if resp.status < 300:
            return
        text = ""
        with contextlib.suppress(Exception):
            text = (await resp.text())[:500]
        message = text
        with contextlib.suppress(Exception):
            err = json.loads(text)["error"]
            message = err["message"] if isinstance(err, dict) else str(err)
        if self.api_key:  # vendors quote the key back ("incorrect API key provided: sk-..."): never pass it on
            message = message.replace(self.api_key, "***")
        raise ServiceError(f"{self.what} service {resp.url} answered HTTP {resp.status}: {message or resp.reason}")

    @contextlib.asynccontextmanager
    async def post(self, path: str, stream: bool = False, **kwargs: Any) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST and yield the checked response; on early exit the connection is closed, not reused,
        so a server still streaming sees the disconnect and stops."""
        url = self.url(path)
        timeout = self.stream_timeout() if stream else self.whole_timeout()
        try:
            async with self.session().post(url, timeout=timeout, **kwargs) as resp:
                try:
                    await self.check(resp)
                    yield resp
                finally:
                    if not resp.content.at_eof():
                        resp.close()
        except ServiceError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise self.failure(url, exc) from exc

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
