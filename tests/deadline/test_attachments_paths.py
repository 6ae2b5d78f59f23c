"""Job attachments end to end where paths and transfers get special: files grouped by
the client's storage profile (LOCAL location, SHARED location, elsewhere), the VIRTUAL
file system mode, and a multipart upload interrupted half way and resumed."""

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
from aiofarm.drivers.deadline.attachments.upload import PART_SIZE
from tests.deadline.helpers import (
    add_storage_profile,
    path_parameter,
    run_to_success,
    shell_template,
)
from tests.fakes.deadline.process import FakeDeadlineProcess

pytestmark = pytest.mark.anyio

MiB = 1 << 20

SCRIPT = 'cat "$1/a.txt" "$2/lib.txt" "$3" > "$4/result.txt"'
TEMPLATE = shell_template(
    "grouped",
    [path_parameter("Scene", "IN"), path_parameter("Lib", "IN"), path_parameter("Extra", "IN", "FILE"),
     path_parameter("Out", "OUT")],
    SCRIPT,
)  # fmt: skip


def _files(home: Path) -> dict[str, str]:
    (home / "proj/scene").mkdir(parents=True)
    (home / "proj/out").mkdir()
    (home / "shared/lib").mkdir(parents=True)
    (home / "elsewhere").mkdir()
    (home / "proj/scene/a.txt").write_text("scene\n")
    (home / "shared/lib/lib.txt").write_text("library\n")
    (home / "elsewhere/extra.txt").write_text("extra\n")
    bundle = home / "bundle"
    bundle.mkdir()
    (bundle / "template.json").write_text(json.dumps(TEMPLATE))
    return {
        "Scene": str(home / "proj/scene"),
        "Lib": str(home / "shared/lib"),
        "Extra": str(home / "elsewhere/extra.txt"),
        "Out": str(home / "proj/out"),
    }


async def test_storage_profile_groups_end_to_end(
    fake: FakeDeadlineProcess, url: str, home: Path
) -> None:
    fake.admin("config", {"execute": True})
    params = _files(home)
    profile = await add_storage_profile(
        url, fake, "workstation",
        [
            {"name": "Projects", "path": str(home / "proj"), "type": "LOCAL"},
            {"name": "Library", "path": str(home / "shared"), "type": "SHARED"},
        ],
    )  # fmt: skip
    async with aiofarm.Client(f"{url}&storage_profile={profile}") as farm:
        job = await farm.jobs.submit_bundle(home / "bundle", parameters=params)
        upload = farm.driver.attachments.last_upload  # type: ignore[attr-defined]
        # the SHARED location's file is not uploaded: workers see it where it is
        assert (upload.files + upload.skipped_files, upload.manifests) == (2, 2)
        assert job.raw["storageProfileId"] == profile
        manifests = sorted(job.raw["attachments"]["manifests"], key=lambda m: m["rootPath"])
        assert [(m["rootPath"], m.get("fileSystemLocationName")) for m in manifests] == [
            (str(home / "elsewhere"), None),
            (str(home / "proj"), "Projects"),  # rooted at the LOCAL location, named
        ]
        assert manifests[1]["outputRelativeDirectories"] == ["out"]
        assert "outputRelativeDirectories" not in manifests[0]
        await run_to_success(farm, fake, job.id)
        result = home / "proj/out/result.txt"
        assert not result.exists()  # the task wrote into its session directory
        # without dest: the output of the "Projects" group goes to that location
        written = await farm.jobs.download_outputs(job.id)
        assert [Path(p) for p in written] == [result]
        assert result.read_text() == "scene\nlibrary\nextra\n"


async def test_virtual_file_system(fake: FakeDeadlineProcess, url: str, home: Path) -> None:
    """VIRTUAL tells the workers to mount the inputs (the official worker code falls back
    to copying them where no VFS is installed, as here); what is uploaded is the same."""
    import attrs

    from aiofarm.openjd.loading import load_bundle

    fake.admin("config", {"execute": True})
    params = _files(home)
    async with aiofarm.Client(f"{url}&job_attachments_file_system=virtual") as farm:
        job = await farm.jobs.submit_bundle(home / "bundle", parameters=params)
        assert job.raw["attachments"]["fileSystem"] == "VIRTUAL"
        await run_to_success(farm, fake, job.id)
        written = await farm.jobs.download_outputs(job.id, dest=home / "got")
        assert [await anyio.Path(p).read_text() for p in written] == ["scene\nlibrary\nextra\n"]
        # a submission's own choice wins over the client's
        spec = load_bundle(home / "bundle", parameters=params)
        spec = attrs.evolve(spec, options={**spec.options, "job_attachments_file_system": "COPIED"})
        (copied,) = await farm.jobs.submit([spec])
        assert copied.raw["attachments"]["fileSystem"] == "COPIED"
        bad = attrs.evolve(spec, options={**spec.options, "job_attachments_file_system": "FUSE"})
        with pytest.raises(aiofarm.InvalidSpec) as err:
            await farm.jobs.submit([bad])
        assert err.value.field == "options.job_attachments_file_system"


def _s3(fake: FakeDeadlineProcess) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=fake.s3_endpoint, region_name="us-west-2")


async def test_multipart_upload_resumes_after_an_interruption(
    fake: FakeDeadlineProcess, url: str, home: Path
) -> None:
    scene = home / "scene"
    scene.mkdir()
    data = os.urandom(6 * PART_SIZE + 12345)  # 7 parts
    (scene / "big.bin").write_bytes(data)
    template = shell_template("big", [path_parameter("Scene", "IN")], "true")
    bundle = home / "bundle"
    bundle.mkdir()
    (bundle / "template.json").write_text(json.dumps(template))
    assert fake.attachments is not None
    bucket = fake.attachments["s3BucketName"]
    # two S3 requests at a time: parts go up two by two, so an interruption after the
    # second leaves some parts stored and some not
    async with aiofarm.Client(f"{url}&concurrency=2") as farm:
        with anyio.CancelScope() as scope:

            def interrupt(report: TransferProgress) -> None:
                if report.phase == "uploading" and report.bytes_done >= 2 * PART_SIZE:
                    scope.cancel()

            await farm.jobs.submit_bundle(bundle, parameters={"Scene": str(scene)}, on_progress=interrupt)
        assert scope.cancelled_caught
        assert fake.stats().get("CreateJob", 0) == 0
        pending = (await anyio.to_thread.run_sync(lambda: _s3(fake).list_multipart_uploads(Bucket=bucket))).get("Uploads", [])
        assert len(pending) == 1
        # submitted again: the parts S3 holds are checked against the file, not sent again
        job = await farm.jobs.submit_bundle(bundle, parameters={"Scene": str(scene)})
        upload = farm.driver.attachments.last_upload  # type: ignore[attr-defined]
    assert upload.files == 1 and upload.bytes == len(data)
    assert 2 * PART_SIZE <= upload.resumed_bytes < len(data)
    key = pending[0]["Key"]

    def stored() -> tuple[bytes, list[Any]]:
        s3 = _s3(fake)
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body, s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])

    body, left = await anyio.to_thread.run_sync(stored)
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert left == []  # the resumed upload was completed, none is left open
    assert job.raw["attachments"]["manifests"][0]["rootPath"] == str(scene)


async def test_missing_inputs_and_unknown_paths(
    fake: FakeDeadlineProcess, url: str, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``require_paths_exist=False`` (the official client's default) keeps a missing
    input as a referenced path; with a storage profile, inputs outside its locations
    are named in a warning unless they are under ``known_asset_paths``."""
    import logging

    params = _files(home)
    params["Extra"] = str(home / "elsewhere/gone.txt")
    profile = await add_storage_profile(
        url, fake, "workstation", [{"name": "Projects", "path": str(home / "proj"), "type": "LOCAL"}]
    )
    base = f"{url}&storage_profile={profile}"
    async with aiofarm.Client(base) as farm:
        with pytest.raises(aiofarm.InvalidSpec) as err:
            await farm.jobs.submit_bundle(home / "bundle", parameters=params)
        assert err.value.field == "asset_references.inputs.filenames"
    caplog.set_level(logging.WARNING, logger="aiofarm.deadline")
    async with aiofarm.Client(f"{base}&require_paths_exist=false") as farm:
        job = await farm.jobs.submit_bundle(home / "bundle", parameters=params)
        upload = farm.driver.attachments.last_upload  # type: ignore[attr-defined]
    # scene/a.txt and shared/lib/lib.txt (stored by an earlier test, maybe); gone.txt is not
    assert upload.files + upload.skipped_files == 2
    assert any("gone.txt" in r.getMessage() and "do not exist" in r.getMessage() for r in caplog.records)
    unknown = [r.getMessage() for r in caplog.records if "outside the storage profile" in r.getMessage()]
    assert len(unknown) == 1 and str(home / "shared/lib/lib.txt") in unknown[0]
    assert "a.txt" not in unknown[0]  # inside the LOCAL location
    assert job.raw["attachments"]["manifests"]
    caplog.clear()
    known = f"{base}&require_paths_exist=false&known_asset_paths={home / 'shared'}"
    async with aiofarm.Client(known) as farm:
        await farm.jobs.submit_bundle(home / "bundle", parameters=params)
    assert not [r for r in caplog.records if "outside the storage profile" in r.getMessage()]
