"""Every error aiofarm raises has one root: :class:`FarmError`.

Drivers translate their back end's exceptions (aiohttp, botocore, sqlite3, OSError)
into these before they cross the driver boundary, so user code never needs to
import a transport library to handle a failure.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BackendError",
    "BackendUnavailable",
    "ConnectionFailed",
    "ConnectionLost",
    "FarmError",
    "InvalidSpec",
    "JobNotFound",
    "JobNotRunning",
    "PoolNotFound",
    "RemoteError",
    "StateError",
    "StateLocked",
    "StatusNotReached",
    "TransientError",
    "UnsupportedError",
    "WaitTimeout",
]


class FarmError(Exception):
    """Root of every aiofarm error. Its message never carries a secret: the text is
    passed through :func:`aiofarm.redaction.redact` (a URL's password, tokens, JWTs,
    AWS keys, ``NAME=value`` pairs with secret-looking names become ``***``)."""

    def __init__(self, *args: object) -> None:
        if args and any(isinstance(a, str) for a in args):
            from .redaction import redact

            args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        super().__init__(*args)


class _NotFound(FarmError, LookupError):
    """Something the back end does not know. Its text names the farm: ``farm``, the
    URL the client was opened with (redacted), which the client layer fills in as
    the error leaves a driver call; else only the driver (``on local://``)."""

    what = "thing"

    def __init__(self, name: str, *, driver: str | None = None, farm: str | None = None) -> None:
        self.driver = driver
        self.farm: str | None = None
        self._name = name
        super().__init__(self._text(farm))
        self.farm = farm

    def _text(self, farm: str | None) -> str:
        where = f" on {farm}" if farm else f" on {self.driver}://" if self.driver else ""
        return f"{self.what} {self._name!r} not found{where}"

    def name_farm(self, farm: str | None) -> None:
        """Say which farm (the client's redacted URL), unless the text already does."""
        if farm and self.farm is None:
            from .redaction import redact

            self.farm = farm
            self.args = (redact(self._text(farm)),)


class JobNotFound(_NotFound):
    what = "job"

    def __init__(self, job_id: str, *, driver: str | None = None, farm: str | None = None) -> None:
        self.job_id = job_id
        super().__init__(job_id, driver=driver, farm=farm)


class PoolNotFound(_NotFound):
    what = "pool"

    def __init__(self, pool: str, *, driver: str | None = None, farm: str | None = None) -> None:
        self.pool = pool
        super().__init__(pool, driver=driver, farm=farm)


class InvalidSpec(FarmError, ValueError):
    """Bad input. ``field`` names what was wrong (dotted path), ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class UnsupportedError(FarmError, NotImplementedError):
    def __init__(self, driver: str, feature: str, detail: str = "") -> None:
        self.driver = driver
        self.feature = feature
        msg = f"the {driver} driver does not support {feature}"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class JobNotRunning(FarmError):
    """An operation that needs a live job (attach, exec, port_forward, signal) met one
    that is not running: finished, or not started yet."""

    def __init__(self, job_id: str, status: object, operation: str) -> None:
        self.job_id = job_id
        self.status = status
        self.operation = operation
        super().__init__(f"cannot {operation} job {job_id!r}: it is {status}")


class StatusNotReached(JobNotRunning):
    """``jobs.wait(job_id, until=...)`` met a job that finished without reaching any
    status asked for. ``wanted`` is what was asked, ``status`` what the job reached,
    ``job`` its final state. A ``JobNotRunning``, so waiting for RUNNING and attaching
    fail alike."""

    def __init__(self, job_id: str, wanted: object, status: object, job: object = None) -> None:
        super().__init__(job_id, status, "wait")
        self.wanted = wanted
        self.job = job
        names = ", ".join(sorted(str(s) for s in wanted)) if isinstance(wanted, (set, frozenset)) else str(wanted)
        self.args = (f"job {job_id!r} finished as {status} without reaching {names}",)

    def __str__(self) -> str:
        return str(self.args[0])


class WaitTimeout(FarmError, TimeoutError):
    def __init__(self, job_ids: object, timeout: float, last: object = None) -> None:
        self.job_ids = job_ids
        self.timeout = timeout
        self.last = last
        super().__init__(f"timed out after {timeout:g}s waiting for {job_ids}")


class AuthError(FarmError):
    """The back end refused our credentials."""


class BackendError(FarmError):
    """The back end answered with an error; ``code`` and ``message`` are its own."""

    def __init__(self, driver: str, code: str | int | None, message: str) -> None:
        from .redaction import redact

        self.driver = driver
        self.code = code
        self.message = message = redact(message)
        super().__init__(f"{driver}: {code}: {message}" if code is not None else f"{driver}: {message}")


class ConnectionLost(FarmError, ConnectionError):
    """The connection to the back end failed and retries did not bring it back."""


class TransientError(FarmError):
    """A failure that may pass if the same call is made again: throttling, a 5xx, a
    connection refused, reset or timed out. A driver makes ONE attempt and raises it;
    the client layer retries the call where that is safe (:mod:`aiofarm.retry`) and
    raises it as it is once out of attempts. ``retry_after``: the seconds the back end
    asked the caller to wait (a ``Retry-After``), None when it did not say.

    Raised as one of its two kinds, so code catching ``BackendError`` or
    ``ConnectionLost`` keeps catching it."""

    retry_after: float | None = None


class BackendUnavailable(TransientError, BackendError):
    """The back end answered "not now": throttled, overloaded, a 5xx, "try again later"."""

    def __init__(self, driver: str, code: str | int | None, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(driver, code, message)
        self.retry_after = retry_after


class ConnectionFailed(TransientError, ConnectionLost):
    """No answer: the connection was refused, reset or timed out."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StateError(FarmError):
    """The farm could not record a change in its state (e.g. the disk is full).
    ``operation`` is what could not be recorded, ``message`` the storage's own words.
    The farm keeps serving reads and retries pending changes by itself."""

    def __init__(self, operation: str, message: str) -> None:
        self.operation = operation
        self.message = message
        super().__init__(f"cannot record {operation}: {message}")


class StateLocked(FarmError):
    """The local farm's state directory is owned by another live process."""


class RemoteError(FarmError):
    """A farm-run Python function raised. ``type_name`` is the remote exception's
    qualified type name, ``message`` its ``str()``, ``remote_traceback`` the formatted
    traceback text from the worker; ``job_id`` the job that ran it."""

    def __init__(
        self,
        type_name: str,
        message: str,
        remote_traceback: str = "",
        *,
        job_id: str | None = None,
    ) -> None:
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback
        self.job_id = job_id
        super().__init__(f"{type_name}: {message}" if message else type_name)

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n\nRemote traceback:\n{self.remote_traceback}" if self.remote_traceback else base
