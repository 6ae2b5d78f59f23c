"""The aiohttp server around :class:`FakeDeadline`: the Deadline REST-JSON API (validated
against botocore's model both ways), an admin API under ``/_fake/`` for the test, fault
injection, per-operation request counts, and session logs shipped to CloudWatch Logs
(moto in server mode).

Admin API (JSON bodies):
  GET  /_fake/state                      default farm/queue/fleet ids, tick, log endpoint
  POST /_fake/advance {"ticks": n}       move the clock n steps
  POST /_fake/auto {"interval": s|null}  tick every s seconds of real time (null: stop)
  POST /_fake/fail {"rules": [...]}      which task attempts fail (state.py: _exit_code)
  POST /_fake/faults {"rate": r, "kinds": ["throttle", "500", "reset", "reset-after", "slow"],
                      "slow_seconds": s, "operations": [...], "seed": n, "limit": n}
       reset: the connection drops before the work; reset-after: after it (reply lost);
       limit: inject at most n faults
  GET  /_fake/stats, POST /_fake/stats/reset   requests per operation
  POST /_fake/seed {"count": n, "template": ..., "templateType": ..., ...}  bulk CreateJob
  POST /_fake/config {"log_lines": n, "execute": bool}   execute: really run task commands
  POST /_fake/reset                      forget jobs, rules, faults, counts, added farms
  POST /_fake/farm {"displayName": ..., "workers": n}   another farm, queue and fleet
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import random
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

from . import worker
from .protocol import Invalid, ServiceProtocol
from .state import ApiError, FakeDeadline

__all__ = ["ATTACHMENTS_BUCKET", "ATTACHMENTS_PREFIX", "FakeServer"]

ATTACHMENTS_BUCKET = "fake-job-attachments"
ATTACHMENTS_PREFIX = "DeadlineCloud"

log = logging.getLogger("fake-deadline")


class FakeServer:
    def __init__(
        self,
        *,
        logs_endpoint: str | None = None,
        workers: int = 4,
        auto_interval: float | None = None,
        region: str = "us-west-2",
        execute: bool = False,
        s3_endpoint: str | None = None,
    ) -> None:
        self.proto = ServiceProtocol()
        self.state = FakeDeadline(workers=workers)
        self.logs_endpoint = logs_endpoint
        # with S3 (moto), the default queue has job attachments in this bucket
        self.s3_endpoint = s3_endpoint
        self.attachments = (
            {"s3BucketName": ATTACHMENTS_BUCKET, "rootPrefix": ATTACHMENTS_PREFIX}
            if s3_endpoint
            else None
        )
        self.state.reset_farms(self.attachments)
        self.region = region
        self.stats: Counter[str] = Counter()
        self.faults: dict[str, Any] = {}
        self._rng = random.Random(0)
        self._auto_interval = auto_interval
        self._auto_task: asyncio.Task[None] | None = None
        self._logs_client: Any = None
        self._logs_cm: Any = None
        self._known_streams: set[tuple[str, str]] = set()
        self._known_groups: set[str] = set()
        self._log_lock = asyncio.Lock()
        self._seq: dict[tuple[str, str], int] = {}
        self._procs: set[asyncio.subprocess.Process] = set()
        self._runners: set[asyncio.Task[None]] = set()
        self._execute_default = execute
        self.state.execute = execute

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_get("/_fake/state", self.h_state)
        app.router.add_post("/_fake/advance", self.h_advance)
        app.router.add_post("/_fake/auto", self.h_auto)
        app.router.add_post("/_fake/fail", self.h_fail)
        app.router.add_post("/_fake/faults", self.h_faults)
        app.router.add_get("/_fake/stats", self.h_stats)
        app.router.add_post("/_fake/stats/reset", self.h_stats_reset)
        app.router.add_post("/_fake/seed", self.h_seed)
        app.router.add_post("/_fake/config", self.h_config)
        app.router.add_post("/_fake/reset", self.h_reset)
        app.router.add_post("/_fake/farm", self.h_farm)
        app.router.add_route("*", "/{tail:.*}", self.h_api)
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, app: web.Application) -> None:
        if self.logs_endpoint:
            from aiobotocore.session import get_session

            self._logs_cm = get_session().create_client(
                "logs",
                region_name=self.region,
                endpoint_url=self.logs_endpoint,
                aws_access_key_id="fake",
                aws_secret_access_key="fake",
            )
            self._logs_client = await self._logs_cm.__aenter__()
        if self.s3_endpoint:
            await self._create_bucket()
        if self._auto_interval:
            self._auto_task = asyncio.get_running_loop().create_task(self._auto_loop())

    async def _create_bucket(self) -> None:
        from aiobotocore.session import get_session

        async with get_session().create_client(
            "s3", region_name=self.region, endpoint_url=self.s3_endpoint,
            aws_access_key_id="fake", aws_secret_access_key="fake",
        ) as s3:  # fmt: skip
            await s3.create_bucket(
                Bucket=ATTACHMENTS_BUCKET,
                CreateBucketConfiguration={"LocationConstraint": self.region},
            )

    async def _cleanup(self, app: web.Application) -> None:
        await self._stop_auto()
        for proc in list(self._procs):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for runner in list(self._runners):
            runner.cancel()
        if self._runners:
            await asyncio.gather(*self._runners, return_exceptions=True)
        if self._logs_cm is not None:
            await self._logs_cm.__aexit__(None, None, None)

    async def _stop_auto(self) -> None:
        if self._auto_task is not None:
            self._auto_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._auto_task
            self._auto_task = None

    async def _auto_loop(self) -> None:
        while True:
            await asyncio.sleep(self._auto_interval or 0.1)
            self.state.tick()
            await self.flush_logs()

    # -- logs -------------------------------------------------------------------
    def _launch(self) -> None:
        launches, self.state.launches = self.state.launches, []
        for task, action_id, group, stream in launches:
            runner = asyncio.get_running_loop().create_task(
                self._run_task(task, action_id, group, stream)
            )
            self._runners.add(runner)
            runner.add_done_callback(self._runners.discard)

    async def _run_task(self, task: Any, action_id: str, group: str, stream: str) -> None:
        """Be the worker: fetch the job's input files (official code), run the task's
        command in a session directory, upload what it wrote to its output directories
        (official code), ship its output, report its exit code."""
        job = task.step.job
        loop = asyncio.get_running_loop()
        settings = self.state.queue_settings.get(job.queue_id, {}).get("jobAttachmentSettings")
        attached = bool(job.attachments and settings and self.s3_endpoint)
        session_dir = tempfile.mkdtemp(prefix="fake-deadline-session-")
        started = time.time()
        code = 1
        try:
            rules: list[dict[str, str]] = []
            if attached:
                rules = await loop.run_in_executor(None, functools.partial(
                    worker.sync_inputs, settings, job.attachments, job.farm_id, job.queue_id,
                    job.job_id, session_dir,
                ))  # fmt: skip
                self.state._log(group, stream, f"Job attachments: inputs in {session_dir}")
            def resolve(argv: list[str]) -> list[str]:
                return worker.resolve(argv, job.parameters, task.parameters, session_dir, rules)

            code = await self._session(task, action_id, group, stream, session_dir, resolve)
            if attached and code == 0:
                await loop.run_in_executor(None, functools.partial(
                    worker.sync_outputs, settings, job.attachments, job.farm_id, job.queue_id,
                    job.job_id, task.step.step_id, task.task_id, action_id, started, session_dir,
                ))  # fmt: skip
                self.state._log(group, stream, "Job attachments: outputs uploaded")
        except Exception as exc:  # what a worker reports as a failed session action
            self.state._log(group, stream, f"Job attachments failed: {type(exc).__name__}: {exc}")
            code = 1
        finally:
            shutil.rmtree(session_dir, ignore_errors=True)
        self.state.finish_executed(task, action_id, code)
        await self.flush_logs()

    async def _session(
        self, task: Any, action_id: str, group: str, stream: str, cwd: str,
        resolve: Callable[[list[str]], list[str]],
    ) -> int:  # fmt: skip
        """Enter the step's environments in order (an onEnter's ``openjd_env`` lines set
        variables for what follows), run the task if every one entered, then exit the
        entered ones in reverse order, as a worker's session does."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            **task.step.env,
        }
        action = next(
            (a for a in self.state.sessions[stream].actions if a.action_id == action_id), None
        )
        entered: list[dict[str, Any]] = []
        code = 0
        for environment in task.step.environments:
            if environment["enter"]:
                self.state._log(group, stream, f"Entering environment {environment['name']}")
                argv = resolve(environment["enter"])
                code = await self._execute(task, action_id, group, stream, argv, cwd, env, None)
                if code != 0:
                    break
            entered.append(environment)
        if code == 0:
            argv = resolve(task.step.command)
            code = await self._execute(task, action_id, group, stream, argv, cwd, env, action)
        for environment in reversed(entered):
            if environment["exit"]:
                self.state._log(group, stream, f"Exiting environment {environment['name']}")
                argv = resolve(environment["exit"])
                left = await self._execute(task, action_id, group, stream, argv, cwd, env, None)
                code = code or left
        return code

    async def _execute(
        self, task: Any, action_id: str, group: str, stream: str, command: list[str], cwd: str,
        env: dict[str, str], action: Any,
    ) -> int:  # fmt: skip
        """Run one action's process; its ``openjd_*`` lines set ``env`` (environment
        actions) or what ``action`` reports (the task's run)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                env=env, cwd=cwd, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            self.state._log(group, stream, f"cannot start {command[0]}: {exc}")
            return 127
        self._procs.add(proc)
        started = asyncio.get_running_loop().time()
        assert proc.stdout is not None

        async def pump() -> None:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                self.state._log(group, stream, line)
                found = worker.message(line)
                if found is not None:
                    self._report(found, env, action)
                await self.flush_logs()

        pumper = asyncio.get_running_loop().create_task(pump())
        try:
            while proc.returncode is None:
                try:
                    await asyncio.wait_for(asyncio.shield(proc.wait()), 0.05)
                except asyncio.TimeoutError:
                    timeout = task.step.timeout
                    late = (
                        timeout is not None
                        and asyncio.get_running_loop().time() - started > timeout
                    )
                    if task.status != "RUNNING" or task.latest_action != action_id or late:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(proc.pid, signal.SIGKILL)
            await pumper
        finally:
            self._procs.discard(proc)
        code = proc.returncode if proc.returncode is not None else -9
        return 128 - code if code < 0 else code  # killed by a signal, as a shell reports it

    @staticmethod
    def _report(found: tuple[str, str], env: dict[str, str], action: Any) -> None:
        kind, payload = found
        if kind == "env":
            name, _, value = payload.partition("=")
            env[name] = value
        elif kind == "unset_env":
            env.pop(payload.strip(), None)
        elif action is None:
            return
        elif kind == "progress":
            with contextlib.suppress(ValueError):
                action.progress = min(100.0, max(0.0, float(payload)))
        else:  # status, or fail: the worker reports the failure's message in its place
            action.message = payload

    async def flush_logs(self) -> None:
        if self.state.launches:
            self._launch()
        if not self.state.pending_logs:
            return
        if self._logs_client is None:
            self.state.pending_logs = []
            return
        async with self._log_lock:
            # taken under the lock so two flushes cannot reorder a stream's lines
            events, self.state.pending_logs = self.state.pending_logs, []
            by_stream: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for group, stream, ms, text in events:
                by_stream.setdefault((group, stream), []).append({"timestamp": ms, "message": text})
            for (group, stream), batch in by_stream.items():
                if group not in self._known_groups:
                    with contextlib.suppress(
                        self._logs_client.exceptions.ResourceAlreadyExistsException
                    ):
                        await self._logs_client.create_log_group(logGroupName=group)
                    self._known_groups.add(group)
                if (group, stream) not in self._known_streams:
                    await self._logs_client.create_log_stream(
                        logGroupName=group, logStreamName=stream
                    )
                    self._known_streams.add((group, stream))
                batch.sort(key=lambda e: e["timestamp"])
                await self._logs_client.put_log_events(
                    logGroupName=group, logStreamName=stream, logEvents=batch
                )

    # -- admin ------------------------------------------------------------------
    async def h_state(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                **self.state.default,
                "tick": self.state.ticks,
                "logsEndpoint": self.logs_endpoint,
                "s3Endpoint": self.s3_endpoint,
                "attachments": self.attachments,
            }
        )

    async def h_advance(self, request: web.Request) -> web.Response:
        body = await _json(request)
        result: dict[str, int] = {}
        for _ in range(int(body.get("ticks", 1))):
            result = self.state.tick()
        await self.flush_logs()
        return web.json_response(result)

    async def h_auto(self, request: web.Request) -> web.Response:
        body = await _json(request)
        await self._stop_auto()
        self._auto_interval = body.get("interval")
        if self._auto_interval:
            self._auto_task = asyncio.get_running_loop().create_task(self._auto_loop())
        return web.json_response({"interval": self._auto_interval})

    async def h_fail(self, request: web.Request) -> web.Response:
        body = await _json(request)
        self.state.fail_rules = list(body.get("rules", []))
        return web.json_response({"rules": len(self.state.fail_rules)})

    async def h_faults(self, request: web.Request) -> web.Response:
        self.faults = await _json(request)
        self._rng = random.Random(self.faults.get("seed", 0))
        return web.json_response(self.faults)

    async def h_stats(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self.stats))

    async def h_stats_reset(self, request: web.Request) -> web.Response:
        self.stats.clear()
        return web.json_response({})

    async def h_reset(self, request: web.Request) -> web.Response:
        """Forget every job, rule, fault and count (farm, queue and fleet stay)."""
        await self._stop_auto()
        st = self.state
        st.reset_farms(self.attachments)
        st.jobs.clear()
        st.sessions.clear()
        st.busy.clear()
        st.tokens.clear()
        st.fail_rules = []
        st.pending_logs = []
        st.log_lines = 3
        st.execute = self._execute_default
        for proc in list(self._procs):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for record in st.workers.values():
            record["status"] = "IDLE"
        self.faults = {}
        self.stats.clear()
        return web.json_response({})

    async def h_farm(self, request: web.Request) -> web.Response:
        """Another farm with one queue and one fleet of ``workers`` (gone on reset)."""
        body = await _json(request)
        st = self.state
        farm = st.CreateFarm({"displayName": body.get("displayName", "another farm")})["farmId"]
        queue = st.CreateQueue({"farmId": farm, "displayName": body.get("queue", "queue")})
        fleet = st.add_fleet(farm, body.get("fleet", "fleet"), int(body.get("workers", 1)))
        st.associations.append((queue["queueId"], fleet))
        return web.json_response({"farmId": farm, "queueId": queue["queueId"], "fleetId": fleet})

    async def h_config(self, request: web.Request) -> web.Response:
        body = await _json(request)
        if "log_lines" in body:
            self.state.log_lines = int(body["log_lines"])
        if "execute" in body:
            self.state.execute = bool(body["execute"])
        return web.json_response({"log_lines": self.state.log_lines, "execute": self.state.execute})

    async def h_seed(self, request: web.Request) -> web.Response:
        """Many CreateJobs at once, bypassing HTTP (benchmarks need 10,000 jobs fast);
        the request is still validated against the CreateJob input shape."""
        body = await _json(request)
        count = int(body.pop("count", 1))
        body.setdefault("farmId", self.state.default["farmId"])
        body.setdefault("queueId", self.state.default["queueId"])
        body.setdefault("priority", 50)
        op = self.proto.model.operation_model("CreateJob")
        try:
            req = self.proto.check(op.input_shape, body, "")
            ids = []
            for _ in range(count):
                job = self.state.build_job(req)
                job.lifecycle = "CREATE_COMPLETE"
                self.state.jobs[job.job_id] = job
                ids.append(job.job_id)
        except (Invalid, ApiError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"jobIds": ids})

    # -- the API ----------------------------------------------------------------
    async def h_api(self, request: web.Request) -> web.StreamResponse:
        found = self.proto.route(request.method, request.path)
        if found is None:
            return self._error(
                "ValidationException",
                f"no operation for {request.method} {request.path}",
                reason="UNKNOWN_OPERATION",
            )
        op, labels = found
        self.stats[op.name] += 1
        fault = self._pick_fault(op.name)
        if fault == "reset":
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError  # nothing more can be sent on an aborted transport
        if fault == "throttle":
            return self._error("ThrottlingException", "Rate exceeded (injected)")
        if fault == "500":
            return self._error("InternalServerErrorException", "injected internal error")
        if fault == "slow":
            await asyncio.sleep(float(self.faults.get("slow_seconds", 0.5)))
        auth = request.headers.get("Authorization", "")
        if "Credential=DENY" in auth:
            resp = web.json_response(
                {"message": "The security token included in the request is invalid."}, status=403
            )
            resp.headers["x-amzn-ErrorType"] = "UnrecognizedClientException"
            return resp
        try:
            body = await request.read()
            req = self.proto.parse_request(op, labels, request.query, request.headers, body)
        except Invalid as exc:
            return self._error("ValidationException", str(exc), reason="FIELD_VALIDATION_FAILED")
        handler = getattr(self.state, op.name, None)
        if handler is None:
            return self._error(
                "ValidationException",
                f"{op.name} is not implemented by the fake",
                reason="UNKNOWN_OPERATION",
            )
        try:
            out = handler(req)
        except ApiError as exc:
            return self._error(exc.code, exc.message, **exc.fields)
        await self.flush_logs()
        if fault == "reset-after":
            # the work is done but the reply is lost: only a client token makes the
            # client's retry safe
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        try:
            headers, payload = self.proto.serialize(op.output_shape, out)
        except Invalid as exc:
            log.error("fake produced an invalid %s response: %s", op.name, exc)
            return self._error(
                "ValidationException", f"fake response invalid: {exc}", reason="OTHER"
            )
        return web.Response(
            status=int(op.http.get("responseCode", 200)),
            body=payload,
            headers={**headers, "Content-Type": "application/json"},
        )

    def _pick_fault(self, op_name: str) -> str | None:
        rate = float(self.faults.get("rate", 0))
        if rate <= 0:
            return None
        ops = self.faults.get("operations")
        if ops and op_name not in ops:
            return None
        if self._rng.random() >= rate:
            return None
        limit = self.faults.get("limit")
        if limit is not None:
            if limit <= 0:
                return None
            self.faults["limit"] = limit - 1
        return str(self._rng.choice(self.faults.get("kinds", ["throttle"])))

    def _error(self, code: str, message: str, **fields: Any) -> web.Response:
        shape = self.proto.error_shape(code)
        body = {"message": message, **fields}
        status = 400
        if shape is not None:
            status = int(shape.metadata.get("error", {}).get("httpStatusCode", 400))
            try:
                _, raw = self.proto.serialize(shape, body)
                body = json.loads(raw)
            except Invalid as exc:  # a bug in the fake: say so loudly
                log.error("fake produced an invalid %s error: %s", code, exc)
        resp = web.json_response(body, status=status)
        resp.headers["x-amzn-ErrorType"] = code
        return resp


async def _json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    data = await request.json()
    return data if isinstance(data, dict) else {}
