"""The HTTP session to slurmrestd: JWT headers, error translation.

aiohttp is imported here only when a session opens, so ``import aiofarm`` stays
light. No aiohttp exception leaves this module. One attempt per call: a failure
that may pass becomes ``ConnectionFailed`` / ``BackendUnavailable`` (with the
``Retry-After`` when given), which the client layer retries (``aiofarm/retry.py``); a reply that is not HTTP (slurmrestd 26.05 answers an unknown URL with its 404
page twice) is a ``BackendError`` at once; Slurm's own errors become
:class:`SlurmAPIError` (the driver maps them to ``JobNotFound`` / ``InvalidSpec``
/ ``BackendError``); a refused token is ``AuthError`` on every version (401; 511
from v0.0.40; 500 with error -1 from v0.0.38).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import (
    AuthError,
    BackendError,
    BackendUnavailable,
    ConnectionFailed,
    ConnectionLost,
    FarmError,
)

if TYPE_CHECKING:
    import aiohttp

__all__ = ["SlurmAPIError", "SlurmHTTP"]

DRIVER = "slurm"

#: Slurm error numbers worth retrying: communication errors between slurmrestd and
#: slurmctld (1000-1099, 1800-1899) and "Job can not be altered now, try again later".
TRANSITION_STATE_NO_UPDATE = 2020
#: "Zero Bytes were transmitted or received": what a submit with a rejected JWT gets
ZERO_BYTES = 5005
#: "Protocol authentication error": a rejected JWT (v0.0.40+, with HTTP 511)
AUTH_ERROR = 1007
#: BackendError.code of a reply that is not valid HTTP
MALFORMED = "malformed-reply"
_TRANSIENT_NUMBERS = frozenset({*range(1000, 1100), *range(1800, 1900), TRANSITION_STATE_NO_UPDATE})
_TRANSIENT_TEXT = ("can not be altered now", "try again later", "Unable to contact slurm controller")


class SlurmAPIError(Exception):
    """slurmrestd answered with Slurm errors (internal to the driver package)."""

    def __init__(self, status: int, number: int | None, message: str, source: str = "") -> None:
        self.status = status
        self.number = number
        self.message = message
        self.source = source
        super().__init__(f"HTTP {status}: {number}: {message}")

    def to_backend(self) -> BackendError:
        return BackendError(DRIVER, self.number, self.message)


def _seconds(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds (the HTTP-date form is not used by slurmrestd)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _first_error(data: Mapping[str, Any]) -> tuple[int | None, str, str]:
    errors = data.get("errors")
    if isinstance(errors, list):
        for err in errors:
            if not isinstance(err, dict):
                continue
            num = err.get("error_number", err.get("error_code"))
            if isinstance(num, int) and num == 0:
                continue
            text = err.get("description") or err.get("error") or "error"
            if err.get("description") and err.get("error") and err["error"] != err["description"]:
                text = f"{err['description']} ({err['error']})"
            return (num if isinstance(num, int) else None), str(text), str(err.get("source") or "")
    return None, "", ""


#: the status line of a reply slurmrestd sent again after its "Connection: Close" one
_REPEATED_STATUS = re.compile(r"HTTP/1\.[01] (\d{3}) ")
#: the bytes aiohttp quotes in its complaint (the reply's body, then the repeat)
_QUOTED_BYTES = re.compile(r"b'((?:[^'\\]|\\.)*)'", re.S)


def _embedded_json(message: str) -> dict[str, Any] | None:
    """The JSON object at the start of the bytes aiohttp quotes in a parse error."""
    import ast

    m = _QUOTED_BYTES.search(message)
    if m is None:
        return None
    try:
        raw = ast.literal_eval(f"b'{m.group(1)}'")
        data, _ = json.JSONDecoder().raw_decode(raw.decode("utf-8", "replace").lstrip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


class SlurmHTTP:
    """One aiohttp session to slurmrestd. ``requests`` counts HTTP requests sent
    (benchmarks read it)."""

    def __init__(
        self,
        *,
        base_url: str,
        unix_path: str | None,
        user: str,
        token: str,
        timeout: float = 30.0,
        reload_token: Callable[[], str | None] | None = None,
        auth_probe: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.unix_path = unix_path
        self.user = user
        self.token = token
        self.timeout = timeout
        self.requests = 0
        self.not_modified = 0  # 304 answers (GET /jobs?update_time= with no change)
        # token_file users rotate tokens: on a rejection the file is read again once
        self._reload_token = reload_token
        # a cheap authenticated path to tell a rejected JWT from a real socket error
        # (set once the API version is known)
        self.auth_probe = auth_probe
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        import aiohttp

        # keep-alive, never force_close: slurmrestd 22.05 answers a request that says
        # "Connection: close" with a stray "Connection: Close" line after the body,
        # which breaks HTTP framing
        connector: aiohttp.BaseConnector
        if self.unix_path is not None:
            connector = aiohttp.UnixConnector(path=self.unix_path, limit=16)
        else:
            connector = aiohttp.TCPConnector(limit=16)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        body: Mapping[str, Any] | None = None,
        retry_numbers: frozenset[int] = frozenset(),
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body). 304 comes back as (304, {}). ``params`` values
        that are lists repeat the parameter (``job_id=1&job_id=2``). One attempt (a
        rejected token is tried once more after ``token_file`` is read again): a failure
        that may pass is ``BackendUnavailable`` (Slurm error numbers in
        ``retry_numbers`` too) or ``ConnectionFailed``, retried by the client layer."""
        import asyncio

        import aiohttp

        session = self._session
        if session is None:
            raise ConnectionLost("the Slurm driver is not open")
        url = self.base_url + path
        payload = json.dumps(body).encode() if body is not None else None

        async def once() -> tuple[int, dict[str, Any]]:
            self.requests += 1
            headers = {"X-SLURM-USER-NAME": self.user, "X-SLURM-USER-TOKEN": self.token}
            if payload is not None:
                headers["Content-Type"] = "application/json"
            try:
                async with session.request(method, url, params=params, data=payload, headers=headers) as resp:
                    status = resp.status
                    text = await resp.text() if status != 304 else ""
                    retry_after = _seconds(resp.headers.get("Retry-After"))
            except aiohttp.ClientResponseError as exc:
                # a reply aiohttp could not parse: asking again gets the same reply
                raise self._malformed(method, path, str(exc.message or "")) from None
            except aiohttp.InvalidURL as exc:
                raise BackendError(DRIVER, None, f"invalid URL {exc}") from None
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                raise ConnectionFailed(
                    f"cannot reach slurmrestd at {self.unix_path or self.base_url}: "
                    f"{type(exc).__name__}: {str(exc)[:300]}"
                ) from None
            if status == 304:
                self.not_modified += 1
                return status, {}
            if status == 401:
                raise AuthError(
                    f"slurmrestd at {self.base_url} refused the request (HTTP 401): "
                    "no JWT was accepted; pass token=/token_file= or set SLURM_JWT"
                )
            if status == 511:
                raise AuthError(
                    f"slurmrestd rejected the credentials of user {self.user!r} (HTTP 511): "
                    "the JWT is invalid or expired"
                )
            try:
                data = json.loads(text) if text.strip() else {}
            except ValueError:
                if status >= 500:
                    raise BackendUnavailable(DRIVER, status, text[:200], retry_after=retry_after) from None
                raise BackendError(DRIVER, status, f"{method} {path}: {text[:200]}") from None
            if not isinstance(data, dict):
                raise BackendError(DRIVER, status, "unexpected JSON answer")
            if status < 400:
                return status, data
            number, message, source = _first_error(data)
            err = SlurmAPIError(status, number, message or f"HTTP {status}", source)
            if number == AUTH_ERROR or (number == -1 and status >= 500):
                # slurmrestd reports a rejected JWT as HTTP 500 "Unspecified error" (-1)
                # from whatever call it was making, never as 401
                raise AuthError(
                    f"slurmrestd rejected the credentials of user {self.user!r} "
                    f"(HTTP {status}, Slurm error -1: {message}); the JWT is invalid or expired"
                )
            if number == ZERO_BYTES and self.auth_probe is not None and path != self.auth_probe:
                # slurmctld drops the connection of a rejected (e.g. expired) JWT on
                # some calls (submit): ask the probe, which says -1 if that is it
                await self.call("GET", self.auth_probe)
                raise BackendUnavailable(DRIVER, number, err.message, retry_after=retry_after)
            if number in _TRANSIENT_NUMBERS or number in retry_numbers or any(
                t in message for t in _TRANSIENT_TEXT
            ):
                raise BackendUnavailable(DRIVER, number, err.message, retry_after=retry_after)
            # 429: a proxy or gateway in front of slurmrestd throttling us (found by the fault proxy)
            if number is None and status in (429, 502, 503, 504):
                raise BackendUnavailable(DRIVER, status, err.message, retry_after=retry_after)
            raise err

        try:
            return await once()
        except AuthError:
            fresh = self._reload_token() if self._reload_token is not None else None
            if not fresh or fresh == self.token:
                raise
            self.token = fresh
            return await once()

    def _malformed(self, method: str, path: str, message: str) -> FarmError | SlurmAPIError:
        """slurmrestd 26.05 writes an error reply (Connection: Close) twice, which
        aiohttp rejects; the repeated status line still says what it was."""
        m = _REPEATED_STATUS.search(message)
        status = int(m.group(1)) if m else None
        if status in (401, 511):
            return AuthError(
                f"slurmrestd rejected the credentials of user {self.user!r} (HTTP {status}): "
                "the JWT is invalid or expired"
            )
        detail = message.splitlines()[0] if message else "unparsable reply"
        data = _embedded_json(message)
        if status is not None and status >= 400 and data is not None:
            # the reply's own JSON is in the parser's complaint: Slurm's error, as usual
            number, text, source = _first_error(data)
            if number is not None or text:
                return SlurmAPIError(status, number, text or f"HTTP {status}", source)
        if status == 404:
            # not found, whatever the page says: the caller decides what is missing
            return SlurmAPIError(404, None, f"{method} {path}: not found (malformed reply)")
        return BackendError(
            DRIVER,
            status or MALFORMED,
            f"slurmrestd at {self.base_url} sent a malformed reply to {method} {path}: {detail}",
        )
