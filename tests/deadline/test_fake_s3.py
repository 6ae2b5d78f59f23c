"""The benchmarks' fake S3 (tests/fakes/s3): boto3 gets what it would get from S3, a
request botocore's S3 model does not allow is refused, and a response member the model
lacks is never sent."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from aiohttp import web

from tests.fakes.s3 import model
from tests.fakes.s3.server import FakeS3

pytestmark = pytest.mark.anyio

MiB = 1 << 20


@pytest.fixture
async def endpoint() -> AsyncIterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runner = web.AppRunner(FakeS3().app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-west-2",
        aws_access_key_id="k", aws_secret_access_key="s",
    )  # fmt: skip


def _round_trip(endpoint: str) -> None:
    s3 = _client(endpoint)
    s3.create_bucket(Bucket="b", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    s3.put_object(Bucket="b", Key="dir/ñ a.txt", Body=b"hello", Metadata={"asset-root": "/x"})
    head = s3.head_object(Bucket="b", Key="dir/ñ a.txt")
    assert head["ContentLength"] == 5 and head["Metadata"] == {"asset-root": "/x"}
    assert head["ETag"] == f'"{hashlib.md5(b"hello").hexdigest()}"'
    got = s3.get_object(Bucket="b", Key="dir/ñ a.txt", Range="bytes=1-3")
    assert got["Body"].read() == b"ell" and got["ContentRange"] == "bytes 1-3/5"
    with pytest.raises(s3.exceptions.ClientError) as missing:
        s3.head_object(Bucket="b", Key="nope")
    assert missing.value.response["Error"]["Code"] == "404"
    # multipart: 2 parts, the ETag of the whole in S3's form
    data = os.urandom(5 * MiB + 10)
    up = s3.create_multipart_upload(Bucket="b", Key="big")["UploadId"]
    e1 = s3.upload_part(Bucket="b", Key="big", UploadId=up, PartNumber=1, Body=data[: 5 * MiB])["ETag"]
    assert [u["Key"] for u in s3.list_multipart_uploads(Bucket="b", Prefix="big")["Uploads"]] == ["big"]
    e2 = s3.upload_part(Bucket="b", Key="big", UploadId=up, PartNumber=2, Body=data[5 * MiB :])["ETag"]
    assert [p["Size"] for p in s3.list_parts(Bucket="b", Key="big", UploadId=up)["Parts"]] == [5 * MiB, 10]
    done = s3.complete_multipart_upload(
        Bucket="b", Key="big", UploadId=up,
        MultipartUpload={"Parts": [{"ETag": e1, "PartNumber": 1}, {"ETag": e2, "PartNumber": 2}]},
    )  # fmt: skip
    assert done["ETag"].endswith('-2"')
    assert s3.get_object(Bucket="b", Key="big")["Body"].read() == data
    assert s3.list_multipart_uploads(Bucket="b").get("Uploads", []) == []
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="b", PaginationConfig={"PageSize": 1})
    assert [c["Key"] for page in pages for c in page.get("Contents", [])] == ["big", "dir/ñ a.txt"]
    folders = s3.list_objects_v2(Bucket="b", Delimiter="/")
    assert [p["Prefix"] for p in folders["CommonPrefixes"]] == ["dir/"]


async def test_boto3_round_trip(endpoint: str) -> None:
    await anyio.to_thread.run_sync(_round_trip, endpoint)


async def test_requests_outside_the_model_are_refused(endpoint: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.put(f"{endpoint}/b") as made:
            assert made.status == 200
        async with http.put(f"{endpoint}/b/k?bogus=1", data=b"x") as bad_query:
            assert bad_query.status == 400 and "bogus" in await bad_query.text()
        async with http.put(f"{endpoint}/b/k", data=b"x", headers={"x-amz-wrong": "1"}) as bad_header:
            assert bad_header.status == 400 and "x-amz-wrong" in await bad_header.text()
        async with http.put(f"{endpoint}/b/k?partNumber=x&uploadId=u", data=b"x") as not_int:
            assert not_int.status == 400 and "not an integer" in await not_int.text()


async def test_a_response_member_outside_the_model_is_never_sent() -> None:
    op = model.model().operation_model("HeadObject")
    with pytest.raises(model.ServerBug):
        model.write_response(op, {"ETag": '"x"', "Colour": "blue"})
    headers, body = model.write_response(op, {"ETag": '"x"', "ContentLength": 3})
    assert headers == {"ETag": '"x"', "Content-Length": "3"} and body == b""
