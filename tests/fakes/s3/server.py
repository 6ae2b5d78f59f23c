"""A minimal S3 on aiohttp: buckets and objects in memory, multipart uploads, path-style
addressing, every request and response checked against botocore's S3 model (model.py).

It exists to be fast where moto is not: a body is read once and kept as it came (a
multipart object is the list of its parts, never concatenated), MD5s of large bodies
are computed in a thread, and nothing is validated twice. What it serves is what the
Deadline job attachments code of aiofarm and of the official client use: objects
(Put, Get with ranges, Head, Delete), ListObjectsV2, multipart uploads (Create,
UploadPart, Complete, Abort, ListMultipartUploads, ListParts) and buckets (Create, Head).
Signatures are not checked (any credentials do).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import itertools
import urllib.parse
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from . import model

__all__ = ["FakeS3"]

_THREAD_MD5 = 1 << 20  # bodies at least this big are hashed off the event loop


class Obj:
    __slots__ = ("chunks", "content_type", "etag", "metadata", "modified", "size")

    def __init__(self, chunks: Sequence[bytes], etag: str, metadata: dict[str, str], content_type: str | None) -> None:
        self.chunks = list(chunks)
        self.size = sum(len(c) for c in chunks)
        self.etag = etag
        self.metadata = metadata
        self.content_type = content_type
        self.modified = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive)."""
        out, at = [], 0
        for chunk in self.chunks:
            lo, hi = max(start - at, 0), min(end - at, len(chunk))
            if lo < hi:
                out.append(chunk if (lo, hi) == (0, len(chunk)) else chunk[lo:hi])
            at += len(chunk)
            if at >= end:
                break
        return out[0] if len(out) == 1 else b"".join(out)


class Upload:
    def __init__(self, bucket: str, key: str, metadata: dict[str, str], content_type: str | None) -> None:
        self.bucket, self.key = bucket, key
        self.metadata, self.content_type = metadata, content_type
        self.parts: dict[int, tuple[bytes, str, dt.datetime]] = {}
        self.initiated = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


class S3Error(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _decode_chunked(body: bytes) -> bytes:
    """An ``aws-chunked`` body (``<hex size>[;chunk-signature=...]\\r\\n<data>\\r\\n``...,
    then trailers) as its data."""
    out, at = [], 0
    while True:
        end = body.index(b"\r\n", at)
        size = int(body[at:end].split(b";", 1)[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(body[end + 2 : end + 2 + size])
        at = end + 2 + size + 2


async def _md5(data: bytes) -> str:
    if len(data) < _THREAD_MD5:
        return hashlib.md5(data, usedforsecurity=False).hexdigest()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, lambda: hashlib.md5(data, usedforsecurity=False).hexdigest())


class FakeS3:
    def __init__(self) -> None:
        self.buckets: dict[str, dict[str, Obj]] = {}
        self.uploads: dict[str, Upload] = {}
        self.ids = itertools.count(1)
        self.requests: dict[str, int] = {}

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    # -- the HTTP side ---------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path  # decoded
        bucket, _, key = path.lstrip("/").partition("/")
        query = {k: v for k, v in urllib.parse.parse_qsl(request.query_string, keep_blank_values=True)}
        try:
            op = model.operation(request.method, bool(key), query)
        except model.Invalid as exc:
            return self._error(request, S3Error(400, "InvalidRequest", str(exc)))
        body = await request.read()
        sha = request.headers.get("x-amz-content-sha256", "")
        if "aws-chunked" in request.headers.get("Content-Encoding", "") or sha.startswith("STREAMING-"):
            body = _decode_chunked(body)
        try:
            params = model.read_request(op, {"Bucket": bucket, "Key": key}, query, request.headers, body)
            self.requests[op.name] = self.requests.get(op.name, 0) + 1
            status, data = await getattr(self, op.name)(params, request)
            headers, payload = model.write_response(op, data)
        except S3Error as exc:
            return self._error(request, exc)
        except model.Invalid as exc:
            return self._error(request, S3Error(400, "InvalidRequest", str(exc)))
        if request.method == "HEAD":
            return web.Response(status=status, headers=headers)
        return web.Response(status=status, headers=headers, body=payload)

    @staticmethod
    def _error(request: web.Request, exc: S3Error) -> web.Response:
        if request.method == "HEAD":
            return web.Response(status=exc.status)
        text = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{}</Code><Message>{}</Message></Error>'
        ).format(exc.code, exc.message.replace("&", "&amp;").replace("<", "&lt;"))
        return web.Response(status=exc.status, body=text.encode(), content_type="application/xml")

    # -- buckets and lookups ---------------------------------------------------------
    def _bucket(self, name: str) -> dict[str, Obj]:
        found = self.buckets.get(name)
        if found is None:
            raise S3Error(404, "NoSuchBucket", f"the bucket {name} does not exist")
        return found

    def _object(self, p: dict[str, Any]) -> Obj:
        obj = self._bucket(p["Bucket"]).get(p["Key"])
        if obj is None:
            raise S3Error(404, "NoSuchKey", f"the key {p['Key']} does not exist")
        return obj

    def _upload(self, p: dict[str, Any]) -> Upload:
        up = self.uploads.get(p["UploadId"])
        if up is None or (up.bucket, up.key) != (p["Bucket"], p["Key"]):
            raise S3Error(404, "NoSuchUpload", f"no upload {p['UploadId']}")
        return up

    async def CreateBucket(self, p: dict[str, Any], _: web.Request) -> tuple[int, dict[str, Any]]:
        if p["Bucket"] in self.buckets:
            raise S3Error(409, "BucketAlreadyOwnedByYou", "you own this bucket already")
        self.buckets[p["Bucket"]] = {}
        return 200, {"Location": "/" + p["Bucket"]}

    async def HeadBucket(self, p: dict[str, Any], _: web.Request) -> tuple[int, dict[str, Any]]:
        self._bucket(p["Bucket"])
        return 200, {}

    async def GetBucketLocation(self, p: dict[str, Any], _: web.Request) -> tuple[int, dict[str, Any]]:
        self._bucket(p["Bucket"])
        return 200, {"LocationConstraint": "us-west-2"}

    # -- objects -------------------------------------------------------------------
    async def PutObject(self, p: dict[str, Any], _: web.Request) -> tuple[int, dict[str, Any]]:
        bucket = self._bucket(p["Bucket"])
        body = p.get("Body", b"")
        etag = f'"{await _md5(body)}"'
        bucket[p["Key"]] = Obj([body], etag, p.get("Metadata", {}), p.get("ContentType"))
        return 200, {"ETag": etag}

    def _head(self, obj: Obj) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ETag": obj.etag, "LastModified": obj.modified, "AcceptRanges": "bytes",
            "ContentType": obj.content_type or "binary/octet-stream",
        }  # fmt: skip
        if obj.metadata:
            out["Metadata"] = obj.metadata
        return out

    async def HeadObject(self, p: dict[str, Any], _: web.Request) -> tuple[int, dict[str, Any]]:
        obj = self._object(p)
        return 200, {**self._head(obj), "ContentLength": obj.size}

    async def GetObject(self, p: dict[str, Any], _: web.Request) -> tuple[int, dict[str, Any]]:
        obj = self._object(p)
        start, end, status = 0, obj.size, 200
        extra: dict[str, Any] = {}
        spec = p.get("Range")
        if spec:
            first, _, last = spec.removeprefix("bytes=").partition("-")
            if first:
                start, end = int(first), min(obj.size, int(last) + 1 if last else obj.size)
            else:
                start, end = max(0, obj.size - int(last)), obj.size
            if start >= end:
                raise S3Error(416, "InvalidRange", f"{spec} is outside 0-{obj.size}")
            status = 206
            extra["ContentRange"] = f"bytes {start}-{end - 1}/{obj.size}"
        return status, {**self._head(obj), **extra, "ContentLength": end - start, "Body": obj.read(start, end)}

    async def DeleteObject(self, p: dict[str, Any], _: web.Request) -> tuple[int, dict[str, Any]]:
        self._bucket(p["Bucket"]).pop(p["Key"], None)
        return 204, {}

    async def ListObjectsV2(self, p: dict[str, Any], _: web.Request) -> tuple[int, dict[str, Any]]:
        bucket = self._bucket(p["Bucket"])
        prefix, delimiter = p.get("Prefix", ""), p.get("Delimiter")
        after = p.get("ContinuationToken") or p.get("StartAfter") or ""
        limit = max(0, min(1000, p.get("MaxKeys", 1000)))
        contents: list[dict[str, Any]] = []
        common: list[str] = []
        truncated, last = False, ""
        for key in sorted(k for k in bucket if k.startswith(prefix) and k > after):
            if len(contents) + len(common) >= limit:
                truncated = True
                break
            if delimiter and delimiter in key[len(prefix) :]:
                folder = key[: key.index(delimiter, len(prefix)) + len(delimiter)]
                if not common or common[-1] != folder:
                    common.append(folder)
                last = key
                continue
            obj = bucket[key]
            contents.append({"Key": key, "Size": obj.size, "ETag": obj.etag, "LastModified": obj.modified, "StorageClass": "STANDARD"})
            last = key
        out: dict[str, Any] = {
            "Name": p["Bucket"], "Prefix": prefix, "MaxKeys": limit, "IsTruncated": truncated,
            "KeyCount": len(contents) + len(common),
        }  # fmt: skip
        if contents:
            out["Contents"] = contents
        if common:
            out["CommonPrefixes"] = [{"Prefix": c} for c in common]
        if delimiter:
            out["Delimiter"] = delimiter
        if p.get("ContinuationToken"):
            out["ContinuationToken"] = p["ContinuationToken"]
        if truncated:
            out["NextContinuationToken"] = last
        return 200, out

    # -- multipart -----------------------------------------------------------------
    async def CreateMultipartUpload(self, p: dict[str, Any], _: web.Request) -> tuple[int, dict[str, Any]]:
        self._bucket(p["Bucket"])
        upload_id = f"upload-{next(self.ids)}"
        self.uploads[upload_id] = Upload(p["Bucket"], p["Key"], p.get("Metadata", {}), p.get("ContentType"))
        return 200, {"Bucket": p["Bucket"], "Key": p["Key"], "UploadId": upload_id}

    async def UploadPart(self, p: dict[str, Any], _: web.Request) -> tuple[int, dict[str, Any]]:
        up = self._upload(p)
        if not 1 <= p["PartNumber"] <= 10_000:
            raise S3Error(400, "InvalidArgument", "part numbers go from 1 to 10,000")
        body = p.get("Body", b"")
        etag = f'"{await _md5(body)}"'
        up.parts[p["PartNumber"]] = (body, etag, dt.datetime.now(dt.timezone.utc).replace(microsecond=0))
        return 200, {"ETag": etag}

    async def CompleteMultipartUpload(self, p: dict[str, Any], _: web.Request) -> tuple[int, dict[str, Any]]:
        up = self._upload(p)
        listed = (p.get("MultipartUpload") or {}).get("Parts") or []
        if not listed:
            raise S3Error(400, "MalformedXML", "no parts named")
        chunks, digests, previous = [], [], 0
        for part in listed:
            number, etag = part.get("PartNumber"), part.get("ETag")
            found = up.parts.get(number) if isinstance(number, int) else None
            if found is None or found[1].strip('"') != str(etag).strip('"'):
                raise S3Error(400, "InvalidPart", f"part {number} was not uploaded with that ETag")
            if number <= previous:
                raise S3Error(400, "InvalidPartOrder", "parts must be in ascending order")
            previous = number
            chunks.append(found[0])
            digests.append(bytes.fromhex(found[1].strip('"')))
        for chunk in chunks[:-1]:
            if len(chunk) < 5 * (1 << 20):
                raise S3Error(400, "EntityTooSmall", "every part but the last must be 5 MiB or more")
        etag = f'"{hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()}-{len(chunks)}"'
        self.buckets[up.bucket][up.key] = Obj(chunks, etag, up.metadata, up.content_type)
        del self.uploads[p["UploadId"]]
        return 200, {"Location": f"/{up.bucket}/{up.key}", "Bucket": up.bucket, "Key": up.key, "ETag": etag}

    async def AbortMultipartUpload(self, p: dict[str, Any], _: web.Request) -> tuple[int, dict[str, Any]]:
        self._upload(p)
        del self.uploads[p["UploadId"]]
        return 204, {}

    async def ListMultipartUploads(self, p: dict[str, Any], _: web.Request) -> tuple[int, dict[str, Any]]:
        self._bucket(p["Bucket"])
        prefix = p.get("Prefix", "")
        found = sorted(
            ((u.key, i, u) for i, u in self.uploads.items() if u.bucket == p["Bucket"] and u.key.startswith(prefix)),
            key=lambda t: (t[0], t[2].initiated, t[1]),
        )
        out: dict[str, Any] = {"Bucket": p["Bucket"], "Prefix": prefix, "MaxUploads": 1000, "IsTruncated": False}
        if found:
            out["Uploads"] = [{"Key": k, "UploadId": i, "Initiated": u.initiated} for k, i, u in found]
        return 200, out

    async def ListParts(self, p: dict[str, Any], _: web.Request) -> tuple[int, dict[str, Any]]:
        up = self._upload(p)
        marker = p.get("PartNumberMarker", 0)
        limit = max(1, min(1000, p.get("MaxParts", 1000)))
        numbers = sorted(n for n in up.parts if n > marker)
        page, truncated = numbers[:limit], len(numbers) > limit
        out: dict[str, Any] = {
            "Bucket": up.bucket, "Key": up.key, "UploadId": p["UploadId"], "MaxParts": limit,
            "IsTruncated": truncated, "StorageClass": "STANDARD",
        }  # fmt: skip
        if page:
            out["Parts"] = [
                {"PartNumber": n, "ETag": up.parts[n][1], "Size": len(up.parts[n][0]), "LastModified": up.parts[n][2]}
                for n in page
            ]
        if truncated:
            out["NextPartNumberMarker"] = page[-1]
        return 200, out
