"""Property tests (hypothesis): the filter language reads back what it writes and
never raises anything but an aiofarm error; JobSpec validation and URL parsing give
only typed errors; every driver's pure to/from-wire functions round-trip."""

from __future__ import annotations

import contextlib
import json
import re
import string
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aiofarm
from aiofarm import JobSpec, JobStatus, Resources
from aiofarm.drivers.base import JobUpdate, ListQuery, LogQuery
from aiofarm.models import Job, LogLine, LogPage, Pool, StatusTransition, Task
from aiofarm.where import parse
from aiofarm.where.fields import FIELDS, KIND_OPERATORS, NULLABLE
from aiofarm.where.nodes import And, Compare, Expr, Not, Or

pytestmark = [pytest.mark.reliability]

# the default run keeps this cheap; AIOFARM_RELIABILITY_FULL=1 (nox -s reliability) runs 2,000
EXAMPLES = 2000 if __import__("os").environ.get("AIOFARM_RELIABILITY_FULL") else 60
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# text every back end can store: no lone surrogate, no NUL
clean_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10), st.binary(max_size=5),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
utc_times = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc)
).map(lambda t: t.replace(microsecond=0))


def _value(field: str, op: str) -> st.SearchStrategy[Any]:
    kind = FIELDS[field]
    if op == "matches":
        return clean_text.map(re.escape)
    if kind == "status":
        one: st.SearchStrategy[Any] = st.sampled_from(list(JobStatus))
    elif kind == "int":
        one = st.integers(-(2**63), 2**63 - 1)
    elif kind == "time":
        one = utc_times
    else:
        one = clean_text
    if op == "in":
        return st.lists(one, min_size=1, max_size=3).map(tuple)
    if op in ("==", "!=") and field in NULLABLE:
        return st.one_of(st.none(), one)
    return one


@st.composite
def compares(draw: st.DrawFn) -> Compare:
    field = draw(st.sampled_from(sorted(FIELDS)))
    op = draw(st.sampled_from(sorted(KIND_OPERATORS[FIELDS[field]])))
    return Compare(field, op, draw(_value(field, op)))  # type: ignore[arg-type]


exprs: st.SearchStrategy[Expr] = st.recursive(
    compares(),
    lambda children: st.one_of(
        st.tuples(children, children).map(lambda p: And(*p)),
        st.tuples(children, children).map(lambda p: Or(*p)),
        children.map(Not),
    ),
    max_leaves=12,
)


@SETTINGS
@given(exprs)
def test_filter_parse_of_str_is_identity(expr: Expr) -> None:
    assert parse(str(expr)) == expr


_TOKENS = [
    "(", ")", "not", "and", "or", "~", "&", "|", "==", "!=", "<", ">=", "in", "contains", "matches",
    "status", "priority", "name", "tags", "created_at", "failed", "50", "-1", '"x"', "'y", '"', ",",
    "null", "9" * 30, "inf", "nan", '"0001-01-01"', '"9999-12-31T23:59:59-01:00"', "\ud800", "\x00", "!",
]


@SETTINGS
@given(st.one_of(st.text(max_size=60), st.lists(st.sampled_from(_TOKENS), max_size=30).map(" ".join)))
def test_filter_parser_raises_only_aiofarm_errors(text: str) -> None:
    try:
        expr = parse(text)
    except aiofarm.FarmError as exc:
        assert isinstance(exc, aiofarm.InvalidSpec) and exc.field.startswith("where")
    else:
        assert parse(str(expr)) == expr


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 3000), st.sampled_from(["(", "not ", "~", "not (", "(not "]))
def test_deep_filters_are_invalid_spec(depth: int, opener: str) -> None:
    text = opener * depth + "status == failed" + ")" * (depth * opener.count("("))
    try:
        parse(text)
    except aiofarm.InvalidSpec as exc:
        assert depth > 50 and exc.field == "where"


@SETTINGS
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "command": st.one_of(anything, st.lists(st.one_of(st.text(max_size=5), anything), max_size=3)),
            "name": anything, "env": st.one_of(anything, st.dictionaries(st.text(max_size=4), anything, max_size=3)),
            "cwd": anything, "pool": anything, "tags": st.one_of(st.lists(anything, max_size=3), st.text(max_size=3)),
            "description": anything, "priority": anything, "timeout": anything, "retries": anything,
            "depends_on": st.one_of(st.lists(anything, max_size=2), st.text(max_size=3)), "tty": anything,
            "id": anything, "max_failed_tasks": anything, "max_workers": anything,
            "resources": st.builds(Resources, cpu=anything, memory_mb=anything, gpu=anything),
        },
    )
)
def test_jobspec_validation_raises_only_invalid_spec(fields: dict[str, Any]) -> None:
    from aiofarm.validation import check_exec_size, validate_spec

    try:
        spec = JobSpec(**fields)
        validate_spec(spec, "spec")
        check_exec_size(spec, (131072, 2_000_000), "spec")
    except aiofarm.InvalidSpec as exc:
        # JobSpec(...) names its own field; validation names it under "spec."
        assert (exc.field.startswith("spec.") or exc.field.split("[")[0] in fields) and exc.reason


_SCHEMES = ["local", "dummy", "slurm+http", "slurm+unix", "ray+http", "deadline", "nope", ""]


@SETTINGS
@given(
    st.one_of(
        st.text(max_size=40),
        st.tuples(
            st.sampled_from(_SCHEMES),
            st.text(string.printable + "\ud800\x00é", max_size=20),
            st.dictionaries(
                st.sampled_from(["slots", "timeout", "token", "partition", "embedded", "push", "api", "region", "x"]),
                st.text(string.printable + "∞", max_size=8),
                max_size=3,
            ),
        ).map(lambda t: f"{t[0]}://{t[1]}?" + "&".join(f"{k}={v}" for k, v in t[2].items())),
    )
)
def test_url_parsing_raises_only_aiofarm_errors(url: str) -> None:
    from aiofarm.client import _driver_class, _parse, resolve_url

    try:
        parsed = _parse(resolve_url(url))
        _driver_class(parsed.scheme).from_url(parsed, {})
    except aiofarm.FarmError:
        pass


# -- the local driver's wire (client <-> farm service) -------------------------------------

local_ids = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=12)
plain_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), clean_text),
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(clean_text, c, max_size=3)),
    max_leaves=6,
)
opt_time = st.one_of(st.none(), utc_times)


def _json_trip(value: Any) -> Any:
    return json.loads(json.dumps(value))


jobs = st.builds(
    Job,
    id=local_ids, status=st.sampled_from(list(JobStatus)), driver=st.just("local"),
    name=st.one_of(st.none(), clean_text), owner=st.one_of(st.none(), clean_text),
    pool=st.one_of(st.none(), clean_text), tags=st.lists(clean_text, max_size=3).map(tuple),
    description=st.one_of(st.none(), clean_text), priority=st.integers(0, 100),
    created_at=opt_time, started_at=opt_time, finished_at=opt_time,
    exit_code=st.one_of(st.none(), st.integers(-255, 255)), reason=st.one_of(st.none(), clean_text),
    history=st.lists(st.builds(StatusTransition, st.sampled_from(list(JobStatus)), utc_times,
                               st.one_of(st.none(), clean_text)), max_size=3).map(tuple),
    task_counts=st.dictionaries(st.sampled_from([s.value for s in JobStatus]), st.integers(0, 99), max_size=3),
    depends_on=st.lists(local_ids, max_size=2).map(tuple),
    raw=st.dictionaries(clean_text, plain_json, max_size=2),
)


@SETTINGS
@given(jobs)
def test_local_wire_job_round_trip(job: Job) -> None:
    from aiofarm.drivers.local import wire

    back = wire.job_from(_json_trip(wire.job_to(job)))
    assert back == job and back.raw == job.raw


@SETTINGS
@given(
    st.builds(
        Task, id=local_ids, job_id=local_ids, status=st.sampled_from(list(JobStatus)),
        step=st.one_of(st.none(), clean_text), parameters=st.dictionaries(clean_text, clean_text, max_size=2),
        attempts=st.integers(0, 9), exit_code=st.one_of(st.none(), st.integers(-255, 255)),
        started_at=opt_time, finished_at=opt_time, reason=st.one_of(st.none(), clean_text),
    ),
    st.builds(LogPage, st.lists(st.builds(LogLine, opt_time, st.sampled_from(["stdout", "stderr"]), clean_text,
                                          st.one_of(st.none(), local_ids)), max_size=3).map(tuple),
              st.one_of(st.none(), local_ids)),
    st.builds(Pool, id=local_ids, name=clean_text, slots=st.one_of(st.none(), st.integers(1, 64)),
              driver=st.just("local")),
    st.builds(JobUpdate, priority=st.one_of(st.none(), st.integers(0, 100)), name=st.one_of(st.none(), clean_text),
              tags=st.one_of(st.none(), st.lists(clean_text, max_size=2).map(tuple))),
)
def test_local_wire_round_trips(task: Task, page: LogPage, pool: Pool, update: JobUpdate) -> None:
    from aiofarm.drivers.local import wire

    assert wire.task_from(_json_trip(wire.task_to(task))) == task
    assert wire.page_from(_json_trip(wire.page_to(page))) == page
    assert wire.pool_from(_json_trip(wire.pool_to(pool))) == pool
    assert wire.update_from(_json_trip(wire.update_to(update))) == update


@SETTINGS
@given(
    st.builds(
        ListQuery, statuses=st.one_of(st.none(), st.frozensets(st.sampled_from(list(JobStatus)))),
        name=st.one_of(st.none(), clean_text), tags=st.lists(clean_text, max_size=2).map(tuple),
        owners=st.lists(clean_text, max_size=2).map(tuple), since=opt_time, until=opt_time,
        pool=st.one_of(st.none(), clean_text), reverse=st.booleans(),
    ),
    st.builds(LogQuery, task=st.one_of(st.none(), local_ids),
              streams=st.frozensets(st.sampled_from(["stdout", "stderr"]), min_size=1),
              start_time=opt_time, end_time=opt_time, limit=st.integers(1, 10_000)),
)
def test_local_wire_query_round_trips(query: ListQuery, log_query: LogQuery) -> None:
    from aiofarm.drivers.local import wire

    assert wire.list_query_from(_json_trip(wire.list_query_to(query))) == query
    assert wire.log_query_from(_json_trip(wire.log_query_to(log_query))) == log_query


@SETTINGS
@given(
    st.one_of(
        st.builds(aiofarm.JobNotFound, local_ids, driver=st.just("local")),
        st.builds(aiofarm.PoolNotFound, local_ids, driver=st.just("local")),
        st.builds(aiofarm.InvalidSpec, clean_text, clean_text),
        st.builds(aiofarm.BackendError, clean_text, st.one_of(st.none(), st.integers(), clean_text), clean_text),
        st.builds(aiofarm.StateError, clean_text, clean_text),
        st.builds(aiofarm.ConnectionLost, clean_text),
    )
)
def test_local_wire_error_round_trip(exc: aiofarm.FarmError) -> None:
    from aiofarm.drivers.local import wire

    back = wire.error_from(_json_trip(wire.error_to(exc)))
    assert type(back) is type(exc) and str(back) == str(exc)


@SETTINGS
@given(st.dictionaries(clean_text, plain_json, max_size=4))
def test_local_wire_malformed_error_is_typed(data: dict[str, Any]) -> None:
    from aiofarm.drivers.local import wire

    assert isinstance(wire.error_from(data), aiofarm.FarmError)


@SETTINGS
@given(st.builds(
    JobSpec, command=st.lists(clean_text.filter(bool), min_size=1, max_size=3).map(tuple),
    name=st.one_of(st.none(), clean_text.filter(bool)), env=st.dictionaries(
        st.text(string.ascii_uppercase + "_", min_size=1, max_size=6), clean_text, max_size=3),
    cwd=st.one_of(st.none(), st.just("/tmp")), tags=st.lists(clean_text.filter(bool), max_size=2).map(tuple),
    description=st.one_of(st.none(), clean_text), priority=st.integers(0, 100),
    timeout=st.one_of(st.none(), st.floats(0.5, 1e6)), retries=st.integers(0, 5),
    depends_on=st.lists(local_ids, max_size=2).map(tuple), paused=st.booleans(),
    id=st.one_of(st.none(), local_ids),
))
def test_local_wire_spec_round_trip(spec: JobSpec) -> None:
    import attrs

    from aiofarm.drivers.local import wire

    header = {"owner": "alice"}
    head, specs, _ = wire.submit_from(wire.submit_to([spec], header, "/submitted/from"))
    # a spec without a cwd runs where it was submitted from
    assert head == header and specs == [attrs.evolve(spec, cwd=spec.cwd or "/submitted/from")]


# -- Deadline, Ray, Slurm --------------------------------------------------------------------


@SETTINGS
@given(st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=6), plain_json, max_size=4))
def test_deadline_page_token_round_trip(data: dict[str, Any]) -> None:
    from aiofarm.drivers.deadline import wire

    assert wire.decode_token(wire.encode_token(data)) == data


@SETTINGS
@given(st.text(max_size=40))
def test_deadline_bad_page_token_is_invalid_spec(token: str) -> None:
    from aiofarm.drivers.deadline import wire

    with contextlib.suppress(aiofarm.InvalidSpec):
        wire.decode_token(token)


@SETTINGS
@given(
    st.one_of(st.none(), clean_text),
    st.dictionaries(st.sampled_from(["tags", "owner", "priority", "depends_on", "labels"]),
                    st.one_of(clean_text, st.lists(clean_text, max_size=2), st.integers(0, 100)), max_size=3),
)
def test_deadline_description_round_trip(text: str | None, extra: dict[str, Any]) -> None:
    from aiofarm.drivers.deadline import wire

    joined = wire.join_description(text, extra)
    got_text, got_extra = wire.split_description(joined)
    assert got_text == (text or None) or (not text and not got_text)
    # empty values are not written (the description stays the user's text)
    assert got_extra == {k: v for k, v in extra.items() if v}


@SETTINGS
@given(st.builds(
    JobSpec, command=st.lists(clean_text.filter(bool), min_size=1, max_size=3).map(tuple),
    # an unnamed Ray job is named after its submission id
    name=clean_text.filter(bool), tags=st.lists(clean_text.filter(bool), max_size=2).map(tuple),
    description=st.one_of(st.none(), clean_text.filter(bool)), priority=st.integers(0, 100),
    depends_on=st.lists(local_ids, max_size=2).map(tuple), id=local_ids,
))
def test_ray_metadata_round_trip(spec: JobSpec) -> None:
    from aiofarm.drivers.ray import wire

    assert spec.id is not None
    body = wire.submit_body(spec, spec.id, owner="alice", depends_on=spec.depends_on)
    record = {"submission_id": spec.id, "status": "PENDING", "metadata": body.get("metadata", {}),
              "entrypoint": body["entrypoint"], "type": "SUBMISSION", "start_time": 1_700_000_000_000}
    job = wire.job_from_record(_json_trip(record))
    assert (job.id, job.name, job.tags, job.priority, job.depends_on, job.owner) == (
        spec.id, spec.name, spec.tags, spec.priority, spec.depends_on, "alice"
    )
    assert job.description == spec.description


@SETTINGS
@given(st.dictionaries(st.text(max_size=12), plain_json, max_size=6))
def test_ray_record_reader_raises_only_aiofarm_errors(record: dict[str, Any]) -> None:
    from aiofarm.drivers.ray import wire

    with contextlib.suppress(aiofarm.FarmError):
        wire.job_from_record(record)


@pytest.mark.parametrize("version", ["v0.0.38", "v0.0.40", "v0.0.42", "v0.0.44"])
@SETTINGS
@given(st.dictionaries(st.sampled_from(["job_id", "name", "job_state", "comment", "exit_code", "submit_time",
                                        "start_time", "end_time", "priority", "partition", "user_name", "array_job_id",
                                        "array_task_id", "state_reason", "time", "state", "derived_exit_code"]),
                       plain_json, max_size=8))
def test_slurm_record_readers_raise_only_aiofarm_errors(version: str, raw: dict[str, Any]) -> None:
    from aiofarm.drivers.slurm.wire import for_version

    w = for_version(version)
    for reader in ("record", "accounting_record"):
        fn = getattr(w, reader, None)
        if fn is None:
            continue
        with contextlib.suppress(aiofarm.FarmError):
            fn(raw)


def test_examples_budget_is_cheap_by_default() -> None:
    assert EXAMPLES in (60, 2000)
    assert timedelta(seconds=1)  # keeps the import used when the budget changes
