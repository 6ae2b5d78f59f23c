"""The job attachments manifest (version 2023-03-03) and the S3 layout, as Deadline
Cloud's own client and worker write and read them.

A manifest lists files relative to one root: ``{"hashAlg": "xxh128", "manifestVersion":
"2023-03-03", "paths": [{"hash", "mtime", "path", "size"}], "totalSize"}``, encoded as
canonical JSON (RFC 8785 as the reference implements it: keys sorted, no whitespace,
ASCII only, paths sorted by their UTF-16 code units), mtime in microseconds. File
contents live once per content hash under ``<rootPrefix>/Data/<xxh128>.xxh128``;
manifests under ``<rootPrefix>/Manifests/``: a job's inputs at
``<farm>/<queue>/Inputs/<id>/<xxh128(root)>_input``, what a task produced at
``<farm>/<queue>/<job>/<step>/<task>/<time>_<session action>/<xxh128(root)>_output``
(the root path in the object's ``asset-root`` or ``asset-root-json`` metadata).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import PureWindowsPath
from typing import Any

import attrs

from ....errors import InvalidSpec

__all__ = [
    "HASH_ALG",
    "VERSION",
    "Manifest",
    "ManifestPath",
    "Settings",
    "hash_bytes",
    "hash_file",
    "is_inside",
    "new_hasher",
    "output_manifest_keys",
]

HASH_ALG = "xxh128"
VERSION = "2023-03-03"
_READ = 1 << 20


def new_hasher() -> Any:
    from xxhash import xxh3_128

    return xxh3_128()


def hash_bytes(data: bytes) -> str:
    hasher = new_hasher()
    hasher.update(data)
    return str(hasher.hexdigest())


def hash_file(path: str) -> str:
    """xxh128 of a file's contents (run in a worker thread: xxhash releases the GIL)."""
    hasher = new_hasher()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(_READ)
        view = memoryview(buf)
        while n := f.readinto(buf):
            hasher.update(view[:n])
    return str(hasher.hexdigest())


@attrs.frozen
class ManifestPath:
    path: str  # relative to the manifest's root, "/" separated
    hash: str
    size: int
    mtime: int  # microseconds since the epoch


def is_inside(path: str) -> bool:
    """Whether a manifest path stays under its root wherever it is joined to it."""
    if not path or "\x00" in path or PureWindowsPath(path).anchor or path.startswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in path.replace("\\", "/").split("/"))


def _utf16(path: str) -> bytes:
    return path.encode("utf-16_be", errors="surrogatepass")


@attrs.frozen
class Manifest:
    paths: tuple[ManifestPath, ...]

    @property
    def total_size(self) -> int:
        return sum(p.size for p in self.paths)

    def encode(self) -> bytes:
        paths = sorted(self.paths, key=lambda p: _utf16(p.path))
        doc = {
            "hashAlg": HASH_ALG,
            "manifestVersion": VERSION,
            "paths": [
                {"hash": p.hash, "mtime": p.mtime, "path": p.path, "size": p.size} for p in paths
            ],
            "totalSize": self.total_size,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()

    @classmethod
    def decode(cls, data: bytes, where: str = "manifest") -> Manifest:
        """A manifest as read from S3; anything else is ``InvalidSpec`` naming ``where``,
        as is a path that would leave its root (absolute, or with ``..``)."""
        try:
            doc = json.loads(data)
            if doc.get("manifestVersion") != VERSION or doc.get("hashAlg") != HASH_ALG:
                raise ValueError(
                    f"version {doc.get('manifestVersion')!r} / hash {doc.get('hashAlg')!r}"
                    f" (this client reads {VERSION} / {HASH_ALG})"
                )
            paths = tuple(
                ManifestPath(str(p["path"]), str(p["hash"]), int(p["size"]), int(p["mtime"]))
                for p in doc["paths"]
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidSpec(where, f"not a job attachments manifest: {exc}") from None
        for p in paths:
            if not is_inside(p.path):
                raise InvalidSpec(where, f"path {p.path!r} leaves the manifest's root")
        return cls(paths)


@attrs.frozen
class Settings:
    """A queue's ``jobAttachmentSettings`` and the keys under them."""

    bucket: str
    root_prefix: str

    @classmethod
    def of_queue(cls, queue: Mapping[str, Any]) -> Settings | None:
        found = queue.get("jobAttachmentSettings")
        if not found:
            return None
        return cls(str(found["s3BucketName"]), str(found["rootPrefix"]).strip("/"))

    def data_key(self, file_hash: str) -> str:
        return f"{self.root_prefix}/Data/{file_hash}.{HASH_ALG}"

    def manifest_key(self, partial: str) -> str:
        return f"{self.root_prefix}/Manifests/{partial}"

    @staticmethod
    def input_manifest_partial(farm: str, queue: str, root: str, manifest: bytes) -> str:
        """Where a job's input manifest goes, relative to ``Manifests/``. The official
        client names the folder with a random id; aiofarm uses the manifest's own hash,
        so submitting the same files again writes nothing new (any key is valid: the
        job's ``inputManifestPath`` names it)."""
        return f"{farm}/{queue}/Inputs/{hash_bytes(manifest)}/{hash_bytes(root.encode())}_input"

    def output_prefix(self, farm: str, queue: str, job: str, *parts: str) -> str:
        return "/".join([self.root_prefix, "Manifests", farm, queue, job, *parts]) + "/"


def output_manifest_keys(keys: Sequence[str]) -> list[str]:
    """The output manifests to read among the keys listed under a job's prefix: every
    manifest of a step without tasks folders, and for each task only its latest session
    action's (folders named ``<time>_<session action>`` sort by time), as the official
    ``deadline job download-output`` chooses them."""
    chosen: list[str] = []
    by_task: dict[str, list[str]] = {}
    for key in keys:
        parts = key.split("/")
        if not any(p.startswith("step-") for p in parts) or "output" not in parts[-1]:
            continue
        task = next((i for i, p in enumerate(parts) if p.startswith("task-")), None)
        if task is None:
            chosen.append(key)
        else:
            by_task.setdefault("/".join(parts[: task + 1]), []).append(key)
    for folder, found in sorted(by_task.items()):
        depth = len(folder.split("/"))
        latest = max(k.split("/")[depth] for k in found)
        chosen.extend(k for k in found if k.split("/")[depth] == latest)
    return chosen
