"""Deadline Cloud job attachments, compatible with the official client and worker:
inputs hashed and uploaded at submission (upload.py), outputs downloaded on request
(download.py), in the manifest format and S3 layout of manifest.py.

S3 is reached through aiobotocore with the queue role's credentials
(``AssumeQueueRoleForUser``), as the official client does; if that is refused, with the
caller's own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from ....errors import AuthError, InvalidSpec, UnsupportedError
from ....models import JobSpec, TransferProgress
from ...base import transfer_progress
from ..api import NAME, DeadlineApi
from .assets import expand, gather, group
from .cache import AttachmentsCache
from .download import Downloader
from .manifest import Settings
from .upload import Uploader, UploadSummary

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["JobAttachments", "UploadSummary", "attachments_flag", "attachments_paths"]

log = logging.getLogger("aiofarm.deadline")

_FILE_SYSTEMS = ("COPIED", "VIRTUAL")


class JobAttachments:
    def __init__(
        self,
        api: DeadlineApi,
        *,
        storage_profile_id: str | None = None,
        cache_path: Path | None = None,
        concurrency: int = 16,
        file_system: str = "COPIED",
        require_paths_exist: bool = True,
        known_asset_paths: Sequence[str] = (),
    ) -> None:
        self.api = api
        #: a missing input is an InvalidSpec (True), or a referenced path, not uploaded
        #: (False: the official client's default), for submissions that do not say
        self.require_paths_exist = require_paths_exist
        #: paths outside the storage profile's locations that need no warning
        self.known_asset_paths = tuple(known_asset_paths)
        #: COPIED or VIRTUAL for submissions that do not say (the official client's
        #: ``defaults.job_attachments_file_system`` setting)
        self.file_system = file_system
        self.storage_profile_id = storage_profile_id
        self.cache = AttachmentsCache(cache_path)
        self.concurrency = concurrency
        self.settings: Settings | None = None
        #: file system location name -> (path, "LOCAL" | "SHARED") of the storage profile
        self.locations: dict[str, tuple[str, str]] = {}
        #: what the last submission with attachments moved (for tests and benchmarks)
        self.last_upload: UploadSummary | None = None
        self._own_s3: Any = None
        self._own_stack: Any = None

    async def open(self, queue: Mapping[str, Any]) -> None:
        self.settings = Settings.of_queue(queue)
        if self.storage_profile_id:
            profile = await self.api.call(
                "get_storage_profile_for_queue",
                farmId=self.api.farm_id,
                queueId=self.api.queue_id,
                storageProfileId=self.storage_profile_id,
            )
            self.locations = {
                loc["name"]: (loc["path"], loc["type"])
                for loc in profile.get("fileSystemLocations") or []
            }

    async def aclose(self) -> None:
        stack, self._own_stack = self._own_stack, None
        self._own_s3 = None
        if stack is not None:
            await stack.aclose()
        await anyio.to_thread.run_sync(self.cache.close)

    async def _s3(self) -> Any:
        try:
            return await self.api.role_client("s3", "user")
        except AuthError:
            if self._own_s3 is None:
                import contextlib

                self._own_stack = contextlib.AsyncExitStack()
                self._own_s3 = await self._own_stack.enter_async_context(
                    self.api.create_client("s3")
                )
            return self._own_s3

    def _require(self, what: str) -> Settings:
        if self.settings is None:
            raise UnsupportedError(
                NAME, what, f"queue {self.api.queue_id} has no job attachments settings"
            )
        return self.settings

    async def for_spec(self, spec: JobSpec) -> dict[str, Any] | None:
        """CreateJob's ``attachments`` for ``spec`` (its inputs uploaded), or None when
        it references no input or output."""
        refs = gather(spec.options.get("asset_references"), spec.template, spec.parameters)
        if not refs:
            return None
        if self.settings is None:
            raise InvalidSpec(
                "asset_references",
                f"queue {self.api.queue_id} has no job attachments settings"
                " (jobAttachmentSettings): its workers could not receive these files",
            )
        file_system = str(spec.options.get("job_attachments_file_system", self.file_system)).upper()
        if file_system not in _FILE_SYSTEMS:
            raise InvalidSpec("options.job_attachments_file_system", "must be COPIED or VIRTUAL")
        require = attachments_flag(
            spec.options.get("require_paths_exist"), "options.require_paths_exist", self.require_paths_exist
        )
        known = attachments_paths(spec.options.get("known_asset_paths"), "options.known_asset_paths")
        inputs, missing = await anyio.to_thread.run_sync(expand, refs, require)
        if missing:
            log.warning(
                "deadline: %d input path(s) do not exist and are not uploaded (kept as referenced"
                " paths, require_paths_exist=False): %s", len(missing), ", ".join(missing),
            )  # fmt: skip
            refs = attrs.evolve(refs, referenced=refs.referenced | frozenset(missing))
        self._warn_unknown(inputs, refs, (*known, *self.known_asset_paths))
        groups = group(inputs, refs, self.locations)
        if not groups:
            return None  # every input is missing or in a SHARED location: nothing to attach
        on_progress = transfer_progress.get()
        uploader = Uploader(
            self.api, await self._s3(), self.settings, self.cache, concurrency=self.concurrency
        )
        block, self.last_upload = await uploader.attach(
            self.api.farm_id, self.api.queue_id, groups, file_system, on_progress
        )
        return block

    def _warn_unknown(self, inputs: Sequence[str], refs: Any, known: Sequence[str]) -> None:
        """With a storage profile, paths outside its locations (and ``known``) are named
        in a warning, as the official client warns of them."""
        if not self.locations:
            return
        roots = [path for path, _ in self.locations.values()] + [os.path.abspath(k) for k in known]
        outside = sorted(
            p for p in (*inputs, *refs.output_dirs)
            if not any(p == r or p.startswith(r.rstrip("/") + "/") for r in roots)
        )  # fmt: skip
        if outside:
            shown = ", ".join(outside[:10]) + (f" and {len(outside) - 10} more" if len(outside) > 10 else "")
            log.warning(
                "deadline: %d path(s) are outside the storage profile's locations and"
                " known_asset_paths (uploaded as their own group): %s", len(outside), shown,
            )  # fmt: skip

    async def download(
        self,
        job_id: str,
        parts: tuple[str, ...],
        *,
        dest: str | None,
        map_path: Callable[[str], str],
        on_progress: Callable[[TransferProgress], object] | None,
    ) -> list[str]:
        settings = self._require("download_outputs")
        downloader = Downloader(self.api, await self._s3(), settings, concurrency=self.concurrency)
        return await downloader.download(
            self.api.farm_id, self.api.queue_id, job_id, parts, dest=dest, map_path=map_path,
            locations={name: path for name, (path, _) in self.locations.items()},
            on_progress=on_progress,
        )  # fmt: skip


def attachments_flag(value: Any, field: str, default: bool) -> bool:
    """A yes/no option given as a bool or as URL text."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InvalidSpec(field, f"must be true or false, got {value!r}")


def attachments_paths(value: Any, field: str) -> tuple[str, ...]:
    """Paths given as a list, or as one text separated like PATH (os.pathsep)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(p for p in value.split(os.pathsep) if p)
    if isinstance(value, (list, tuple)) and all(isinstance(p, str) for p in value):
        return tuple(value)
    raise InvalidSpec(field, "must be a list of paths")
