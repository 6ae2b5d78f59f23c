"""The AWS side of the deadline driver: aiobotocore clients, one call with its error
translation, pages, and the queue role's credentials.

Every request of the driver goes through :meth:`DeadlineApi.call`: ONE attempt, with
botocore's own retries turned off (``total_max_attempts`` 1 on every client), every
failure leaving as an aiofarm error. A failure that may pass (throttling, 5xx, a
reset connection, transiently failed items of a batch answer) is
``BackendUnavailable`` / ``ConnectionFailed``, which the client layer retries where
that is safe (``aiofarm/retry.py``, ``Driver.retry_attempts`` attempts): one layer
decides, so attempts never multiply.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import anyio

from ...errors import (
    AuthError,
    BackendError,
    BackendUnavailable,
    ConnectionFailed,
    ConnectionLost,
    FarmError,
    InvalidSpec,
    JobNotFound,
)
from ...models import Job
from . import wire

__all__ = ["NAME", "DeadlineApi", "concurrently"]

NAME = "deadline"
T = TypeVar("T")

AUTH_CODES = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
        "IncompleteSignature",
        "InvalidAccessKeyId",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "InternalServerErrorException",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "SlowDown",
    }
)


class PartialFailure(Exception):
    """Some items of a batch answer failed transiently: a transient failure of the call."""


def is_transient(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError, HTTPClientError  # type: ignore[import-untyped]
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, PartialFailure):
        return True
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return err.get("Code") in TRANSIENT_CODES or int(status) >= 500
    if isinstance(exc, (BotoConnectionError, HTTPClientError, ConnectionError, TimeoutError)):
        return True
    import aiohttp

    return isinstance(exc, aiohttp.ClientError)


def _field_of(op: str, message: str) -> str:
    m = re.search(r"parameter (\w+)", message)
    if m:
        return f"parameters.{m.group(1)}"
    if "template" in message.lower():
        return "template"
    m = re.match(r"(\w+)(\.\w+)*:", message)
    return m.group(0).rstrip(":") if m else op


def translate(exc: BaseException, op: str, job_id: str | None = None) -> FarmError:
    """An aiofarm error for what botocore (or the network) raised."""
    from botocore.exceptions import (
        ClientError,
        NoCredentialsError,
        NoRegionError,
        ParamValidationError,
        PartialCredentialsError,
    )

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "Unknown"))
        message = str(err.get("Message") or exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in AUTH_CODES or status == 401:
            return AuthError(f"deadline {op}: {code}: {message}")
        if code == "ResourceNotFoundException" and job_id is not None:
            return JobNotFound(job_id, driver=NAME)
        if code == "ValidationException":
            return InvalidSpec(_field_of(op, message), message)
        if code in TRANSIENT_CODES or status >= 500:
            return BackendUnavailable(NAME, code, f"{op}: {message}", retry_after=_retry_after(exc.response))
        return BackendError(NAME, code, message)
    if isinstance(exc, PartialFailure):
        return BackendUnavailable(NAME, "PartialFailure", f"{op}: {exc}")
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return AuthError(f"deadline: {exc}")
    if isinstance(exc, ParamValidationError):
        return InvalidSpec(op, str(exc))
    if isinstance(exc, NoRegionError):
        return InvalidSpec("url", "no AWS region: add ?region=... or configure one")
    if is_transient(exc) or isinstance(exc, OSError):
        return ConnectionFailed(f"deadline {op}: {exc}")
    return BackendError(NAME, type(exc).__name__, str(exc))


def _retry_after(response: Mapping[str, Any]) -> float | None:
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders") or {}
    try:
        value = headers.get("retry-after")
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


class DeadlineApi:
    """The aiobotocore session and clients of one driver (or one discovery call)."""

    def __init__(
        self,
        *,
        farm_id: str = "",
        queue_id: str = "",
        region: str | None = None,
        profile: str | None = None,
        endpoint_url: str | None = None,
        logs_endpoint_url: str | None = None,
        s3_endpoint_url: str | None = None,
        concurrency: int = 16,
        retry_mode: str = "standard",
    ) -> None:
        self.farm_id = farm_id
        self.queue_id = queue_id
        self.region = region
        self.profile = profile
        self.endpoint_url = endpoint_url
        self.logs_endpoint_url = logs_endpoint_url
        self.s3_endpoint_url = s3_endpoint_url
        self.retry_mode = retry_mode
        self.limiter = anyio.CapacityLimiter(concurrency)
        self.session: Any = None
        self.dl: Any = None
        # the poller's requests (BatchGetJob, and SearchJobs for the change feed) are
        # built from ids that already passed wire.JOB_RE and from fixed filters;
        # botocore's per-request validation of 100 identifiers was a fifth of a poll
        # round's CPU, so those calls skip it
        self.dl_status: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._role_lock = anyio.Lock()
        self._role: dict[str, tuple[Mapping[str, Any], datetime]] = {}
        self._role_clients: dict[tuple[str, str], tuple[Any, contextlib.AsyncExitStack]] = {}

    @property
    def log_group(self) -> str:
        return f"/aws/deadline/{self.farm_id}/{self.queue_id}"

    # -- lifecycle ---------------------------------------------------------------
    async def open(self) -> None:
        from aiobotocore.session import AioSession  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]
        from botocore.exceptions import BotoCoreError, NoRegionError, ProfileNotFound

        stack = contextlib.AsyncExitStack()
        self._stack = stack
        try:
            session = AioSession(profile=self.profile)
            session.register_component("response_parser_factory", _parser_factory())
            extra: dict[str, Any] = {}
            if self.endpoint_url:
                # most operations carry a "management." host prefix, which only the
                # real endpoints resolve
                extra["inject_host_prefix"] = False
            config = self.config(max_pool_connections=64, **extra)
            kw = {"region_name": self.region, "endpoint_url": self.endpoint_url, "config": config}
            self.dl = await stack.enter_async_context(session.create_client("deadline", **kw))
            kw["config"] = config.merge(Config(parameter_validation=False))
            self.dl_status = await stack.enter_async_context(
                session.create_client("deadline", **kw)
            )
            self.session = session
        except ProfileNotFound as exc:
            raise AuthError(f"deadline: {exc}") from None
        except NoRegionError:
            raise InvalidSpec("url", "no AWS region: add ?region=... or configure one") from None
        except BotoCoreError as exc:
            raise translate(exc, "open") from None

    async def aclose(self) -> None:
        clients, self._role_clients = self._role_clients, {}
        for _, stack in clients.values():
            with contextlib.suppress(Exception):
                await stack.aclose()
        main, self._stack = self._stack, None
        self.dl = self.dl_status = None
        if main is not None:
            await main.aclose()

    # -- calls -------------------------------------------------------------------
    async def call(
        self, op: str, *, job_id: str | None = None, client: Any = None, **kw: Any
    ) -> dict[str, Any]:
        """One API call of ``client`` (the Deadline client by default)."""
        target = client if client is not None else self.dl
        if target is None:
            raise ConnectionLost("the deadline driver is not open")
        method: Callable[..., Awaitable[dict[str, Any]]] = getattr(target, op)
        return await self.run(op, lambda: method(**kw), job_id=job_id)

    async def run(
        self,
        op: str,
        fn: Callable[[], Awaitable[T]],
        *,
        job_id: str | None = None,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> T:
        """``fn`` under the concurrency limit (the Deadline API's, or ``limiter``), its
        failure translated."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            async with limiter or self.limiter:
                return await fn()
        except (ClientError, BotoCoreError, OSError, TimeoutError, PartialFailure) as exc:
            raise translate(exc, op, job_id) from None
        except Exception as exc:
            import aiohttp

            if isinstance(exc, aiohttp.ClientError):
                raise ConnectionFailed(f"deadline {op}: {exc}") from None
            raise

    async def pages(
        self, op: str, key: str, *, job_id: str | None = None, client: Any = None, **kw: Any
    ) -> list[dict[str, Any]]:
        """Every item of a paginated List* operation."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            resp = await self.call(
                op, job_id=job_id, client=client, **kw, **({"nextToken": token} if token else {})
            )
            items.extend(resp.get(key, []))
            token = resp.get("nextToken")
            if not token:
                return items

    def ids(self, job_id: str) -> dict[str, str]:
        return {"farmId": self.farm_id, "queueId": self.queue_id, "jobId": job_id}

    @staticmethod
    def check_job_id(job_id: str) -> None:
        if not wire.JOB_RE.match(job_id):
            raise JobNotFound(job_id, driver=NAME)

    async def batch_get(self, ids: Sequence[str], *, keep_archived: bool) -> dict[str, Job]:
        """BatchGetJob of at most 100 ids; items that failed transiently make the call
        a transient failure (the client layer asks again)."""
        wanted = list(dict.fromkeys(i for i in ids if wire.JOB_RE.match(i)))
        out: dict[str, Job] = {}
        if not wanted:
            return out

        async def once() -> None:
            resp = await self.dl_status.batch_get_job(
                identifiers=[self.ids(i) for i in wanted]
            )
            for item in resp.get("jobs", []):
                if keep_archived or item.get("lifecycleStatus") != "ARCHIVED":
                    out[item["jobId"]] = wire.job_from_wire(item, self.queue_id)
            again = []
            for err in resp.get("errors", []):
                code = err.get("code")
                if code in TRANSIENT_CODES:
                    again.append(err["jobId"])
                elif code in AUTH_CODES:
                    raise AuthError(f"deadline BatchGetJob: {err.get('message')}")
                elif code == "ValidationException":
                    raise InvalidSpec("ids", str(err.get("message")))
                # ResourceNotFoundException: simply absent
            if again:
                raise PartialFailure(f"{len(again)} job(s) failed transiently")

        if self.dl_status is None:
            raise ConnectionLost("the deadline driver is not open")
        await self.run("batch_get_job", once)
        return out

    # -- the queue role ------------------------------------------------------------
    async def role_client(self, service: str, role: str) -> Any:
        """A ``service`` client ("logs", "s3") with the queue role's credentials
        (AssumeQueueRoleForRead when ``role`` is "read", ForUser when "user"), as the
        official client uses them: the queue's role can read its logs and job
        attachments when the caller's own identity cannot. Renewed five minutes before
        the credentials expire."""
        async with self._role_lock:
            creds = self._role.get(role)
            now = datetime.now(timezone.utc)
            if creds is None or creds[1] - now < timedelta(minutes=5):
                op = "assume_queue_role_for_read" if role == "read" else "assume_queue_role_for_user"
                resp = await self.call(op, farmId=self.farm_id, queueId=self.queue_id)
                raw = resp["credentials"]
                expiration = raw["expiration"]
                expires = (
                    expiration if isinstance(expiration, datetime) else wire.parse_time(expiration)
                )
                creds = self._role[role] = (raw, expires)
                old = self._role_clients.pop((service, role), None)
                for other in [k for k in self._role_clients if k[1] == role]:
                    stale = self._role_clients.pop(other)
                    with contextlib.suppress(Exception):
                        await stale[1].aclose()
                if old is not None:
                    with contextlib.suppress(Exception):
                        await old[1].aclose()
            found = self._role_clients.get((service, role))
            if found is None:
                stack = contextlib.AsyncExitStack()
                client = await stack.enter_async_context(self.create_client(service, creds[0]))
                found = self._role_clients[(service, role)] = (client, stack)
            return found[0]

    def create_client(self, service: str, credentials: Mapping[str, Any] | None = None) -> Any:
        """An aiobotocore client context manager for ``logs`` or ``s3`` (with
        ``credentials`` from AssumeQueueRole*, else the session's own)."""
        keys = {}
        if credentials is not None:
            keys = {
                "aws_access_key_id": credentials["accessKeyId"],
                "aws_secret_access_key": credentials["secretAccessKey"],
                "aws_session_token": credentials["sessionToken"],
            }
        endpoint = self.logs_endpoint_url if service == "logs" else self.s3_endpoint_url
        extra: dict[str, Any] = {}
        if service == "s3":
            # payloads are not SHA-256 signed, over plain HTTP either (botocore skips it
            # over HTTPS already): each body carries a CRC32 computed beside its hash
            extra = {
                "max_pool_connections": 64,
                "s3": {"addressing_style": "path", "payload_signing_enabled": False},
            }
        return self.session.create_client(
            service, region_name=self.region, endpoint_url=endpoint, config=self.config(**extra), **keys
        )

    def config(self, **extra: Any) -> Any:
        """A botocore client config making ONE attempt per request (aiofarm/retry.py
        decides about another). ``retry_mode`` still matters for ``adaptive``, whose
        client-side rate limiter holds requests back after throttling."""
        from botocore.config import Config

        return Config(retries={"mode": self.retry_mode, "total_max_attempts": 1}, **extra)


async def concurrently(fns: Sequence[Callable[[], Awaitable[None]]]) -> None:
    """Run ``fns`` concurrently; the first aiofarm error stops the rest and is raised as
    itself (not wrapped in an exception group)."""
    errors: list[FarmError] = []
    async with anyio.create_task_group() as tg:

        async def run(fn: Callable[[], Awaitable[None]]) -> None:
            try:
                await fn()
            except FarmError as exc:
                if not errors:
                    errors.append(exc)
                tg.cancel_scope.cancel()

        for fn in fns:
            tg.start_soon(run, fn)
    if errors:
        raise errors[0]


#: responses decoded with json.loads alone: the poller's hot path. Walking the shape
#: tree for 100 job records costs several times the JSON decoding, and wire.py reads
#: the ISO 8601 timestamps itself.
_PLAIN_JSON_SHAPES = frozenset({"BatchGetJobResponse"})


def _parser_factory() -> Any:
    import json

    from aiobotocore.parsers import PROTOCOL_PARSERS, AioResponseParserFactory  # type: ignore[import-untyped]

    base: Any = PROTOCOL_PARSERS["rest-json"]

    class PlainJSONParser(base):  # type: ignore[misc]
        def _do_parse(self, response: dict[str, Any], shape: Any) -> Any:
            if shape is not None and shape.name in _PLAIN_JSON_SHAPES:
                return json.loads(response.get("body") or b"{}")
            return super()._do_parse(response, shape)

    class Factory(AioResponseParserFactory):  # type: ignore[misc]
        def create_parser(self, protocol_name: str) -> Any:
            if protocol_name == "rest-json":
                return PlainJSONParser(**self._defaults)
            return super().create_parser(protocol_name)

    factory = Factory()
    # botocore parses every other timestamp with dateutil; Deadline sends ISO 8601,
    # which the stdlib parses far faster (anything else still goes to botocore's)
    factory.set_parser_defaults(timestamp_parser=wire.parse_time)
    return factory
