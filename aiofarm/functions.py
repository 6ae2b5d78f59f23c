"""Python functions run on the farm (Descartes Labs ``compute`` style): ``farm.functions``.

::

    fn = farm.functions.create(render_tile, cpus=1, max_concurrency=4, retries=1)
    job = await fn(3, zoom=12)                       # one call = one job
    batch = await fn.map([[1], [2], [3]])            # BulkResult: .jobs, .errors, .is_success
    async for job in fn.as_completed(batch.jobs):
        value = await farm.functions.result(job)     # the value, or raises RemoteError
    values = await fn.results()                      # every successful call, in call order

How a call runs: the job's command is ``python aiofarm/adaptors/function_runner.py
CALL_DIR`` (by file path, so the child needs the standard library and cloudpickle,
not aiofarm). Files, under the functions directory::

    <root>/<function id>/function.pkl            the callable + the submitter's sys.path
    <root>/<function id>/calls/<call id>/input.pkl    (args, kwargs)
    <root>/<function id>/calls/<call id>/result.pkl   written by the child, atomically

Serialisation is **pickle** (cloudpickle for the callable and arguments, so lambdas and
closures work). Unpickling runs code: the farm runs whatever the submitter pickled, and
the client unpickles whatever a worker wrote. Use functions only with a farm and a
functions directory you trust. Results are ``{"ok": True, "value": ...}`` or
``{"ok": False, "type": ..., "message": ..., "traceback": ...}``: the remote exception
is carried as text and re-raised here as :class:`aiofarm.RemoteError`, never unpickled.

The functions directory is, in order: ``Functions(client, root=...)``, the
``AIOFARM_FUNCTIONS_DIR`` environment variable, ``<state dir>/functions`` for a driver
with a state dir of its own (``drivers.base.HasStateDir``: local://), ``$XDG_DATA_HOME/aiofarm/functions``. For a remote farm it must be on
a filesystem the workers see at the same path.

``max_concurrency``: each Function with a limit gets its own pool of that many slots
(created on the first call, named ``fn-<name>-<id>``), so the farm's scheduler holds
the rest back; nothing on the client has to stay alive for the limit to hold. Drivers
without pool management raise UnsupportedError for it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from .errors import FarmError, InvalidSpec, PoolNotFound, RemoteError
from .models import Capability, Job, JobSpec, JobStatus, Resources
from .validation import MAX_COUNT, check_count, check_seconds, check_text

if TYPE_CHECKING:
    from .client import Client

__all__ = ["BulkError", "BulkResult", "Function", "Functions"]

RUNNER = str(Path(__file__).resolve().parent / "adaptors" / "function_runner.py")
TAG = "aiofarm.function"
_CALL_TAG = "aiofarm.call:"
_MAX_BATCH = 1000


def _dumps(value: Any) -> bytes:
    import cloudpickle  # type: ignore[import-untyped]

    return bytes(cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@attrs.frozen
class BulkError:
    """An item of ``map`` that was not submitted, and why."""

    index: int
    error: BaseException


@attrs.frozen
class BulkResult:
    """What ``Function.map`` submitted. ``jobs[k]`` ran item ``indices[k]``; items that
    could not be submitted are in ``errors`` (their ``index`` is the item's position)."""

    jobs: tuple[Job, ...]
    indices: tuple[int, ...]
    errors: tuple[BulkError, ...]

    @property
    def is_success(self) -> bool:
        return not self.errors

    def __len__(self) -> int:
        return len(self.jobs)

    def __iter__(self) -> Any:
        return iter(self.jobs)


class Function:
    """A Python callable the farm runs; made by :meth:`Functions.create`."""

    def __init__(
        self,
        functions: Functions,
        func: Callable[..., Any],
        *,
        name: str,
        cpus: float,
        memory_mb: int | None,
        max_concurrency: int | None,
        timeout: float | None,
        retries: int,
        env: Mapping[str, str],
        pool: str | None,
    ) -> None:
        self._functions = functions
        self.func = func
        self.id = uuid.uuid4().hex[:16]
        self.name = name
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.retries = retries
        self.env = dict(env)
        self.pool = pool
        self.job_ids: list[str] = []
        self._dir: Path | None = None
        self._pool_ready = False
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"<aiofarm.Function {self.name!r} id={self.id} jobs={len(self.job_ids)}>"

    @property
    def directory(self) -> Path:
        return self._functions.root / self.id

    @property
    def pool_name(self) -> str | None:
        """The pool this function's jobs go to (its own one when max_concurrency is set)."""
        if self.max_concurrency is None:
            return self.pool
        slug = re.sub(r"[^A-Za-z0-9._-]", "-", self.name)[:40].strip("-._") or "fn"
        return f"fn-{slug}-{self.id[:8]}"

    async def _prepare(self) -> None:
        """Write the callable once and make the pool, on the first call."""
        async with self._lock:
            if self._dir is None:
                # Two layers: the outer plain pickle carries sys.path, which the child
                # must set before it can import the function's module.
                payload = pickle.dumps(
                    {"function": _dumps(self.func), "sys_path": _sys_path(), "name": self.name}
                )
                directory = self.directory

                def write() -> None:
                    (directory / "calls").mkdir(parents=True, exist_ok=True)
                    _write_atomic(directory / "function.pkl", payload)

                await anyio.to_thread.run_sync(write)
                self._dir = directory
            if self.max_concurrency is not None and not self._pool_ready:
                client = self._functions.client
                name = self.pool_name
                assert name is not None
                try:
                    await client.pools.get(name)
                except PoolNotFound:
                    await client.pools.create(name, slots=self.max_concurrency)
                self._pool_ready = True

    def _spec(self, call_id: str, tags: Sequence[str], env: Mapping[str, str] | None = None) -> JobSpec:
        call_dir = self.directory / "calls" / call_id
        return JobSpec(
            command=(sys.executable, RUNNER, str(call_dir)),
            name=self.name,
            env={**self.env, **env} if env else self.env,
            pool=self.pool_name,
            tags=(TAG, f"{_CALL_TAG}{self.id}/{call_id}", *tags),
            resources=Resources(cpu=self.cpus, memory_mb=self.memory_mb),
            timeout=self.timeout,
            retries=self.retries,
        )

    def _stage(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        """Write one call's input; the call id. Raises what pickling raises."""
        data = _dumps((tuple(args), dict(kwargs)))
        call_id = uuid.uuid4().hex
        call_dir = self.directory / "calls" / call_id
        call_dir.mkdir(parents=True)
        _write_atomic(call_dir / "input.pkl", data)
        return call_id

    async def __call__(self, *args: Any, **kwargs: Any) -> Job:
        """Submit one call; the job. Arguments that cannot be pickled raise InvalidSpec."""
        await self._prepare()
        try:
            call_id = await anyio.to_thread.run_sync(self._stage, args, kwargs)
        except Exception as exc:
            raise InvalidSpec("args", f"cannot be pickled: {type(exc).__name__}: {exc}") from exc
        (job,) = await self._functions.client.jobs.submit([self._spec(call_id, ())])
        self.job_ids.append(job.id)
        return job

    async def map(
        self,
        args: Iterable[Iterable[Any]],
        kwargs: Iterable[Mapping[str, Any]] | None = None,
        tags: Sequence[str] = (),
        batch_size: int = 1000,
        environments: Iterable[Mapping[str, str]] | None = None,
        progress: bool | None = False,
    ) -> BulkResult:
        """Submit one job per item of ``args`` (each an iterable of positional
        arguments; ``kwargs`` and ``environments``, if given, have one mapping per item;
        an item's environment is merged over the Function's ``env``). Items that cannot
        be pickled, and batches the farm refuses, end up in ``errors``; the first batch
        failing as a whole raises, as Descartes Labs' ``map`` does. ``progress=True``
        shows how many are submitted (HTML in Jupyter, a bar on stderr elsewhere; None:
        only in Jupyter); ``fn.as_completed(..., progress=True)`` then shows them finish."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= _MAX_BATCH:
            raise InvalidSpec("batch_size", f"must be an integer in 1..{_MAX_BATCH}")
        if isinstance(tags, str):
            tags = (tags,)
        items = [list(a) for a in args]
        kw_items: list[Mapping[str, Any]]
        if kwargs is None:
            kw_items = [{}] * len(items)
        else:
            kw_items = list(kwargs)
            if len(kw_items) != len(items):
                raise InvalidSpec("kwargs", f"has {len(kw_items)} items for {len(items)} args")
            for i, kw in enumerate(kw_items):
                if not isinstance(kw, Mapping):
                    raise InvalidSpec(f"kwargs[{i}]", "must be a mapping")
        env_items: list[Mapping[str, str]] = [{}] * len(items)
        if environments is not None:
            env_items = list(environments)
            if len(env_items) != len(items):
                raise InvalidSpec("environments", f"has {len(env_items)} items for {len(items)} args")
            for i, env in enumerate(env_items):
                if not isinstance(env, Mapping) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in env.items()
                ):
                    raise InvalidSpec(f"environments[{i}]", "must be a mapping of str to str")
        await self._prepare()
        errors: list[BulkError] = []
        staged: list[tuple[int, str]] = []

        def stage_all() -> None:
            for i, (a, kw) in enumerate(zip(items, kw_items, strict=True)):
                try:
                    staged.append((i, self._stage(a, kw)))
                except Exception as exc:
                    reason = f"cannot be pickled: {type(exc).__name__}: {exc}"
                    errors.append(BulkError(i, InvalidSpec(f"args[{i}]", reason)))

        # Pickling and writing thousands of input files is blocking work: off the loop.
        await anyio.to_thread.run_sync(stage_all)
        from .progress import count_display

        counter = count_display(len(items), "submitted", progress)
        counter.add(len(errors), failed=len(errors))
        jobs: list[Job] = []
        indices: list[int] = []
        first = True
        for start in range(0, len(staged), batch_size):
            batch = staged[start : start + batch_size]
            specs = [self._spec(call_id, tags, env_items[i]) for i, call_id in batch]
            try:
                created = await self._functions.client.jobs.submit(specs)
            except FarmError as exc:
                if first:
                    counter.close()
                    raise
                errors.extend(BulkError(i, exc) for i, _ in batch)
                counter.add(len(batch), failed=len(batch))
                continue
            finally:
                first = False
            counter.add(len(batch))
            jobs.extend(created)
            indices.extend(i for i, _ in batch)
            self.job_ids.extend(job.id for job in created)
        errors.sort(key=lambda e: e.index)
        return BulkResult(tuple(jobs), tuple(indices), tuple(errors))

    async def as_completed(
        self, jobs: Iterable[Job | str], timeout: float | None = None, *, progress: bool | None = False
    ) -> AsyncIterator[Job]:
        """Yield each job as it finishes (succeeded, failed or canceled)."""
        ids = _ids(jobs)
        if not ids:
            return
        async for job in self._functions.client.jobs.as_completed(ids, timeout=timeout, progress=progress):
            yield job

    async def wait_for_completion(self, timeout: float | None = None) -> None:
        """Wait until every job this Function submitted is finished."""
        async for _ in self.as_completed(list(self.job_ids), timeout=timeout):
            pass

    async def results(
        self, jobs: Iterable[Job | str] | None = None, *, return_exceptions: bool = False
    ) -> list[Any]:
        """Wait for the jobs (default: all this Function submitted) and return their
        values in submission order. Failed calls are left out, as in Descartes Labs'
        ``results()``; with ``return_exceptions=True`` the list has one entry per job,
        a :class:`RemoteError` where the call failed."""
        ids = _ids(self.job_ids if jobs is None else jobs)
        await self.wait(ids)
        out: list[Any] = []
        for job_id in ids:
            try:
                out.append(await self._functions.result(job_id, wait=False))
            except RemoteError as exc:
                if return_exceptions:
                    out.append(exc)
        return out

    async def iter_results(self, jobs: Iterable[Job | str] | None = None) -> AsyncIterator[Any]:
        """The values of the successful calls as their jobs finish (failures skipped)."""
        ids = _ids(self.job_ids if jobs is None else jobs)
        if not ids:
            return
        async for job in self._functions.client.jobs.as_completed(ids):
            if job.status is JobStatus.SUCCEEDED:
                try:
                    yield await self._functions.result(job, wait=False)
                except RemoteError:
                    continue

    async def wait(self, jobs: Iterable[Job | str]) -> None:
        ids = _ids(jobs)
        if ids:
            async for _ in self._functions.client.jobs.as_completed(ids):
                pass

    async def cancel_jobs(self, jobs: Iterable[Job | str] | None = None) -> None:
        ids = _ids(self.job_ids if jobs is None else jobs)
        if ids:
            await self._functions.client.jobs.cancel(ids)

    async def rerun(self, jobs: Iterable[Job | str] | None = None) -> None:
        """Run the failed or canceled calls again (same inputs)."""
        ids = _ids(self.job_ids if jobs is None else jobs)
        if not ids:
            return
        found = await self._functions.client.jobs.get_many(ids)
        again = [j.id for j in found if j.status in (JobStatus.FAILED, JobStatus.CANCELED)]
        if again:
            await self._functions.client.jobs.retry(again)

    async def delete(self, *, delete_results: bool = False) -> None:
        """Delete this Function's jobs and its pool; its files too with ``delete_results``."""
        client = self._functions.client
        if self.job_ids:
            await client.jobs.delete(list(self.job_ids))
            self.job_ids.clear()
        if self.max_concurrency is not None and self._pool_ready:
            name = self.pool_name
            assert name is not None
            with contextlib.suppress(PoolNotFound):
                await client.pools.delete(name)
            self._pool_ready = False
        if delete_results:
            import shutil

            await anyio.to_thread.run_sync(shutil.rmtree, self.directory, True)
            self._dir = None


def _ids(jobs: Iterable[Job | str]) -> list[str]:
    if isinstance(jobs, (str, Job)):
        jobs = [jobs]
    out = []
    for j in jobs:
        out.append(j.id if isinstance(j, Job) else j)
    return out


def _sys_path() -> list[str]:
    """The submitter's import path, absolute, so a function defined in a module the
    child can reach (a test module, a script's directory) unpickles there."""
    out: list[str] = []
    for p in sys.path:
        full = os.path.abspath(p or os.getcwd())
        if full not in out:
            out.append(full)
    return out


def _default_root() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "aiofarm" / "functions"


class Functions:
    """``farm.functions``: make Functions and read their results. Uses only the public
    client API (jobs.submit / as_completed / get, pools.create)."""

    def __init__(self, client: Client, *, root: str | os.PathLike[str] | None = None) -> None:
        self.client = client
        self._root = Path(root) if root is not None else None

    @property
    def root(self) -> Path:
        """The functions directory (see the module's doc for how it is chosen)."""
        if self._root is not None:
            return self._root
        env = os.environ.get("AIOFARM_FUNCTIONS_DIR")
        if env:
            return Path(env)
        from .drivers.base import HasStateDir

        driver = self.client.driver  # raises FarmError until the client is open
        self._root = Path(driver.state_dir) / "functions" if isinstance(driver, HasStateDir) else _default_root()
        return self._root

    def create(
        self,
        func: Callable[..., Any],
        name: str | None = None,
        cpus: float = 1,
        memory_mb: int | None = None,
        max_concurrency: int | None = None,
        timeout: float | None = None,
        retries: int = 0,
        env: Mapping[str, str] | None = None,
        pool: str | None = None,
    ) -> Function:
        if not callable(func):
            raise InvalidSpec("func", f"must be callable, got {type(func).__name__}")
        if name is None:
            name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or "function"
        check_text(name, "name")
        if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not 0 < cpus <= MAX_COUNT:
            raise InvalidSpec("cpus", f"must be a positive number at most {MAX_COUNT}, got {cpus!r}"[:200])
        check_count(memory_mb, "memory_mb", minimum=1, allow_none=True)
        check_count(max_concurrency, "max_concurrency", minimum=1, allow_none=True)
        if timeout is not None:
            check_seconds(timeout, "timeout", strict=True)
        check_count(retries, "retries")
        env = dict(env or {})
        for k, v in env.items():
            check_text(k, "env")
            check_text(v, f"env[{k!r}]", limit=None, empty=True)
        # results come back through a filesystem the workers share with this client
        self.client.require(Capability.FUNCTIONS)
        self.client.require(Capability.FUNCTIONS_MAX_CONCURRENCY, max_concurrency)
        if max_concurrency is not None and pool is not None:
            raise InvalidSpec("pool", "max_concurrency gives the function its own pool; do not set both")
        return Function(
            self,
            func,
            name=name,
            cpus=float(cpus),
            memory_mb=memory_mb,
            max_concurrency=max_concurrency,
            timeout=float(timeout) if timeout is not None else None,
            retries=retries,
            env=env,
            pool=pool,
        )

    def _result_path(self, job: Job) -> Path:
        for tag in job.tags:
            if tag.startswith(_CALL_TAG):
                fn_id, _, call_id = tag[len(_CALL_TAG) :].partition("/")
                if fn_id and call_id and "/" not in call_id and ".." not in (fn_id, call_id):
                    return self.root / fn_id / "calls" / call_id / "result.pkl"
        raise InvalidSpec("job", f"job {job.id!r} is not a function call")

    async def result(
        self, job: Job | str, *, wait: bool = True, timeout: float | None = None
    ) -> Any:
        """The call's return value; raises :class:`RemoteError` with the remote type,
        message and traceback if it raised (or if its job ended without a result)."""
        job_id = job.id if isinstance(job, Job) else job
        if wait:
            final = (await self.client.jobs.wait(job_id, timeout=timeout)).job
        else:
            final = await self.client.jobs.get(job_id)
        path = self._result_path(final)
        try:
            data = await anyio.Path(path).read_bytes()
        except FileNotFoundError:
            data = None
        except OSError as exc:
            raise FarmError(f"cannot read the result of job {job_id!r}: {exc}") from None
        if data is None:
            if not final.status.is_finished:
                raise RemoteError("aiofarm.NotFinished", f"job is {final.status}", job_id=job_id)
            why = final.reason or (f"exit code {final.exit_code}" if final.exit_code is not None else "")
            raise RemoteError(
                "aiofarm.NoResult",
                f"job {final.status} without a result" + (f": {why}" if why else ""),
                job_id=job_id,
            )
        try:
            record = pickle.loads(data)
        except Exception as exc:
            raise RemoteError("aiofarm.BadResult", f"cannot unpickle the result: {exc}", job_id=job_id) from None
        if record.get("ok"):
            return record.get("value")
        raise RemoteError(
            str(record.get("type", "Exception")),
            str(record.get("message", "")),
            str(record.get("traceback", "")),
            job_id=job_id,
        )
