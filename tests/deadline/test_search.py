"""SearchJobs filter expressions built from a listing's query (drivers/deadline/search.py),
checked against botocore's model, and native filtering measured against the fake."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

import aiofarm
from aiofarm import JobStatus, where
from aiofarm.drivers.base import ListQuery
from aiofarm.drivers.deadline import search
from tests.fakes.deadline.process import FakeDeadlineProcess
from tests.fakes.deadline.protocol import ServiceProtocol

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
FARM = "farm-" + "a" * 32
QUEUE = "queue-" + "b" * 32


def _checked(filters: dict[str, Any] | None) -> dict[str, Any]:
    """The filter as a SearchJobs request accepts it (botocore's model, via the fake's
    validator, which rejects a group of more than three filters)."""
    assert filters is not None
    proto = ServiceProtocol()
    shape = proto.model.operation_model("SearchJobs").input_shape
    proto.check(
        shape,
        {"farmId": FARM, "queueIds": [QUEUE], "itemOffset": 0, "filterExpressions": filters},
        "",
    )
    return filters


def _leaves(group: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for f in group["filters"]:
        out.extend(_leaves(f["groupFilter"]) if "groupFilter" in f else [f])
    return out


def test_statuses_and_name_nest_in_groups_of_three() -> None:
    filters = _checked(search.search_filters(frozenset({JobStatus.PENDING}), "abc", None, None, None))
    assert filters["operator"] == "AND"
    values = sorted(
        f["stringFilter"]["value"] for f in _leaves(filters) if "stringFilter" in f
    )
    assert values == ["ASSIGNED", "PENDING", "READY", "SCHEDULED", "STARTING"]
    assert search.search_filters(None, None, None, None, None) is None


@pytest.mark.parametrize(
    ("expr", "leaf"),
    [
        (where.name == "shot", {"stringFilter": {"name": "NAME", "operator": "EQUAL", "value": "shot"}}),
        (where.priority >= 70, {"stringFilter": {"name": "PRIORITY", "operator": "GREATER_THAN_EQUAL_TO", "value": "70"}}),
        (where.created_at < T0, {"dateTimeFilter": {"name": "CREATED_AT", "operator": "LESS_THAN", "dateTime": T0}}),
        (where.finished_at >= T0, {"dateTimeFilter": {"name": "ENDED_AT", "operator": "GREATER_THAN_EQUAL_TO", "dateTime": T0}}),
        (where.name.contains("sh0"), {"searchTermFilter": {"searchTerm": "sh0", "matchType": "CONTAINS"}}),
        (where.owner == "me", {"stringFilter": {"name": "CREATED_BY", "operator": "EQUAL", "value": "me"}}),
    ],
)
def test_where_comparisons_become_native_filters(expr: aiofarm.where.Expr, leaf: dict[str, Any]) -> None:
    filters = _checked(search.search_filters(None, None, None, None, None, expr))
    assert _leaves({"filters": [{"groupFilter": filters}]}) == [leaf]


def test_and_keeps_what_translates_or_needs_every_branch_not_never() -> None:
    mixed = (where.status == "failed") & where.name.matches("^x") & where.tags.contains("final")
    filters = _checked(search.search_filters(None, None, None, None, None, mixed))
    assert {f["stringFilter"]["name"] for f in _leaves(filters)} == {"TASK_RUN_STATUS"}
    either = (where.status == "failed") | (where.priority < 10)
    filters = _checked(search.search_filters(None, None, None, None, None, either))
    assert filters["operator"] == "OR" and len(_leaves(filters)) == 3
    assert search.translate_where((where.status == "failed") | where.name.matches("x")) is None
    assert search.translate_where(~(where.status == "failed")) is None
    assert search.translate_where(where.tags.contains("x")) is None
    status_in = search.translate_where(where.status.in_(["failed", "canceled"]))
    assert status_in is not None
    query = ListQuery(statuses=frozenset({JobStatus.RUNNING}), since=T0, where=where.priority == 5)
    _checked(search.list_filters(query, ("GREATER_THAN_EQUAL_TO", T0)))


@pytest.mark.anyio
async def test_native_filter_lists_100_of_2000_in_two_requests(
    fake: FakeDeadlineProcess, url: str
) -> None:
    template = '{"specificationVersion":"jobtemplate-2023-09","name":"n","steps":[{"name":"s","script":{"actions":{"onRun":{"command":"true"}}}}]}'
    fake.admin("seed", {"count": 1900, "template": template, "templateType": "JSON", "priority": 50})
    hits = fake.admin("seed", {"count": 100, "template": template, "templateType": "JSON", "priority": 90})["jobIds"]
    async with aiofarm.Client(url) as farm:
        await farm.driver.adopted()  # type: ignore[attr-defined]
        fake.admin("stats/reset", {})
        async with farm.jobs.list(where="priority > 80 and status == pending", page_size=100) as it:
            found = [j.id async for j in it]
        stats = fake.stats()
    assert sorted(found) == sorted(hits)
    assert stats == {"SearchJobs": 1, "BatchGetJob": 1}
