"""The fake worker's job attachments and format strings (execute mode).

Input files are downloaded and output files uploaded by the official ``deadline``
package's own worker-side code (``AssetSync.sync_inputs`` / ``sync_outputs``, as the
Deadline Cloud worker agent calls them), so a job's whole round trip here proves the
layout: inputs aiofarm uploaded are found by the official download code, and outputs
the official code wrote are what ``download_outputs`` has to read.

A task's command may use ``{{Param.X}}``, ``{{RawParam.X}}``, ``{{Task.Param.X}}``,
``{{Task.RawParam.X}}`` and ``{{Session.WorkingDirectory}}``; PATH values are mapped by
the session's path mapping rules (job attachment roots to the session directory), as an
Open Job Description runtime does.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["message", "resolvable", "resolve", "sync_inputs", "sync_outputs"]

# what a worker agent's runtime acts on in an action's output (Open Job Description)
_MESSAGE = re.compile(r"^openjd_(progress|status|fail|env|unset_env): (.*)$")

_FORMAT = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")
_NAME = re.compile(r"^(Param|RawParam|Task\.Param|Task\.RawParam)\.[A-Za-z_][A-Za-z0-9_]*$")


def resolvable(command: Sequence[str]) -> bool:
    return all(
        name == "Session.WorkingDirectory" or _NAME.match(name)
        for part in command
        for name in _FORMAT.findall(part)
    )


def _map(value: str, rules: Sequence[Mapping[str, str]]) -> str:
    best = None
    for rule in rules:
        source = rule["source_path"].rstrip("/")
        if (value == source or value.startswith(source + "/")) and (
            best is None or len(source) > len(best["source_path"].rstrip("/"))
        ):
            best = rule
    if best is None:
        return value
    return best["destination_path"] + value[len(best["source_path"].rstrip("/")) :]


def resolve(
    command: Sequence[str],
    job_params: Mapping[str, Mapping[str, str]],
    task_params: Mapping[str, Mapping[str, str]],
    session_dir: str,
    rules: Sequence[Mapping[str, str]],
) -> list[str]:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "Session.WorkingDirectory":
            return session_dir
        scope, _, param = name.rpartition(".")
        table = task_params if scope.startswith("Task.") else job_params
        (kind, value), *_ = table[param].items()
        if kind == "path" and not scope.endswith("RawParam"):
            return _map(value, rules)
        return value

    return [_FORMAT.sub(one, part) for part in command]


def _sync(farm_id: str) -> Any:
    import boto3
    from deadline.job_attachments.asset_sync import AssetSync

    session = boto3.Session(
        aws_access_key_id="fake", aws_secret_access_key="fake", region_name="us-west-2"
    )
    return AssetSync(farm_id, boto3_session=session)


def _models(settings: Mapping[str, str], attachments: Mapping[str, Any]) -> tuple[Any, Any]:
    from deadline.job_attachments.models import (
        Attachments,
        JobAttachmentS3Settings,
        ManifestProperties,
    )

    return (
        JobAttachmentS3Settings(settings["s3BucketName"], settings["rootPrefix"]),
        Attachments(
            manifests=[ManifestProperties.from_dict(dict(m)) for m in attachments["manifests"]],
            fileSystem=attachments.get("fileSystem", "COPIED"),
        ),
    )


def sync_inputs(
    settings: Mapping[str, str], attachments: Mapping[str, Any], farm_id: str, queue_id: str,
    job_id: str, session_dir: str,
) -> list[dict[str, str]]:  # fmt: skip
    """Download the job's inputs into the session directory (blocking); the path mapping
    rules from each root to where it landed."""
    s3, att = _models(settings, attachments)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        _, rules = _sync(farm_id).sync_inputs(s3, att, queue_id, job_id, Path(session_dir))
    # the worker agent makes the output directories before the task runs
    roots = {r["source_path"]: r["destination_path"] for r in rules}
    for manifest in attachments["manifests"]:
        root = roots.get(manifest["rootPath"])
        for rel in manifest.get("outputRelativeDirectories") or () if root else ():
            Path(root, rel).mkdir(parents=True, exist_ok=True)
    return [dict(r) for r in rules]


def sync_outputs(
    settings: Mapping[str, str], attachments: Mapping[str, Any], farm_id: str, queue_id: str,
    job_id: str, step_id: str, task_id: str, action_id: str, started: float, session_dir: str,
) -> None:  # fmt: skip
    """Upload what the task wrote into its output directories (blocking)."""
    s3, att = _models(settings, attachments)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        _sync(farm_id).sync_outputs(
            s3, att, queue_id, job_id, step_id, task_id, action_id, started, Path(session_dir)
        )


def message(line: str) -> tuple[str, str] | None:
    """(kind, payload) of an ``openjd_*`` line of action output, else None. An env
    payload may be JSON-quoted (``openjd_env: "A=b c"``), as openjd-sessions reads it."""
    m = _MESSAGE.match(line.rstrip("\r"))
    if m is None:
        return None
    kind, payload = m.group(1), m.group(2)
    if kind == "env" and payload.startswith('"'):
        import json

        try:
            payload = str(json.loads(payload))
        except ValueError:
            return None
    return kind, payload
