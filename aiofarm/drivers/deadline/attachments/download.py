"""``download_outputs``: the files a job's tasks produced, as ``deadline job
download-output`` gets them.

The output manifests under ``Manifests/<farm>/<queue>/<job>[/<step>[/<task>]]/`` are
listed (for each task only its latest session action's), read with the root path each
names in its metadata, and merged (a later manifest wins for the same file). Each file
lands under a local root: ``dest`` when given; else the storage profile's location for a
root named by a file system location; else the root path through the client's path
mapping rules. Downloads run concurrently within a bound, each into a temporary file
renamed when complete, with the manifest's mtime; a file already there with the same
size and mtime is skipped, so an interrupted download resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from ....errors import InvalidSpec
from ....models import TransferProgress
from ..api import DeadlineApi
from .manifest import Manifest, ManifestPath, Settings, output_manifest_keys
from .progress import Meter

__all__ = ["Downloader"]

_CHUNK = 1 << 20


def _asset_root(metadata: Mapping[str, str]) -> str | None:
    if "asset-root-json" in metadata:
        value = json.loads(metadata["asset-root-json"])
        return str(value)
    return metadata.get("asset-root")


def _current(target: str, size: int, mtime_us: int) -> bool:
    try:
        st = os.stat(target)
    except OSError:
        return False
    return st.st_size == size and st.st_mtime_ns // 1000 == mtime_us


class Downloader:
    def __init__(
        self, api: DeadlineApi, s3: Any, settings: Settings, *, concurrency: int = 32
    ) -> None:
        self.api = api
        self.s3 = s3
        self.settings = settings
        self.requests = anyio.CapacityLimiter(concurrency)

    async def _list(self, prefix: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"Bucket": self.settings.bucket, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            resp = await self.api.run(
                "s3 ListObjectsV2",
                lambda kw=kw: self.s3.list_objects_v2(**kw),  # type: ignore[misc]
                limiter=self.requests,
            )
            items.extend(resp.get("Contents", []))
            token = resp.get("NextContinuationToken")
            if not token:
                return items

    async def _manifest(self, key: str) -> tuple[str, str | None, Manifest, Any]:
        async def get() -> tuple[dict[str, Any], bytes]:
            resp = await self.s3.get_object(Bucket=self.settings.bucket, Key=key)
            async with resp["Body"] as body:
                return resp, await body.read()

        resp, data = await self.api.run("s3 GetObject", get, limiter=self.requests)
        metadata = resp.get("Metadata") or {}
        root = _asset_root(metadata)
        if root is None:
            raise InvalidSpec("outputs", f"output manifest {key} names no asset root")
        location = metadata.get("file-system-location-name")
        return root, location, Manifest.decode(data, f"output manifest {key}"), resp["LastModified"]

    async def download(
        self,
        farm: str,
        queue: str,
        job: str,
        parts: tuple[str, ...],
        *,
        dest: str | None,
        map_path: Callable[[str], str],
        locations: Mapping[str, str],
        on_progress: Callable[[TransferProgress], object] | None,
    ) -> list[str]:
        listed = await self._list(self.settings.output_prefix(farm, queue, job, *parts))
        keys = output_manifest_keys([item["Key"] for item in listed])
        read = []
        for key in keys:
            read.append(await self._manifest(key))
        read.sort(key=lambda r: r[3])  # oldest first: a later manifest wins
        files: dict[str, ManifestPath] = {}
        for root, location, manifest, _ in read:
            if dest is not None:
                local_root = dest
            elif location is not None and location in locations:
                local_root = locations[location]
            else:
                local_root = map_path(root)
            for entry in manifest.paths:
                files[os.path.join(local_root, *entry.path.split("/"))] = entry
        meter = Meter("downloading", len(files), sum(e.size for e in files.values()), on_progress)

        async def fetch(target: str, entry: ManifestPath) -> None:
            if await anyio.to_thread.run_sync(_current, target, entry.size, entry.mtime):
                meter.file(entry.size, skipped=True)
                return
            counted = await self._fetch(target, entry, meter)
            meter.file(entry.size, counted=counted)

        async with anyio.create_task_group() as tg:
            for target, entry in sorted(files.items(), key=lambda kv: -kv[1].size):
                tg.start_soon(fetch, target, entry)
        meter.finish()
        return sorted(files)

    async def _fetch(self, target: str, entry: ManifestPath, meter: Meter) -> int:
        """One file into ``target`` (through a temporary file); the bytes reported."""
        key = self.settings.data_key(entry.hash)
        partial = f"{target}.aiofarm-part"
        counted = 0

        async def get() -> None:
            nonlocal counted
            meter.bytes(-counted)  # a retried attempt starts over
            counted = 0
            resp = await self.s3.get_object(Bucket=self.settings.bucket, Key=key)
            await anyio.Path(target).parent.mkdir(parents=True, exist_ok=True)
            async with resp["Body"] as body, await anyio.open_file(partial, "wb") as out:
                while chunk := await body.read(_CHUNK):
                    await out.write(chunk)
                    counted += len(chunk)
                    meter.bytes(len(chunk))

        try:
            await self.api.run("s3 GetObject", get, limiter=self.requests)
            mtime_ns = entry.mtime * 1000
            await anyio.to_thread.run_sync(_finish, partial, target, mtime_ns)
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(OSError):
                await anyio.Path(partial).unlink()
            raise
        return counted


def _finish(partial: str, target: str, mtime_ns: int) -> None:
    os.utime(partial, ns=(mtime_ns, mtime_ns))
    os.replace(partial, target)
