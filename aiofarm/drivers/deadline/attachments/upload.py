"""Submitting with job attachments: hash the input files (a local cache skips unchanged
ones), upload to S3 what it does not hold yet, write one input manifest per root, and
give CreateJob its ``attachments`` block, in the official client's layout.

Concurrency is bounded: hashing by the CPU count (xxhash releases the GIL), S3 requests
by ``concurrency``. Whether S3 has a file already is asked with one HeadObject per file,
or, when the Data/ prefix holds fewer objects than there are files to ask about, read
off a listing of it (1,000 keys a request). Uploads are resumable: data is content-addressed, so a submission
that was interrupted finds what it already stored, and a large file's multipart upload
is continued from the parts S3 already has (their MD5 checked against the file).
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import attrs

from ....models import TransferProgress
from ..api import DeadlineApi
from .assets import AssetGroup, relative
from .cache import AttachmentsCache
from .manifest import Manifest, ManifestPath, Settings, hash_bytes, hash_file
from .progress import Meter

__all__ = ["UploadSummary", "Uploader", "s3_missing"]

MiB = 1 << 20
#: a body read for an upload and its CRC32 (base64)
Body = tuple[bytes, str]
#: files at least this big go up in parts (S3's minimum part is 5 MiB)
MULTIPART_THRESHOLD = 16 * MiB
PART_SIZE = 8 * MiB
#: known objects re-checked against S3 on each submission
SAMPLE = 10


@attrs.frozen
class UploadSummary:
    files: int  # data objects stored by this submission
    bytes: int
    skipped_files: int  # already in S3
    skipped_bytes: int
    hashed_files: int  # read and hashed (the rest came from the hash cache)
    manifests: int  # input manifests written
    resumed_bytes: int = 0  # of ``bytes``: parts an interrupted multipart upload had stored


def s3_missing(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError  # type: ignore[import-untyped]

    if not isinstance(exc, ClientError):
        return False
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchUpload")


def _stat(paths: Sequence[str]) -> list[tuple[str, int, int]]:
    out = []
    for path in paths:
        st = os.stat(path)
        out.append((path, st.st_size, st.st_mtime_ns))
    return out


def _crc32(body: bytes) -> str:
    """The CRC32 S3 checks a body against (``ChecksumCRC32``): computed here, in the
    reading thread, botocore does not compute it on the event loop."""
    return base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()


def _read_hashed(path: str, size: int) -> tuple[str, Body]:
    """A small file's xxh128 and its contents (with their CRC32), read once."""
    with open(path, "rb") as f:
        body = f.read(size)
    return hash_bytes(body), (body, _crc32(body))


def _read(path: str, offset: int, length: int) -> Body:
    with open(path, "rb") as f:
        f.seek(offset)
        body = f.read(length)
    return body, _crc32(body)


class Uploader:
    def __init__(
        self,
        api: DeadlineApi,
        s3: Any,
        settings: Settings,
        cache: AttachmentsCache,
        *,
        concurrency: int = 32,
    ) -> None:
        self.api = api
        self.s3 = s3
        self.settings = settings
        self.cache = cache
        self.requests = anyio.CapacityLimiter(concurrency)
        self.cpu = anyio.CapacityLimiter(max(2, os.cpu_count() or 2))
        self.io = anyio.CapacityLimiter(concurrency)
        #: small files read (and hashed) whose bodies wait for their upload
        self.bodies = anyio.Semaphore(2 * concurrency)
        #: bytes of interrupted multipart uploads found in S3 and not sent again
        self.resumed = 0

    async def _s3(self, op: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        return await self.api.run(f"s3 {op}", fn, limiter=self.requests)

    async def exists(self, key: str) -> bool:
        async def head() -> bool:
            try:
                await self.s3.head_object(Bucket=self.settings.bucket, Key=key)
            except Exception as exc:
                if s3_missing(exc):
                    return False
                raise
            return True

        result: bool = await self._s3("HeadObject", head)
        return result

    # -- storing -------------------------------------------------------------------
    async def _known(self, keys: Sequence[str]) -> set[str]:
        """The keys the cache says S3 has, after checking a sample of them against S3."""
        bucket = self.settings.bucket
        full = [f"{bucket}/{k}" for k in keys]
        known = await anyio.to_thread.run_sync(self.cache.known, full, limiter=self.io)
        sample = sorted(known)[:: max(1, len(known) // SAMPLE)][:SAMPLE]
        gone = False

        async def check(entry: str) -> None:
            nonlocal gone
            if not await self.exists(entry[len(bucket) + 1 :]):
                gone = True

        async with anyio.create_task_group() as tg:
            for entry in sample:
                tg.start_soon(check, entry)
        if gone:  # the bucket was emptied or objects expired: trust S3 alone
            await anyio.to_thread.run_sync(self.cache.forget_bucket, bucket, limiter=self.io)
            return set()
        return {k[len(bucket) + 1 :] for k in known}

    async def _listing(self, count: int) -> set[str] | None:
        """What the Data/ prefix holds, from listing it, when that takes fewer requests
        than a HeadObject for each of ``count`` keys (a prefix of at most ``count``
        objects, 1,000 per page); None when the prefix is bigger (then each key is asked)."""
        if count < 8:
            return None
        prefix = self.settings.data_key("")[: -len(".xxh128")]
        found: set[str] = set()
        token: str | None = None
        for _ in range(-(-count // 1000) + 1):
            kw: dict[str, Any] = {"Bucket": self.settings.bucket, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            resp = await self._s3(
                "ListObjectsV2", lambda kw=kw: self.s3.list_objects_v2(**kw)  # type: ignore[misc]
            )
            found.update(item["Key"] for item in resp.get("Contents", []))
            token = resp.get("NextContinuationToken")
            if not token:
                return found
        return None

    async def _store(
        self, path: str, size: int, digest: str, body: Body | None, known: set[str],
        claimed: set[str], listing_done: anyio.Event, listed: Callable[[], set[str] | None],
        meter: Meter, stored: list[str],
    ) -> None:  # fmt: skip
        """Put one file's content under its key unless S3 has it (or another file of
        this submission with the same content is putting it)."""
        key = self.settings.data_key(digest)
        if key in claimed or key in known:
            meter.file(size, skipped=True)
            return
        claimed.add(key)
        await listing_done.wait()
        found = listed()
        there = key in found if found is not None else await self.exists(key)
        if there:
            meter.file(size, skipped=True)
        else:
            await self._put(key, path, size, meter, body)
        stored.append(f"{self.settings.bucket}/{key}")

    async def _put(self, key: str, path: str, size: int, meter: Meter, body: Body | None = None) -> None:
        if size >= MULTIPART_THRESHOLD:
            await self._put_parts(key, path, size, meter)
            return
        if body is None:
            body = await anyio.to_thread.run_sync(_read, path, 0, size, limiter=self.io)
        data, crc = body
        await self._s3(
            "PutObject",
            lambda: self.s3.put_object(Bucket=self.settings.bucket, Key=key, Body=data, ChecksumCRC32=crc),
        )
        meter.file(size)

    async def _put_parts(self, key: str, path: str, size: int, meter: Meter) -> None:
        bucket = self.settings.bucket
        upload_id, done = await self._resumable(key)
        if upload_id is None:
            created = await self._s3(
                "CreateMultipartUpload",
                lambda: self.s3.create_multipart_upload(Bucket=bucket, Key=key),
            )
            upload_id = created["UploadId"]
        count = -(-size // PART_SIZE)
        etags: dict[int, str] = {}
        sent = 0

        async def part(number: int) -> None:
            nonlocal sent
            offset = (number - 1) * PART_SIZE
            length = min(PART_SIZE, size - offset)
            body, crc = await anyio.to_thread.run_sync(_read, path, offset, length, limiter=self.io)
            previous = done.get(number)
            if previous is not None and previous[0] == length:
                md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
                if previous[1].strip('"') == md5:  # resumed: S3 has this part already
                    etags[number] = previous[1]
                    sent += length
                    self.resumed += length
                    meter.bytes(length)
                    return
            resp = await self._s3(
                "UploadPart",
                lambda: self.s3.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body,
                    ChecksumCRC32=crc,
                ),
            )
            etags[number] = resp["ETag"]
            sent += length
            meter.bytes(length)

        async with anyio.create_task_group() as tg:
            for number in range(1, count + 1):
                tg.start_soon(part, number)
        parts = [{"ETag": etags[n], "PartNumber": n} for n in range(1, count + 1)]
        await self._s3(
            "CompleteMultipartUpload",
            lambda: self.s3.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            ),
        )
        meter.file(size, counted=sent)

    async def _resumable(self, key: str) -> tuple[str | None, dict[int, tuple[int, str]]]:
        """An unfinished multipart upload of ``key`` and its parts (number -> size, ETag)."""
        bucket = self.settings.bucket
        found = await self._s3(
            "ListMultipartUploads",
            lambda: self.s3.list_multipart_uploads(Bucket=bucket, Prefix=key),
        )
        uploads = [u for u in found.get("Uploads", []) if u.get("Key") == key]
        if not uploads:
            return None, {}
        upload_id = str(uploads[-1]["UploadId"])
        try:
            listed = await self._s3(
                "ListParts",
                lambda: self.s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id),
            )
        except Exception:  # gone meanwhile (completed or aborted): start afresh
            return None, {}
        return upload_id, {
            int(p["PartNumber"]): (int(p["Size"]), str(p["ETag"])) for p in listed.get("Parts", [])
        }

    # -- a submission --------------------------------------------------------------
    async def attach(
        self,
        farm: str,
        queue: str,
        groups: Sequence[AssetGroup],
        file_system: str,
        on_progress: Callable[[TransferProgress], object] | None,
    ) -> tuple[dict[str, Any], UploadSummary]:
        """Hash, upload and describe ``groups``: CreateJob's ``attachments`` block.

        One pipeline per file: a file is uploaded as soon as it is hashed (a small one
        is read once, hashed and sent from the same bytes), while the Data/ listing
        that says what S3 holds runs beside the hashing."""
        paths = [p for g in groups for p in g.inputs]
        stats = await anyio.to_thread.run_sync(_stat, paths, limiter=self.io)
        cached = await anyio.to_thread.run_sync(self.cache.hashes, stats, limiter=self.io)
        known = await self._known(sorted({self.settings.data_key(d) for d in cached.values()}))
        hashing = Meter("hashing", len(stats), sum(s[1] for s in stats), on_progress)
        meter = Meter("uploading", len(stats), sum(s[1] for s in stats), on_progress)
        hashes: dict[str, tuple[int, int, str]] = {}
        fresh: list[tuple[str, int, int, str]] = []
        stored: list[str] = []
        claimed: set[str] = set()
        listed: set[str] | None = None
        listing_done = anyio.Event()
        unknown = sum(1 for p, _, _ in stats if self.settings.data_key(cached.get(p, "")) not in known)

        async def listing() -> None:
            nonlocal listed
            try:
                listed = await self._listing(unknown)
            finally:
                listing_done.set()

        async def one(path: str, size: int, mtime: int) -> None:
            known_digest = cached.get(path)
            if known_digest is not None:
                hashing.file(size, skipped=True)
                await self._store(path, size, known_digest, None, known, claimed, listing_done, lambda: listed, meter, stored)
                return
            body: Body | None
            if size >= MULTIPART_THRESHOLD:
                digest = await anyio.to_thread.run_sync(hash_file, path, limiter=self.cpu)
                body = None
            else:
                # bounded: a read body waits for its upload in memory
                await self.bodies.acquire()
                try:
                    digest, body = await anyio.to_thread.run_sync(_read_hashed, path, size, limiter=self.cpu)
                except BaseException:
                    self.bodies.release()
                    raise
            hashes[path] = (size, mtime, digest)
            fresh.append((path, size, mtime, digest))
            hashing.file(size)
            try:
                await self._store(path, size, digest, body, known, claimed, listing_done, lambda: listed, meter, stored)
            finally:
                if body is not None:
                    self.bodies.release()

        async with anyio.create_task_group() as tg:
            tg.start_soon(listing)
            # big files first: they take longest, so they start before the small ones
            for path, size, mtime in sorted(stats, key=lambda s: -s[1]):
                if path in cached:
                    hashes[path] = (size, mtime, cached[path])
                tg.start_soon(one, path, size, mtime)
        hashing.finish()
        if fresh:
            await anyio.to_thread.run_sync(self.cache.put_hashes, fresh, limiter=self.io)
        manifests, written = [], 0
        for g in groups:
            props: dict[str, Any] = {
                "rootPath": g.root,
                "rootPathFormat": "windows" if sys.platform == "win32" else "posix",
            }
            if g.file_system_location:
                props["fileSystemLocationName"] = g.file_system_location
            if g.inputs:
                entries = []
                for p in g.inputs:
                    size, mtime_ns, digest = hashes[p]
                    entries.append(ManifestPath(relative(p, g.root), digest, size, mtime_ns // 1000))
                data = Manifest(tuple(entries)).encode()
                partial = Settings.input_manifest_partial(farm, queue, g.root, data)
                key = self.settings.manifest_key(partial)
                if key not in known and not await self.exists(key):
                    await self._s3(
                        "PutObject",
                        lambda: self.s3.put_object(
                            Bucket=self.settings.bucket, Key=key, Body=data  # noqa: B023
                        ),
                    )
                    written += 1
                stored.append(f"{self.settings.bucket}/{key}")
                props["inputManifestPath"] = partial
                props["inputManifestHash"] = hash_bytes(data)
            if g.outputs:
                props["outputRelativeDirectories"] = [relative(o, g.root) for o in g.outputs]
            manifests.append(props)
        await anyio.to_thread.run_sync(self.cache.put_known, stored, limiter=self.io)
        meter.finish()
        uploaded = meter.files_done - meter.files_skipped
        summary = UploadSummary(
            files=uploaded,
            bytes=meter.bytes_done - meter.bytes_skipped,
            skipped_files=meter.files_skipped,
            skipped_bytes=meter.bytes_skipped,
            hashed_files=len(fresh),
            manifests=written,
            resumed_bytes=self.resumed,
        )
        return {"manifests": manifests, "fileSystem": file_system}, summary
