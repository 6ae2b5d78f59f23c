"""Job attachments upload: aiofarm vs the official ``deadline`` client, in the same run,
against the same fake Deadline Cloud and moto's S3 server.

A tree of ``--files`` files (``--megabytes`` MB in all, random contents, so nothing is
deduplicated) is submitted as a job bundle's input directory:

* the official client: ``create_job_from_job_bundle`` (hashing with its cache, HEAD and
  upload with its thread pools, CreateJob), into the default queue's root prefix;
* aiofarm: ``jobs.submit_bundle`` (hashing in threads, HEAD and upload with aiobotocore,
  CreateJob), into a second queue of the same bucket with another root prefix,

each starting with empty caches. Both stores are then listed: the same objects (by
content hash) with the same bytes must be there. Then each submits the unchanged tree
again: what it uploads and how long it takes.

    .venv/bin/python benchmarks/p_attachments.py --files 1000 --megabytes 500 [--s3 fast|moto]

S3 is served by ``tests/fakes/s3`` (``--s3 fast``, the default: a process of its own, every
request and response checked against botocore's S3 model, bodies kept as they came) or by
moto (``--s3 moto``, in the fake's process), whose own speed (~30 MB/s on two cores)
otherwise sets the pace for both clients. Neither client SHA-256-signs its payloads
(``payload_signing_enabled = false`` in the AWS config file both read, as botocore does
over HTTPS by itself): the fake endpoint is plain HTTP, where botocore would otherwise
hash every byte for the signature, which no real (HTTPS) upload does.

Besides the wall times, the CPU seconds each client spent (this process, all threads)
and the S3 server spent are printed: the machine is shared, so wall times move with its
load, CPU seconds much less.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiofarm
from tests.fakes.deadline.process import FakeDeadlineProcess, fake_env, patched_environ

TEMPLATE = """{"specificationVersion": "jobtemplate-2023-09", "name": "p_attachments",
 "parameterDefinitions": [{"name": "Scene", "type": "PATH", "objectType": "DIRECTORY",
                           "dataFlow": "IN"}],
 "steps": [{"name": "s", "script": {"actions": {"onRun": {"command": "true"}}}}]}"""


def make_tree(root: Path, files: int, total: int) -> int:
    """``files`` files of random bytes, ``total`` bytes in all, in 10 directories."""
    size, extra = divmod(total, files)
    written = 0
    for i in range(files):
        path = root / f"dir{i % 10}" / f"file{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        n = size + (1 if i < extra else 0)
        path.write_bytes(os.urandom(n))
        written += n
    return written


def server_cpu(fake: FakeDeadlineProcess) -> float:
    """CPU seconds the S3 server's process has used (the fake's, with moto in it)."""
    proc = fake.s3_proc or fake.proc
    assert proc is not None
    with open(f"/proc/{proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(fake: FakeDeadlineProcess, fn: Any, *args: Any) -> tuple[float, float, float, Any]:
    """(wall s, this process's CPU s, the S3 server's CPU s, fn's result)."""
    server, cpu, start = server_cpu(fake), time.process_time(), time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, time.process_time() - cpu, server_cpu(fake) - server, result


def official_submit(fake: FakeDeadlineProcess, bundle: Path, scene: Path) -> tuple[float, Any]:
    from deadline.client import api
    from deadline.client.config import config_file

    config = config_file.read_config()
    config_file.set_setting("defaults.farm_id", fake.farm_id, config=config)
    config_file.set_setting("defaults.queue_id", fake.queue_id, config=config)
    printed: list[str] = []
    start = time.perf_counter()
    api.create_job_from_job_bundle(
        str(bundle),
        job_parameters=[{"name": "Scene", "value": str(scene)}],
        config=config,
        print_function_callback=printed.append,
    )
    took = time.perf_counter() - start
    # its "Upload Summary:" says "Processed N files totaling X." (uploaded) first
    summary = next((p for p in printed if p.strip().startswith("Processed")), "")
    return took, summary.strip().splitlines()[0] if summary else "no upload summary"


def stored(fake: FakeDeadlineProcess, prefix: str) -> dict[str, int]:
    """key (relative to Data/) -> size of what is stored under ``prefix``/Data/."""
    import boto3

    assert fake.attachments is not None
    s3 = boto3.client("s3", endpoint_url=fake.s3_endpoint, region_name="us-west-2")
    out: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=fake.attachments["s3BucketName"], Prefix=f"{prefix}/Data/"
    ):
        for item in page.get("Contents", []):
            out[item["Key"].rsplit("/", 1)[1]] = int(item["Size"])
    return out


async def aiofarm_submit(url: str, bundle: Path, scene: Path) -> tuple[float, Any]:
    async with aiofarm.Client(url) as farm:
        start = time.perf_counter()
        await farm.jobs.submit_bundle(bundle, parameters={"Scene": str(scene)})
        took = time.perf_counter() - start
        return took, farm.driver.attachments.last_upload  # type: ignore[attr-defined]


async def second_queue(fake: FakeDeadlineProcess, url: str, prefix: str) -> str:
    """A queue of the same farm whose attachments go under another root prefix."""
    assert fake.attachments is not None
    async with aiofarm.Client(url) as farm:
        resp = await farm.driver.api.call(  # type: ignore[attr-defined]
            "create_queue", farmId=fake.farm_id, displayName="aiofarm bench",
            jobAttachmentSettings={"s3BucketName": fake.attachments["s3BucketName"],
                                   "rootPrefix": prefix},
        )  # fmt: skip
    return str(resp["queueId"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--megabytes", type=int, default=500)
    parser.add_argument("--s3", choices=("fast", "moto"), default="fast")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeDeadlineProcess(moto=True, s3=args.s3) as fake:
        home = Path(tmp)
        scene = home / "scene"
        total = make_tree(scene, args.files, args.megabytes * 1_000_000)
        bundle = home / "bundle"
        bundle.mkdir()
        (bundle / "template.json").write_text(TEMPLATE)
        env = {
            **fake_env(fake, str(home)),
            "HOME": str(home / "home"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "DEADLINE_CONFIG_FILE_PATH": str(home / "deadline-config"),
            "DEADLINE_CLOUD_TELEMETRY_OPT_OUT": "true",
        }
        assert fake.attachments is not None
        (home / "aws-config").write_text("[default]\ns3 =\n    payload_signing_enabled = false\n")
        with patched_environ(env):
            queue = anyio.run(second_queue, fake, fake.url(), "AiofarmBench")
            url = fake.url().replace(fake.queue_id, queue)
            _, c_official, s_official, (t_official, _) = measured(fake, official_submit, fake, bundle, scene)
            _, c_ours, s_ours, (t_ours, first) = measured(fake, anyio.run, aiofarm_submit, url, bundle, scene)
            theirs = stored(fake, fake.attachments["rootPrefix"])
            ours = stored(fake, "AiofarmBench")
            t_official2, again_stats = official_submit(fake, bundle, scene)
            t_ours2, again = anyio.run(aiofarm_submit, url, bundle, scene)
        same = theirs == ours
        rows = [
            ("files / bytes in the tree", f"{args.files} / {total:,}", f"{args.files} / {total:,}"),
            ("first submit (hash + upload + CreateJob)", f"{t_ours:.2f} s", f"{t_official:.2f} s"),
            ("  throughput", f"{total / t_ours / 1e6:.0f} MB/s", f"{total / t_official / 1e6:.0f} MB/s"),
            ("  client CPU (all threads)", f"{c_ours:.2f} s", f"{c_official:.2f} s"),
            ("  S3 server CPU", f"{s_ours:.2f} s", f"{s_official:.2f} s"),
            ("  objects / bytes stored under Data/", f"{len(ours)} / {sum(ours.values()):,}",
             f"{len(theirs)} / {sum(theirs.values()):,}"),
            ("unchanged re-submit", f"{t_ours2:.2f} s", f"{t_official2:.2f} s"),
            ("  files / bytes uploaded", f"{again.files} / {again.bytes}", again_stats),
        ]  # fmt: skip
        width = max(len(r[0]) for r in rows)
        print(f"{'':{width}}  {'aiofarm':>24}  {'official':>40}")
        for label, a, b in rows:
            print(f"{label:{width}}  {a:>24}  {b:>40}")
        print(f"speed-up of the first submit: {t_official / t_ours:.1f}x; "
              f"same objects and bytes stored: {'yes' if same else 'NO'}")  # fmt: skip
        print(f"aiofarm first submit: {first}")
        print(f"S3 server: {args.s3}")


if __name__ == "__main__":
    main()
