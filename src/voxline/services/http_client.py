"""What the remote back-ends share: base URL handling, one lazy session, and error mapping.

Every failure of a model service (HTTP error, refused connection, timeout, bad reply)
becomes a `ServiceError` naming the service and the reason, so the agent can end the turn
and go on; cancellation is never swallowed.

A busy service (`429`/`503`, as `voxline serve` answers beyond its queue) is asked again,
bounded: at most `retries` more tries, each after its `Retry-After` (capped at
`retry_cap_s`), and only while the wait still fits in `timeout_s` from the first try (the
call's deadline). The waits are `asyncio.sleep`: the loop goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
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

    def __init__(self, what: str, base_url: str, api_key: str, timeout_s: float, retries: int = 2,
                 retry_cap_s: float = 2.0) -> None:
        self.what = what
        self.base = api_base(base_url)
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.retries = retries
        self.retry_cap_s = retry_cap_s
        self.retried = 0  # busy answers asked again (for tests and metrics)
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

    def retry_wait(self, resp: aiohttp.ClientResponse, tries: int, deadline: float) -> float | None:
        """Seconds to wait before asking a busy service again, or None to take this answer."""
        if resp.status not in (429, 503) or tries > self.retries:
            return None
        try:
            wait = float(resp.headers.get("Retry-After", "1"))
        except ValueError:  # an HTTP date, or junk: the default
            wait = 1.0
        wait = min(max(wait, 0.0), self.retry_cap_s)
        return wait if asyncio.get_running_loop().time() + wait < deadline else None

    @contextlib.asynccontextmanager
    async def post(self, path: str, stream: bool = False, form: Callable[[], aiohttp.FormData] | None = None,
                   **kwargs: Any) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST and yield the checked response; on early exit the connection is closed, not reused,
        so a server still streaming sees the disconnect and stops. `form` builds a multipart body
        (once per try: aiohttp sends a FormData only once)."""
        url = self.url(path)
        timeout = self.stream_timeout() if stream else self.whole_timeout()
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        tries = 0
        try:
            while True:
                tries += 1
                body: dict[str, Any] = {"data": form()} if form is not None else {}
                async with self.session().post(url, timeout=timeout, **body, **kwargs) as resp:
                    wait = self.retry_wait(resp, tries, deadline)
                    if wait is None:
                        try:
                            await self.check(resp)
                            yield resp
                        finally:
                            if not resp.content.at_eof():
                                resp.close()
                        return
                    resp.close()  # nothing to read from a busy answer
                self.retried += 1
                await asyncio.sleep(wait)
        except ServiceError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise self.failure(url, exc) from exc

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
