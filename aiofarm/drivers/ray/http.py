"""The HTTP session to a Ray head's dashboard (Jobs REST API) and its nodes' agents:
auth headers, error translation, ranged reads of log files.

aiohttp is imported only when a session opens. No aiohttp exception leaves this
module. One attempt per call: a failure that may pass (a connection error, a 5xx
other than Ray's answers to bad requests) is ``ConnectionFailed`` /
``BackendUnavailable``, which the client layer retries (``aiofarm/retry.py``); 401/403 become ``AuthError``; Ray's other plain-text error
answers become :class:`RayAPIError`, which the driver maps. The token and extra
headers never appear in a repr, a log record or an error message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...errors import AuthError, BackendError, BackendUnavailable, ConnectionFailed, ConnectionLost

if TYPE_CHECKING:
    import aiohttp

__all__ = ["RayAPIError", "RayHTTP", "Unreachable"]

DRIVER = "ray"


class RayAPIError(Exception):
    """The head answered a request with an error (internal to the driver package)."""

    def __init__(self, status: int, text: str) -> None:
        self.status = status
        self.text = text
        super().__init__(f"HTTP {status}: {text[:300]}")

    @property
    def last_line(self) -> str:
        """Ray answers with a Python traceback: its last line is the error."""
        lines = [ln for ln in self.text.strip().splitlines() if ln.strip()]
        return lines[-1].strip() if lines else f"HTTP {self.status}"

    def to_backend(self) -> BackendError:
        return BackendError(DRIVER, self.status, self.last_line[:500])


class Unreachable(Exception):
    """No connection could be made at all (refused, no route, no name, connect timed
    out), as opposed to one dropped after it was made (internal to the driver package)."""


def _content_range_total(value: str | None) -> int | None:
    """The complete length of ``Content-Range: bytes a-b/TOTAL`` (or ``bytes */TOTAL``)."""
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _seconds(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _is_request_error(status: int, text: str) -> bool:
    """Ray answers some bad requests with 500 and a traceback: not worth retrying."""
    # 429 is throttling (a gateway in front of the dashboard): it passes, so it is retried
    return (status < 500 and status != 429) or "already exists" in text or "ValueError" in text or "TypeError" in text


class RayHTTP:
    """One aiohttp session to the dashboard. ``requests`` counts HTTP requests sent
    (benchmarks read it)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None,
        headers: Mapping[str, str],
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.requests = 0
        self._headers = dict(headers)
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"<RayHTTP {self.base_url}>"

    async def open(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=16),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers=self._headers,
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _auth_error(self, status: int, path: str) -> AuthError:
        why = "no token was sent" if "Authorization" not in self._headers else "the token was refused"
        return AuthError(
            f"the Ray head at {self.base_url} refused {path} (HTTP {status}): {why}; pass token= or "
            "token_file= in the URL, or set RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH"
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        data: bytes | None = None,
    ) -> Any:
        """The JSON answer (None for an empty body). One attempt: a failure that may
        pass is ``ConnectionFailed`` / ``BackendUnavailable``, retried by the client
        layer where that is safe."""
        import aiohttp

        session = self._session
        if session is None:
            raise ConnectionLost("the Ray driver is not open")
        url = self.base_url + path
        payload = json.dumps(body).encode() if body is not None else data
        self.requests += 1
        headers = {"Content-Type": "application/json"} if body is not None else None
        try:
            async with session.request(method, url, data=payload, headers=headers) as resp:
                status = resp.status
                text = await resp.text(errors="replace")
                retry_after = _seconds(resp.headers.get("Retry-After"))
        except aiohttp.InvalidURL as exc:
            raise BackendError(DRIVER, None, f"invalid URL {exc}") from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise ConnectionFailed(
                f"cannot reach the Ray head at {self.base_url}: {type(exc).__name__}: {str(exc)[:300]}"
            ) from None
        if status in (401, 403):
            raise self._auth_error(status, path)
        if status >= 400:
            if _is_request_error(status, text):
                raise RayAPIError(status, text)
            raise BackendUnavailable(DRIVER, status, text.strip()[-200:], retry_after=retry_after)
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise BackendError(DRIVER, status, f"{method} {path}: not JSON: {text[:200]}") from None

    async def read_bytes(
        self,
        url: str,
        *,
        first: int | None = None,
        last: int | None = None,
        connect_timeout: float | None = None,
        accept: frozenset[int] = frozenset({200, 206, 416}),
    ) -> tuple[int, bytes, int | None]:
        """``GET`` a path of the dashboard or an absolute URL (a node agent's), as bytes:
        ``(status, body, total)``, with ``Range: bytes=first-last`` when ``first`` is given
        (``total`` from the answer's ``Content-Range``). The statuses in ``accept`` (200,
        206, and 416: the range starts at or past the end) are answers; 404 is
        :class:`RayAPIError`. A connection that
        cannot be made at all is :class:`Unreachable`; one dropped is ``ConnectionFailed``."""
        import aiohttp

        session = self._session
        if session is None:
            raise ConnectionLost("the Ray driver is not open")
        target = url if "://" in url else self.base_url + url
        headers = {"Range": f"bytes={first}-{'' if last is None else last}"} if first is not None else None
        options: dict[str, Any] = {}
        if connect_timeout is not None:
            # an agent this host cannot reach is told quickly, not after the whole timeout
            options["timeout"] = aiohttp.ClientTimeout(total=self.timeout, sock_connect=connect_timeout)
        self.requests += 1
        try:
            async with session.get(target, headers=headers, **options) as resp:
                status = resp.status
                body = await resp.read()
                total = _content_range_total(resp.headers.get("Content-Range"))
                retry_after = _seconds(resp.headers.get("Retry-After"))
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise Unreachable(f"{type(exc).__name__}: {str(exc)[:300]}") from None
        except aiohttp.InvalidURL as exc:
            raise BackendError(DRIVER, None, f"invalid URL {exc}") from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise ConnectionFailed(
                f"cannot read from the Ray cluster at {target.split('?')[0]}: {type(exc).__name__}: {str(exc)[:300]}"
            ) from None
        if status in (401, 403):
            raise self._auth_error(status, target.split("?")[0])
        if status in accept:
            return status, body, total
        text = body.decode("utf-8", "replace")
        if _is_request_error(status, text):
            raise RayAPIError(status, text)
        raise BackendUnavailable(DRIVER, status, text.strip()[-200:], retry_after=retry_after)
