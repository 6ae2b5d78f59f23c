"""Job attachments against the fake and moto's S3: a bundle's input tree goes up (hashed,
deduplicated, skipped when already stored), the fake's worker fetches it and uploads
what the task wrote with the official ``deadline`` package's own worker-side code, and
``download_outputs`` brings the outputs back; the official client's uploads and
downloads read aiofarm's layout and the other way round."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

import aiofarm
from aiofarm import TransferProgress
from aiofarm.drivers.deadline.attachments.manifest import Manifest
from aiofarm.errors import InvalidSpec, UnsupportedError
from tests.deadline.helpers import path_parameter, run_to_success, shell_template
from tests.fakes.deadline.process import FakeDeadlineProcess, fake_env

pytestmark = pytest.mark.anyio

MiB = 1 << 20

# reads every input (a checksum of each file, by path) and copies the big one out
SCRIPT = 'cd "$1" && find . -type f -exec md5sum {} + | LC_ALL=C sort -k2 > "$2/listing.txt" && mkdir -p "$2/deep/er" && cp big.bin "$2/deep/er/big-copy.bin"'
TEMPLATE = shell_template(
    "attachments round trip", [path_parameter("Scene", "IN"), path_parameter("Out", "OUT")], SCRIPT
)


def _tree(root: Path, files: int, big: int) -> dict[str, bytes]:
    """``files`` small files in nested directories, some with unicode names, and one big
    one; every content distinct."""
    made: dict[str, bytes] = {}
    names = ["plain", "été", "ñandú 🎬", "日本語", "with space"]
    for i in range(files - 1):
        rel = f"{names[i % len(names)]}/level{i % 3}/{names[(i // 5) % len(names)]}-{i}.dat"
        made[rel] = f"file {i} ".encode() * (1 + i % 50)
    made["big.bin"] = os.urandom(big)
    for rel, data in made.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return made


def _bundle(at: Path, references: dict[str, Any] | None = None) -> Path:
    at.mkdir(parents=True)
    (at / "template.json").write_text(json.dumps(TEMPLATE))
    if references is not None:
        (at / "asset_references.json").write_text(json.dumps({"assetReferences": references}))
    return at


async def test_round_trip_with_a_200_file_tree(
    fake: FakeDeadlineProcess, url: str, home: Path
) -> None:
    fake.admin("config", {"execute": True})
    scene, out = home / "proj" / "scene", home / "proj" / "out"
    made = _tree(scene, 200, 50 * MiB)
    out.mkdir()
    bundle = _bundle(home / "bundle")
    events: list[TransferProgress] = []
    params = {"Scene": str(scene), "Out": str(out)}
    async with aiofarm.Client(url) as farm:
        job = await farm.jobs.submit_bundle(bundle, parameters=params, on_progress=events.append)
        first = farm.driver.attachments.last_upload  # type: ignore[attr-defined]
        assert (first.files, first.bytes, first.skipped_files) == (200, sum(map(len, made.values())), 0)
        assert first.hashed_files == 200 and first.manifests == 1
        phases = [e.phase for e in events]
        assert phases[0] == "hashing" and phases[-1] == "uploading"
        last = events[-1]
        assert (last.files_done, last.bytes_done) == (200, first.bytes) and last.fraction == 1.0
        (manifest,) = job.raw["attachments"]["manifests"]
        assert manifest["rootPath"] == str(home / "proj")
        assert manifest["outputRelativeDirectories"] == ["out"]
        await run_to_success(farm, fake, job.id)

        got: list[TransferProgress] = []
        dest = home / "downloaded"
        written = await farm.jobs.download_outputs(job.id, dest=dest, on_progress=got.append)
        assert sorted(p.relative_to(dest).as_posix() for p in written) == [
            "out/deep/er/big-copy.bin", "out/listing.txt",
        ]  # fmt: skip
        assert (dest / "out/deep/er/big-copy.bin").read_bytes() == made["big.bin"]
        listing = (dest / "out/listing.txt").read_text().splitlines()
        expected = sorted(
            (f"{hashlib.md5(data).hexdigest()}  ./{rel}" for rel, data in made.items()),
            key=lambda line: line.split("  ", 1)[1].encode(),
        )
        assert listing == expected  # every input reached the task intact
        assert got[-1].files_done == 2 and got[-1].files_skipped == 0
        # again: everything is there already, nothing is fetched
        again: list[TransferProgress] = []
        await farm.jobs.download_outputs(job.id, step="Render", dest=dest, on_progress=again.append)
        assert again[-1].files_skipped == 2
        # without dest: where the outputs were, through the client's path mapping rules
        farm.path_mapping.add("posix", str(home / "proj"), str(home / "mapped"))
        await farm.jobs.download_outputs(job.id)
        assert (home / "mapped/out/listing.txt").read_text().splitlines() == listing

        # an unchanged re-submit reads nothing and uploads nothing
        events.clear()
        again_job = await farm.jobs.submit_bundle(bundle, parameters=params, on_progress=events.append)
        second = farm.driver.attachments.last_upload  # type: ignore[attr-defined]
        assert (second.files, second.bytes, second.hashed_files, second.manifests) == (0, 0, 0, 0)
        assert second.skipped_files == 200
        assert again_job.raw["attachments"] == job.raw["attachments"]



def _official_submit(fake: FakeDeadlineProcess, bundle: Path, params: dict[str, str]) -> str:
    from deadline.client import api
    from deadline.client.config import config_file

    config = config_file.read_config()
    config_file.set_setting("defaults.farm_id", fake.farm_id, config=config)
    config_file.set_setting("defaults.queue_id", fake.queue_id, config=config)
    job_id = api.create_job_from_job_bundle(
        str(bundle),
        job_parameters=[{"name": k, "value": v} for k, v in params.items()],
        config=config,
        print_function_callback=lambda _: None,
        require_paths_exist=True,
    )
    assert job_id is not None
    return str(job_id)


def _official_read(fake: FakeDeadlineProcess, manifest_key: str, into: Path) -> list[str]:
    """The official download code fetches a manifest aiofarm wrote, and its files."""
    import boto3
    from deadline.job_attachments.download import (
        download_files_from_manifests,
        get_manifest_from_s3,
    )

    assert fake.attachments is not None
    session = boto3.Session(region_name="us-west-2")
    manifest = get_manifest_from_s3(manifest_key, fake.attachments["s3BucketName"], session)
    download_files_from_manifests(
        s3_bucket=fake.attachments["s3BucketName"],
        manifests_by_root={str(into): manifest},
        cas_prefix=f"{fake.attachments['rootPrefix']}/Data",
        session=session,
    )
    return sorted(p.path for p in manifest.paths)


async def test_interop_with_the_official_client(
    fake: FakeDeadlineProcess, url: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in fake_env(fake, str(home)).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DEADLINE_CONFIG_FILE_PATH", str(home / "deadline-config"))
    monkeypatch.setenv("DEADLINE_CLOUD_TELEMETRY_OPT_OUT", "true")
    scene, out = home / "proj" / "scene", home / "proj" / "out"
    made = _tree(scene, 40, 1 * MiB)
    out.mkdir()
    bundle = _bundle(home / "bundle")
    params = {"Scene": str(scene), "Out": str(out)}
    # the official client uploads first: aiofarm finds every file stored already
    official = await anyio.to_thread.run_sync(_official_submit, fake, bundle, params)
    async with aiofarm.Client(url) as farm:
        theirs = (await farm.jobs.get(official)).raw["attachments"]
        job = await farm.jobs.submit_bundle(bundle, parameters=params)
        summary = farm.driver.attachments.last_upload  # type: ignore[attr-defined]
    assert (summary.files, summary.bytes, summary.skipped_files) == (0, 0, 40)
    ours = job.raw["attachments"]
    # same files, same manifest: byte for byte (its hash), under the same root
    (t,), (o,) = theirs["manifests"], ours["manifests"]
    assert (o["rootPath"], o["inputManifestHash"], o["outputRelativeDirectories"]) == (
        t["rootPath"], t["inputManifestHash"], t["outputRelativeDirectories"],
    )  # fmt: skip
    assert ours["fileSystem"] == theirs["fileSystem"] == "COPIED"
    # and the official download code reads what aiofarm wrote
    assert fake.attachments is not None
    key = f"{fake.attachments['rootPrefix']}/Manifests/{o['inputManifestPath']}"
    into = home / "official-download"
    paths = await anyio.to_thread.run_sync(_official_read, fake, key, into)
    assert paths == sorted(f"scene/{rel}" for rel in made)
    for rel, data in made.items():
        assert (into / "scene" / rel).read_bytes() == data


async def test_manifest_encoding_matches_the_official_one(home: Path) -> None:
    from deadline.job_attachments.asset_manifests.decode import decode_manifest

    from aiofarm.drivers.deadline.attachments.manifest import ManifestPath

    ours = Manifest(
        (
            ManifestPath("b/ñ 🎬.txt", "0" * 32, 3, 1_700_000_000_000_001),
            ManifestPath("a.txt", "1" * 32, 5, 1_700_000_000_000_002),
            ManifestPath("B.txt", "2" * 32, 0, 1),
        )
    ).encode()
    assert decode_manifest(ours.decode()).encode().encode() == ours
    assert Manifest.decode(ours).total_size == 8
    for bad in ("../escape", "/abs/path", "C:\\\\windows", "a/../../b", ""):
        data = json.dumps({"hashAlg": "xxh128", "manifestVersion": "2023-03-03", "totalSize": 1,
                           "paths": [{"path": bad, "hash": "0", "size": 1, "mtime": 1}]})  # fmt: skip
        with pytest.raises(InvalidSpec):
            Manifest.decode(data.encode())


async def test_what_cannot_be_attached_is_refused(
    fake: FakeDeadlineProcess, url: str, home: Path
) -> None:
    bundle = _bundle(home / "bundle")
    async with aiofarm.Client(url) as farm:
        with pytest.raises(InvalidSpec) as missing:
            await farm.jobs.submit_bundle(
                bundle, parameters={"Scene": str(home / "nope"), "Out": str(home)}
            )
        assert missing.value.field == "asset_references.inputs.directories"
        assert fake.stats().get("CreateJob", 0) == 0
        # a queue without job attachments settings can neither take inputs nor give outputs
        api = farm.driver.api  # type: ignore[attr-defined]
        other = fake.admin("farm", {"displayName": "no attachments"})
    other_url = url.replace(fake.farm_id, other["farmId"]).replace(fake.queue_id, other["queueId"])
    (home / "scene").mkdir()
    async with aiofarm.Client(other_url) as farm:
        with pytest.raises(InvalidSpec) as no_settings:
            await farm.jobs.submit_bundle(
                bundle, parameters={"Scene": str(home / "scene"), "Out": str(home)}
            )
        assert "jobAttachmentSettings" in str(no_settings.value)
        job = await farm.jobs.start(command=["true"])
        with pytest.raises(UnsupportedError) as no_outputs:
            await farm.jobs.download_outputs(job.id)
        assert no_outputs.value.feature == "download_outputs"
    assert api is not None
    async with aiofarm.Client("dummy://") as farm:
        with pytest.raises(UnsupportedError):
            await farm.jobs.download_outputs("dummy-1")
