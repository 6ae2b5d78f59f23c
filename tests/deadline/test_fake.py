"""The fake holds requests and its own responses to botocore's Deadline model.

Requests here are raw HTTP (botocore would refuse most of them client-side)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any

import pytest

from tests.fakes.deadline.process import FakeDeadlineProcess
from tests.fakes.deadline.protocol import Invalid, ServiceProtocol


def _raw(
    fake: FakeDeadlineProcess, method: str, path: str, body: Any = None
) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(fake.endpoint + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), json.load(resp)
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), json.load(err)


TEMPLATE = json.dumps(
    {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "x",
        "steps": [{"name": "s", "script": {"actions": {"onRun": {"command": "true"}}}}],
    }
)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"priority": 500, "template": TEMPLATE, "templateType": "JSON"}, "priority"),
        ({"priority": 50, "template": TEMPLATE, "templateType": "XML"}, "templateType"),
        ({"priority": "50", "template": TEMPLATE, "templateType": "JSON"}, "expected an integer"),
        ({"priority": 50, "template": TEMPLATE, "templateType": "JSON", "colour": "red"}, "colour"),
        ({"template": TEMPLATE, "templateType": "JSON"}, "priority: required"),
        (
            {
                "priority": 50,
                "template": TEMPLATE,
                "templateType": "JSON",
                "parameters": {"N": {"int": "abc"}},
            },
            "pattern",
        ),
        (
            {
                "priority": 50,
                "template": TEMPLATE,
                "templateType": "JSON",
                "parameters": {"N": {"int": "1", "float": "2"}},
            },
            "exactly one member",
        ),
    ],
)
def test_create_job_requests_are_checked_against_the_model(
    fake: FakeDeadlineProcess, body: Any, needle: str
) -> None:
    status, headers, payload = _raw(
        fake, "POST", f"/2023-10-12/farms/{fake.farm_id}/queues/{fake.queue_id}/jobs", body
    )
    assert status == 400
    assert headers["x-amzn-ErrorType"] == "ValidationException"
    assert payload["reason"] == "FIELD_VALIDATION_FAILED"
    assert needle in payload["message"]
    assert fake.stats().get("CreateJob") == 1


def test_list_limits_and_ids_are_checked(fake: FakeDeadlineProcess) -> None:
    status, _, payload = _raw(
        fake, "GET", f"/2023-10-12/farms/{fake.farm_id}/queues/{fake.queue_id}/jobs?maxResults=0"
    )
    assert status == 400 and "maxResults" in payload["message"]
    ident = {"farmId": fake.farm_id, "queueId": fake.queue_id, "jobId": "job-" + "0" * 32}
    status, _, payload = _raw(
        fake, "POST", "/2023-10-12/batch-get-job", {"identifiers": [ident] * 101}
    )
    assert status == 400 and "above the maximum 100" in payload["message"]
    status, _, payload = _raw(fake, "POST", "/2023-10-12/batch-get-job", {"identifiers": [ident]})
    assert status == 200 and payload["errors"][0]["code"] == "ResourceNotFoundException"
    status, headers, payload = _raw(
        fake, "GET", f"/2023-10-12/farms/{fake.farm_id}/queues/queue-nothex"
    )
    assert status == 400 and "pattern" in payload["message"]
    status, headers, payload = _raw(
        fake, "GET", f"/2023-10-12/farms/{fake.farm_id}/queues/queue-{'0' * 32}"
    )
    assert status == 404 and headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert payload["resourceType"] == "queue"
    status, _, payload = _raw(fake, "DELETE", "/2023-10-12/nowhere")
    assert status == 400 and payload["reason"] == "UNKNOWN_OPERATION"


def test_injected_faults_follow_the_model(fake: FakeDeadlineProcess) -> None:
    fake.faults(rate=1.0, kinds=["throttle"])
    status, headers, payload = _raw(fake, "GET", "/2023-10-12/farms")
    assert status == 429 and headers["x-amzn-ErrorType"] == "ThrottlingException"
    fake.faults(rate=1.0, kinds=["500"])
    status, headers, _ = _raw(fake, "GET", "/2023-10-12/farms")
    assert status == 500 and headers["x-amzn-ErrorType"] == "InternalServerErrorException"
    fake.faults(rate=1.0, kinds=["reset"])
    with pytest.raises((ConnectionError, urllib.error.URLError)):
        _raw(fake, "GET", "/2023-10-12/farms")
    fake.faults(rate=0)
    status, _, payload = _raw(fake, "GET", "/2023-10-12/farms")
    assert status == 200 and payload["farms"][0]["farmId"] == fake.farm_id


def test_responses_are_validated_too() -> None:
    proto = ServiceProtocol()
    op = proto.model.operation_model("GetJob")
    good = {
        "jobId": "job-" + "1" * 32, "name": "n", "lifecycleStatus": "CREATE_COMPLETE",
        "lifecycleStatusMessage": "", "priority": 50, "createdAt": datetime.now(timezone.utc), "createdBy": "me",
    }  # fmt: skip
    _, body = proto.serialize(op.output_shape, good)
    assert json.loads(body)["createdAt"].endswith("Z")
    for bad, needle in (
        ({**good, "priority": 101}, "priority"),
        ({**good, "taskRunStatus": "DONE"}, "taskRunStatus"),
        ({k: v for k, v in good.items() if k != "createdBy"}, "createdBy"),
        ({**good, "jobId": "job-1"}, "jobId"),
    ):
        with pytest.raises(Invalid) as err:
            proto.serialize(op.output_shape, bad)
        assert needle in str(err.value)
