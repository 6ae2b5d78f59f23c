"""What ran: steps -> tasks -> sessions -> session actions, and the CloudWatch logs of
each session (``/aws/deadline/<farm>/<queue>``, one stream per session).

Also a job's true history and exit code, built from its timestamps and session
actions (``processExitCode``, ``progressMessage``) only when asked: never in the
polling path.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import attrs

from ...errors import BackendError, TransientError
from ...models import Job, JobStatus, LogLine, LogPage, Task
from ..base import LogQuery
from . import wire
from .api import DeadlineApi, concurrently

__all__ = ["Sessions"]


class Sessions:
    def __init__(self, api: DeadlineApi, logs_role: str | None) -> None:
        self.api = api
        self.logs_role = logs_role
        self._logs: Any = None
        self._logs_stack: Any = None
        # ended sessions never change: session id -> task ids it ran
        self._session_tasks: dict[str, list[str]] = {}

    async def open(self) -> None:
        import contextlib

        if self.logs_role is None:
            self._logs_stack = contextlib.AsyncExitStack()
            self._logs = await self._logs_stack.enter_async_context(
                self.api.create_client("logs")
            )

    async def aclose(self) -> None:
        stack, self._logs_stack = self._logs_stack, None
        self._logs = None
        if stack is not None:
            await stack.aclose()

    async def _logs_client(self) -> Any:
        if self.logs_role is None:
            return self._logs
        return await self.api.role_client("logs", self.logs_role)

    # -- tasks -------------------------------------------------------------------
    async def tasks(self, job_id: str) -> list[Task]:
        """Steps -> tasks -> each task's latest session action (its session, exit code
        and so its log stream)."""
        api = self.api
        api.check_job_id(job_id)
        ids = api.ids(job_id)
        steps = await api.pages("list_steps", "steps", job_id=job_id, **ids)
        rows: list[tuple[str, dict[str, Any]]] = []
        for step in steps:
            for task in await api.pages(
                "list_tasks", "tasks", job_id=job_id, **ids, stepId=step["stepId"]
            ):
                rows.append((step["name"], task))
        # each task's latest session action (its session, exit code, and what the
        # worker last reported: progressPercent, progressMessage), 100 per request
        wanted = {t["latestSessionActionId"]: t["taskId"] for _, t in rows if t.get("latestSessionActionId")}
        actions: dict[str, dict[str, Any]] = {}

        async def batch(chunk: list[str]) -> None:
            resp = await api.call(
                "batch_get_session_action",
                identifiers=[{**ids, "sessionActionId": a} for a in chunk],
            )
            for item in resp.get("sessionActions", []):
                actions[wanted[item["sessionActionId"]]] = item

        keys = list(wanted)
        await concurrently(
            [functools.partial(batch, keys[i : i + 100]) for i in range(0, len(keys), 100)]
        )
        return [
            wire.task_from_wire(
                job_id, step_name, task, action=actions.get(task["taskId"]), log_group=api.log_group
            )
            for step_name, task in rows
        ]

    # -- history -----------------------------------------------------------------
    async def describe(self, job: Job) -> Job:
        """``job`` with its history and exit code from the service: the job's timestamps
        and its session actions (one paginated ListSessionActions, and GetSessionAction
        for the failed attempt that decided the outcome)."""
        api = self.api
        actions = await api.pages(
            "list_session_actions", "sessionActions", job_id=job.id, **api.ids(job.id)
        )
        runs = sorted(
            (a for a in actions if "taskRun" in a.get("definition", {})),
            key=lambda a: (a.get("startedAt") or job.created_at, a["sessionActionId"]),
        )
        failed = [a for a in runs if a.get("status") == "FAILED"]
        detail: Mapping[str, Any] | None = None
        if failed:
            detail = await api.call(
                "get_session_action",
                job_id=job.id,
                **api.ids(job.id),
                sessionActionId=failed[-1]["sessionActionId"],
            )
        history = wire.history(job, runs, detail)
        exit_code = job.exit_code
        if job.status is JobStatus.FAILED and detail is not None:
            exit_code = detail.get("processExitCode", exit_code)
        return attrs.evolve(job, history=history, exit_code=exit_code)

    # -- logs --------------------------------------------------------------------
    async def _tasks_of_session(self, job_id: str, session: Mapping[str, Any]) -> list[str]:
        sid = session["sessionId"]
        tasks = self._session_tasks.get(sid)
        if tasks is None:
            acts = await self.api.pages(
                "list_session_actions", "sessionActions", job_id=job_id,
                **self.api.ids(job_id), sessionId=sid,
            )  # fmt: skip
            tasks = [
                a["definition"]["taskRun"].get("taskId", "")
                for a in acts
                if "taskRun" in a.get("definition", {})
            ]
            if session.get("lifecycleStatus") == "ENDED":
                self._session_tasks[sid] = tasks
        return tasks

    async def _sessions(self, job_id: str, task: str | None) -> list[dict[str, Any]]:
        sessions = await self.api.pages(
            "list_sessions", "sessions", job_id=job_id, **self.api.ids(job_id)
        )
        sessions.sort(key=lambda s: (s["startedAt"], s["sessionId"]))
        if task is None:
            return sessions
        return [s for s in sessions if task in await self._tasks_of_session(job_id, s)]

    async def read_log(self, job_id: str, token: str | None, query: LogQuery) -> LogPage:
        """A job's log is its sessions' CloudWatch streams one after the other. The token
        is (session id, CloudWatch forward token): resuming from it neither loses nor
        repeats a line, across reconnects and new clients alike."""
        # streams: the client layer refuses one stream alone (no LOGS_STREAMS capability)
        self.api.check_job_id(job_id)
        state = wire.decode_token(token, "next_token") if token else {}
        sessions = await self._sessions(job_id, query.task)
        if not sessions:
            return LogPage((), token)
        index = 0
        forward: str | None = state.get("f")
        if state.get("s"):
            index = next((i for i, s in enumerate(sessions) if s["sessionId"] == state["s"]), 0)
        lines: list[LogLine] = []
        limit = max(1, min(10_000, query.limit))
        while len(lines) < limit:
            session = sessions[index]
            kw: dict[str, Any] = {
                "logGroupName": self.api.log_group,
                "logStreamName": session["sessionId"],
                "startFromHead": True,
                "limit": limit - len(lines),
            }
            if forward:
                kw["nextToken"] = forward
            if query.start_time is not None:
                kw["startTime"] = int(query.start_time.timestamp() * 1000)
            if query.end_time is not None:
                kw["endTime"] = int(query.end_time.timestamp() * 1000)
            try:
                resp = await self.api.call(
                    "get_log_events", client=await self._logs_client(), **kw
                )
                events = resp.get("events", [])
                new_forward = resp.get("nextForwardToken")
            except TransientError:
                if not lines:
                    raise
                break  # a page is what was read: the next read resumes after it
            except BackendError as exc:
                if exc.code != "ResourceNotFoundException":
                    raise
                events, new_forward = [], forward  # the stream has no line yet
            if events:
                tasks = await self._tasks_of_session(job_id, session)
                task_id = tasks[0] if len(tasks) == 1 else None
                lines.extend(wire.log_line(e, task_id) for e in events)
                forward = new_forward
                continue
            if session.get("lifecycleStatus") == "ENDED" and index + 1 < len(sessions):
                index += 1
                forward = None
                continue
            break
        return LogPage(
            tuple(lines), wire.encode_token({"s": sessions[index]["sessionId"], "f": forward})
        )
