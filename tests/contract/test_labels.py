"""Labels (key/value, Kubernetes syntax) on every driver: kept on the job, returned by
get and by listings, filterable from Python and from text, and validated before
anything is sent (docs/labels.md says where each back end stores them)."""

from __future__ import annotations

import pytest

from aiofarm import Client, InvalidSpec, JobSpec, where

from .helpers import OK, tag

pytestmark = pytest.mark.anyio


async def test_labels_are_kept_and_filterable(farm: Client) -> None:
    t = tag()
    specs = [
        JobSpec(command=OK, tags=[t], labels={"team": "fx", "example.com/shot": "s010"}),
        JobSpec(command=OK, tags=[t], labels={"team": "fx", "example.com/shot": "s020"}),
        JobSpec(command=OK, tags=[t], labels={"team": "lighting", "empty": ""}),
        JobSpec(command=OK, tags=[t]),
    ]
    jobs = await farm.jobs.submit(specs)
    assert [dict(j.labels) for j in jobs] == [dict(s.labels) for s in specs]
    got = await farm.jobs.get(jobs[0].id)
    assert dict(got.labels) == {"team": "fx", "example.com/shot": "s010"}
    for job in jobs:
        await farm.jobs.wait(job.id, timeout=120, max_interval=1)
    async with farm.jobs.list(tags=[t]) as it:  # listings carry them too
        assert {j.id: dict(j.labels) async for j in it} == {j.id: dict(s.labels) for j, s in zip(jobs, specs, strict=True)}
    mine = where.tags.contains(t)
    async with farm.jobs.list(where=mine & (where.labels["team"] == "fx")) as it:
        assert {j.id async for j in it} == {jobs[0].id, jobs[1].id}
    async with farm.jobs.list(where=f'tags contains "{t}" and labels.example.com/shot matches "0$"', sort="name") as it:
        assert {j.id async for j in it} == {jobs[0].id, jobs[1].id}
    async with farm.jobs.list(where=f'tags contains "{t}" and labels.team == null') as it:
        assert [j.id async for j in it] == [jobs[3].id]
    assert await farm.jobs.count(where=mine & where.labels["team"].in_(["lighting", "comp"])) == 1
    assert await farm.jobs.count(where=mine & (where.labels["empty"] == "")) == 1


async def test_bad_labels_are_refused_naming_the_field(farm: Client) -> None:
    cases = [
        ({"bad key": "x"}, "labels"),
        ({"-team": "x"}, "labels"),
        ({"UPPER.example.com/team": "x"}, "labels"),
        ({"x" * 64: "x"}, "labels"),
        ({"team": "fx!"}, "labels['team']"),
        ({"team": "v" * 64}, "labels['team']"),
        ({f"k{i}": "v" for i in range(65)}, "labels"),
    ]
    for labels, field in cases:
        with pytest.raises(InvalidSpec) as info:
            await farm.jobs.start(OK, labels=labels)
        assert info.value.field == field, (labels, info.value)
        with pytest.raises(InvalidSpec) as info:
            await farm.jobs.submit([JobSpec(command=OK), JobSpec(command=OK, labels=labels)])
        assert info.value.field == f"specs[1].{field}"
    with pytest.raises(InvalidSpec) as info:
        await farm.jobs.start(OK, labels=["team=fx"])  # type: ignore[arg-type]
    assert info.value.field == "labels"
    with pytest.raises(InvalidSpec) as info:
        where.labels["a b"]
    assert info.value.field == "where.labels.a b"
