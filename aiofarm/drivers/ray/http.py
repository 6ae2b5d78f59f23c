"""The HTTP session to a Ray head's dashboard (Jobs REST API): auth headers,
retries, error translation, the log-tail WebSocket.

aiohttp is imported only when a session opens. No aiohttp exception leaves this
module: transient failures (connection errors, 5xx other than Ray's answers to
bad requests) are retried with :func:`aiofarm.backoff.retry_transient`, then become
``ConnectionLost``; 401/403 become ``AuthError``; Ray's other plain-text error
answers become :class:`RayAPIError`, which the driver maps. The token and extra
headers never appear in a repr, a log record or an error message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...backoff import retry_transient
from ...errors import AuthError, BackendError, ConnectionLost

if TYPE_CHECKING:
    import aiohttp

__all__ = ["RayAPIError", "RayHTTP"]

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


class _Transient(Exception):
    pass


def _is_request_error(status: int, text: str) -> bool:
    """Ray answers some bad requests with 500 and a traceback: not worth retrying."""
    return status < 500 or "already exists" in text or "ValueError" in text or "TypeError" in text


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
        attempts: int = 6,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
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
        attempts: int | None = None,
    ) -> Any:
        """The JSON answer (None for an empty body)."""
        import aiohttp

        session = self._session
        if session is None:
            raise ConnectionLost("the Ray driver is not open")
        url = self.base_url + path
        payload = json.dumps(body).encode() if body is not None else data

        async def once() -> Any:
            self.requests += 1
            headers = {"Content-Type": "application/json"} if body is not None else None
            async with session.request(method, url, data=payload, headers=headers) as resp:
                status = resp.status
                text = await resp.text(errors="replace")
            if status in (401, 403):
                raise self._auth_error(status, path)
            if status >= 400:
                if _is_request_error(status, text):
                    raise RayAPIError(status, text)
                raise _Transient(f"HTTP {status}: {text.strip()[-200:]}")
            if not text.strip():
                return None
            try:
                return json.loads(text)
            except ValueError:
                raise BackendError(DRIVER, status, f"{method} {path}: not JSON: {text[:200]}") from None

        def transient(exc: BaseException) -> bool:
            return isinstance(exc, (_Transient, aiohttp.ClientError, asyncio.TimeoutError, OSError)) and not (
                isinstance(exc, aiohttp.InvalidURL)
            )

        try:
            return await retry_transient(once, is_transient=transient, attempts=attempts or self.attempts)
        except _Transient as exc:
            raise ConnectionLost(f"the Ray head at {self.base_url} keeps failing: {exc}") from None
        except aiohttp.InvalidURL as exc:
            raise BackendError(DRIVER, None, f"invalid URL {exc}") from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise ConnectionLost(
                f"cannot reach the Ray head at {self.base_url}: {type(exc).__name__}: {str(exc)[:300]}"
            ) from None

    async def websocket(self, path: str) -> aiohttp.ClientWebSocketResponse[bool]:
        """Open a WebSocket (no retry: the caller resumes from its own cursor)."""
        import aiohttp

        session = self._session
        if session is None:
            raise ConnectionLost("the Ray driver is not open")
        self.requests += 1
        try:
            # heartbeat: a head that vanished without a FIN is noticed, not waited on forever
            return await session.ws_connect(self.base_url + path, heartbeat=10.0, max_msg_size=0)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                raise self._auth_error(exc.status, path) from None
            if exc.status == 404:
                raise RayAPIError(404, exc.message) from None
            raise ConnectionLost(f"log tail of {path}: HTTP {exc.status}") from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise ConnectionLost(
                f"cannot reach the Ray head at {self.base_url}: {type(exc).__name__}: {str(exc)[:300]}"
            ) from None
