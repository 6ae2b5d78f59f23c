"""Job specs to Slurm jobs: one Slurm job per step of a job (an array when the
step has several tasks), chained with ``afterok``; the head job's comment names
the others so any client finds them from the one id.

Idempotent for the client layer's retries: the head job's comment carries the
spec's submit token (``SubmitAttempt.tokens``), and a retried attempt first looks
for live jobs carrying its tokens (one ``GET /jobs``), keeping what an earlier
attempt made (its answer lost on the way) instead of submitting it again.

A batch is one POST per spec, so an attempt makes progress however many of its
POSTs fail transiently: it goes on with the other specs (not those that name a
failed one in ``depends_on``) and raises the first transient failure at the end;
the next attempt's lookup keeps what this one made. Each job made or found is
recorded in ``SubmitAttempt.made``, so the client layer counts attempts per spec.
Without that, a batch of 50 under a quarter of requests faulted never got through."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import anyio
import attrs

from ...errors import BackendError, FarmError, InvalidSpec, TransientError
from ...models import Job, JobSpec, JobStatus
from ..base import SubmitAttempt
from . import mapping
from .config import SlurmConfig
from .http import SlurmAPIError, SlurmHTTP
from .mapping import make_comment
from .negotiate import Api
from .requirements import step_requirements
from .script import SESSION_INPUTS, batch_script, job_description
from .sessions import session_split
from .store import JobStore, Submitted, is_job_id

__all__ = ["DEFAULT_SESSIONS", "submit_specs"]

DRIVER = "slurm"
#: sessions of a step without max_workers: array elements running a share of its tasks
DEFAULT_SESSIONS = 8
_INVALID_JOB_ID = 2017
_DEPENDENCY = (2038, 2071)


@attrs.frozen
class _StepRun:
    """One step of a job as one Slurm job (an array when it has several tasks)."""

    name: str
    depends_on: tuple[str, ...]  # step names
    # (argv, cwd, extra env, session directory to remove at its end) per task
    runs: list[tuple[tuple[str, ...], str | None, dict[str, str], str | None]]
    parameters: list[Mapping[str, Any]]
    timeout: float | None
    #: the runs are sessions of several tasks each (see :func:`_sessions`): what the
    #: step job's comment says of them, for any client to read the tasks' results
    sessions: Mapping[str, Any] | None = None


def _plan(spec: JobSpec, log_dir: str) -> list[_StepRun]:
    """The job's steps in dependency order, each with its tasks' commands."""
    from ...models import command_argv
    from ...openjd.plan import COMMAND_STEP, plan_job

    if spec.template is None:
        if spec.command is None:
            raise InvalidSpec("command", "a job needs a command or a template")
        return [_StepRun(COMMAND_STEP, (), [(command_argv(spec.command), None, {}, None)], [{}], spec.timeout)]
    from ...openjd.taskrun import session_key, task_run

    root = os.path.join(log_dir, "openjd", uuid.uuid4().hex)
    out: list[_StepRun] = []
    for step in plan_job(spec):
        if not step.tasks:
            raise InvalidSpec("template", f"step {step.name!r} has no tasks")
        if len(step.tasks) > 1 and session_key(spec, step.name) is not None:
            out.append(_sessions(spec, step.name, step.depends_on, [dict(t.parameters) for t in step.tasks], root, len(out)))
            continue
        runs = []
        limits: list[float | None] = []
        for i, task in enumerate(step.tasks):
            # the session directory, on the filesystem the nodes share (log_dir)
            workdir = os.path.join(root, f"{len(out)}-{i}")
            run = task_run(spec, step.name, task.parameters, workdir)
            extra = {k: v for k, v in run.env.items() if spec.env.get(k) != v}
            if run.session_dir is not None:
                # kept as the inputs; the batch script makes each session's directory
                # from them and removes it when the session ends
                os.rename(run.session_dir, run.session_dir + SESSION_INPUTS)
            runs.append((tuple(run.argv), run.cwd, extra, run.session_dir))
            limits.append(run.timeout)
        timeout = spec.timeout
        if timeout is None and limits and all(t is not None for t in limits):
            timeout = max(t for t in limits if t is not None)
        out.append(_StepRun(step.name, step.depends_on, runs, [dict(t.parameters) for t in step.tasks], timeout))
    return out


def _sessions(
    spec: JobSpec, step: str, depends_on: tuple[str, ...], params: list[Mapping[str, Any]], root: str, index: int
) -> _StepRun:
    """A step whose environments have actions: its tasks in ``k`` sessions (``max_workers``,
    else up to DEFAULT_SESSIONS), one array element each, which enters the environments
    once, runs its share of the tasks in order and exits them, as a worker slot of a
    render farm does; each task's start and end go to a results file beside the logs."""
    from ...openjd.taskrun import session_batch

    count = min(len(params), spec.max_workers or DEFAULT_SESSIONS)
    runs: list[tuple[tuple[str, ...], str | None, dict[str, str], str | None]] = []
    results = os.path.join(root, f"results-{index}-")
    for s, share in enumerate(session_split(len(params), count)):
        workdir = os.path.join(root, f"{index}-s{s}")
        run = session_batch(spec, step, [(str(i), params[i]) for i in share], workdir, results_fd=3, resume=True)
        os.rename(workdir, workdir + SESSION_INPUTS)
        # the results fd opened read-write, not truncated: a rerun (retry, requeue)
        # reads what earlier runs recorded, skips the tasks that succeeded, and appends
        argv = ("/bin/sh", "-c", 'f=$1; shift; exec "$@" 3<>"$f"', "sh", f"{results}{s}.jsonl", *run.argv)
        extra = {k: v for k, v in run.env.items() if spec.env.get(k) != v}
        runs.append((argv, run.cwd, extra, workdir))
    meta = {"n": len(params), "k": count, "results": results}
    return _StepRun(step, depends_on, runs, list(params), spec.timeout, meta)


def _submit_error(exc: SlurmAPIError, field: str, spec: JobSpec, partition: str | None) -> FarmError:
    if exc.number in _DEPENDENCY or exc.number == _INVALID_JOB_ID:
        return InvalidSpec(f"{field}.depends_on", f"Slurm refused the dependency {list(spec.depends_on)}: {exc.message}")
    if exc.number in (2000, 2015, 2070, 2101) or "partition" in exc.message.lower():
        return InvalidSpec(f"{field}.pool", f"Slurm refused partition {spec.pool or partition!r}: {exc.message}")
    if exc.number == 2050 or "time limit" in exc.message.lower():
        return InvalidSpec(f"{field}.timeout", exc.message)
    text = exc.message.lower()
    if "feature" in text or "node configuration is not available" in text:
        # what the job asks of a node (resources, constraints, a template's host
        # requirements) no node of the partition has
        asked = "hostRequirements" if spec.template is not None else "resources"
        return InvalidSpec(f"{field}.{asked}", f"no node can run it: {exc.message}")
    return exc.to_backend()


async def _made_before(http: SlurmHTTP, store: JobStore, tokens: Sequence[str]) -> dict[str, str]:
    """token -> the live head job an earlier attempt submitted with it."""
    api = store.api
    assert api is not None
    await store.refresh(force=True)
    wanted = set(tokens)
    found: dict[str, str] = {}
    for jid, recs in store.records.items():
        meta = mapping.parse_meta(recs[0].comment)
        token = meta.get("submit")
        # a cancelled one is what a failed attempt deleted on its way out
        if token not in wanted or recs[0].state == "CANCELLED":
            continue
        if "step" in meta and "steps" not in meta:
            # the head of a multi-step job whose attempt failed before naming its
            # other steps (the head's answer was lost, so it was not deleted): gone
            # now, submitted whole again
            with contextlib.suppress(SlurmAPIError):
                await http.call("DELETE", api.path(f"/job/{jid}"))
            continue
        found[str(token)] = jid
    return found


@attrs.frozen
class _Submission:
    """One spec of the batch as it is submitted."""

    spec: JobSpec
    field: str  # ``spec`` or ``specs[i]``, for the errors
    token: str  # its submit token (``SubmitAttempt.tokens``)
    name: str
    deps: list[str]  # Slurm job ids it waits for


async def _post(
    http: SlurmHTTP, api: Api, config: SlurmConfig, body: Mapping[str, Any], sub: _Submission
) -> tuple[str, dict[str, Any]]:
    try:
        _, data = await http.call("POST", api.path("/job/submit"), body=body)
    except SlurmAPIError as exc:
        raise _submit_error(exc, sub.field, sub.spec, config.partition) from None
    job_id = data.get("job_id")
    if not isinstance(job_id, int):
        raise BackendError(DRIVER, None, f"submit answered without a job id: {data.get('errors')}")
    return str(job_id), data


async def _submit_steps(
    http: SlurmHTTP, api: Api, config: SlurmConfig, sub: _Submission, steps: Sequence[_StepRun], step_ids: dict[str, str]
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """One Slurm job per step (``step_ids`` filled as they are made); the head's id,
    submit answer and description. A failure deletes what it made."""
    spec, token, name = sub.spec, sub.token, sub.name
    # every step's refusal before anything is submitted
    reqs = {st.name: step_requirements(spec, st.name) for st in steps}
    multi = len(steps) > 1
    head: tuple[str, dict[str, Any], dict[str, Any]] | None = None  # id, answer, description
    try:
        for st in steps:
            # a step waits for the steps it names; root steps for the job's own deps
            after = [step_ids[d] for d in st.depends_on] if st.depends_on else sub.deps
            meta: dict[str, Any] = {"submit": token} if head is None else {}
            if multi:
                meta |= {"step": st.name} if head is None else {"step": st.name, "parent": head[0]}
            if st.sessions is not None:
                meta["sessions"] = dict(st.sessions)
            step_spec = attrs.evolve(
                spec,
                name=name if head is None else f"{name}.{st.name}",
                timeout=st.timeout,
                tags=spec.tags if head is None else (),
                labels=spec.labels if head is None else {},
                description=spec.description if head is None else None,
            )
            desc = job_description(
                step_spec,
                array_size=len(st.runs) if spec.template is not None and len(st.runs) > 1 else None,
                env=dict(spec.env),
                log_dir=config.log_dir,
                dependency_ids=after,
                default_partition=config.partition,
                default_name=name,
                meta=meta,
                requirements=reqs[st.name],
                # a session's rerun skips the tasks that succeeded: their output stays
                append_output=st.sessions is not None,
            )
            body = api.wire.submit_body(desc, batch_script(st.runs, spec.retries))
            jid, data = await _post(http, api, config, body, sub)
            step_ids[st.name] = jid
            if head is None:
                head = (jid, data, desc)
        assert head is not None
        if multi:
            # the head job names every step job, so one id finds them all
            comment = make_comment(
                spec.tags, spec.description, labels=dict(spec.labels) or None, step=steps[0].name, submit=token,
                steps=[[st.name, step_ids[st.name]] for st in steps],
                sessions=dict(steps[0].sessions) if steps[0].sessions is not None else None,
            )
            await http.call("POST", api.path(f"/job/{head[0]}"), body=api.wire.update_body({"comment": comment}))
    except BaseException:
        # no half-submitted job left behind
        with anyio.CancelScope(shield=True):
            for jid in step_ids.values():
                with contextlib.suppress(FarmError, SlurmAPIError):
                    await http.call("DELETE", api.path(f"/job/{jid}"))
        raise
    return head


async def submit_specs(
    http: SlurmHTTP, store: JobStore, config: SlurmConfig, specs: Sequence[JobSpec], attempt: SubmitAttempt | None
) -> list[Job]:
    api = store.api
    assert api is not None
    refs: dict[str, str] = {}
    out: list[Job] = []
    attempt = attempt or SubmitAttempt.new(len(specs))
    earlier = await _made_before(http, store, attempt.tokens) if attempt.retry else {}
    # the first transient failure of this attempt, raised once every other spec was tried
    transient: TransientError | None = None
    failed: set[str] = set()  # ids of the specs that failed so (their dependants wait)

    for index, spec in enumerate(specs):
        token = attempt.tokens[index]
        made = earlier.get(token)
        if made is not None:
            recs = store.collect(made)
            assert recs is not None
            out.append(store.job(made, recs))
            attempt.made[index] = made
            if spec.id is not None:
                refs[spec.id] = made
            continue
        field = f"specs[{index}]" if len(specs) > 1 else "spec"
        if failed.intersection(spec.depends_on):
            if spec.id is not None:
                failed.add(spec.id)
            continue
        steps = _plan(spec, config.log_dir)
        deps: list[str] = []
        for dep in spec.depends_on:
            real = refs.get(dep, dep)
            if not is_job_id(real):
                raise InvalidSpec(
                    f"{field}.depends_on", f"{dep!r} is neither a Slurm job id nor the id of an earlier spec of this batch"
                )
            deps.append(real)
        first_argv = steps[0].runs[0][0]
        name = spec.name or (os.path.basename(first_argv[0]) if first_argv else "aiofarm")
        step_ids: dict[str, str] = {}
        try:
            head = await _submit_steps(http, api, config, _Submission(spec, field, token, name, deps), steps, step_ids)
        except TransientError as exc:
            transient = transient or exc
            if spec.id is not None:
                failed.add(spec.id)
            continue
        jid, data, desc = head
        attempt.made[index] = jid
        store.add_submitted(
            jid, Submitted([(st.name, step_ids[st.name]) for st in steps], {st.name: st.parameters for st in steps})
        )
        if spec.id is not None:
            refs[spec.id] = jid
        now = datetime.now(timezone.utc)
        status = JobStatus.SUSPENDED if spec.paused else JobStatus.PENDING
        # tasks, not Slurm jobs or array elements (a step run in sessions has fewer)
        n = sum(len(st.parameters) for st in steps)
        out.append(
            Job(
                id=jid,
                status=status,
                driver=DRIVER,
                name=desc["name"],
                owner=config.user,
                pool=desc.get("partition"),
                tags=spec.tags,
                labels=spec.labels,
                description=spec.description,
                priority=spec.priority,
                created_at=now,
                task_counts={status.value: n},
                depends_on=tuple(deps),
                raw={"submit": data},
            )
        )
    store.invalidate()
    if transient is not None:
        raise transient
    return out
