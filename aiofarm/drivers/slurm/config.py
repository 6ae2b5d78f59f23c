"""The Slurm driver's URL and options: ``slurm+http://host:6820?partition=debug``.

See docs/slurm.md for every option.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ...errors import InvalidSpec
from ..base import option_seconds, option_text, url_options

if TYPE_CHECKING:
    import yarl

__all__ = ["OPTIONS", "SlurmConfig", "parse_url", "read_token"]

OPTIONS = (
    "partition", "user", "token", "token_file", "log_dir", "timeout", "exec_grace", "api", "bin_dir",
    "min_job_age",
)
_API = re.compile(r"v\d+\.\d+\.\d+")


@attrs.frozen
class SlurmConfig:
    base_url: str
    unix_path: str | None
    user: str
    token: str | None = attrs.field(repr=False)
    token_file: str | None
    partition: str | None
    log_dir: str
    timeout: float
    exec_grace: float
    #: the API version the URL asks for (None: the newest both sides speak)
    api: str | None
    #: where Slurm's client commands are (None: PATH)
    bin_dir: str | None
    #: seconds slurmctld keeps finished jobs (its MinJobAge): history older than
    #: that needs accounting
    min_job_age: float


def read_token(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        token = f.read().strip()
    # accept the output of `scontrol token` as is
    return token.removeprefix("SLURM_JWT=")


def parse_url(url: yarl.URL, options: Mapping[str, Any]) -> SlurmConfig:
    if url.scheme not in ("slurm+http", "slurm+unix"):
        raise InvalidSpec("url", f"the slurm driver takes slurm+http:// or slurm+unix:// URLs, not {url.scheme}://")
    merged = url_options(url, options, OPTIONS, "slurm URLs")
    if url.fragment or url.password:
        raise InvalidSpec("url", "slurm URLs take no password or fragment (pass token= instead)")
    unix_path: str | None = None
    if url.scheme == "slurm+unix":
        if url.host not in (None, "", "localhost"):
            raise InvalidSpec("url", "slurm+unix URLs take an absolute socket path: slurm+unix:///path.sock")
        if not url.path or url.path == "/":
            raise InvalidSpec("url", "slurm+unix:// needs the socket path, e.g. slurm+unix:///run/slurmrestd.sock")
        unix_path = url.path
        base_url = "http://localhost"
    else:
        if not url.host:
            raise InvalidSpec("url", "slurm+http:// needs a host, e.g. slurm+http://127.0.0.1:6820")
        base_url = f"http://{url.host}:{url.port or 6820}"
        if url.path not in ("", "/"):
            base_url += url.path.rstrip("/")


    user = option_text(merged, "user") or url.user or os.environ.get("SLURM_USER") or getpass.getuser()
    token = option_text(merged, "token")
    token_file = option_text(merged, "token_file")
    if token is not None and token_file is not None:
        raise InvalidSpec("options.token_file", "give token or token_file, not both")
    if token_file is not None:
        try:
            token = read_token(token_file)
        except OSError as exc:
            raise InvalidSpec("options.token_file", f"cannot read {token_file}: {exc.strerror}") from None
    if token is None:
        token = os.environ.get("SLURM_JWT") or None
    # one directory per cluster: job ids of different clusters collide
    where = re.sub(r"[^A-Za-z0-9._-]+", "_", unix_path.strip("/") if unix_path else f"{url.host}-{url.port or 6820}")
    log_dir = option_text(merged, "log_dir") or f"/tmp/aiofarm-slurm/{where}"
    if not os.path.isabs(log_dir):
        raise InvalidSpec("options.log_dir", "must be an absolute path (on the shared filesystem)")
    api = option_text(merged, "api")
    if api is not None and not _API.fullmatch(api):
        raise InvalidSpec("options.api", f"must be a slurmrestd API version like v0.0.41, got {api!r}")
    bin_dir = option_text(merged, "bin_dir")
    if bin_dir is not None and not os.path.isabs(bin_dir):
        raise InvalidSpec("options.bin_dir", "must be an absolute path")
    return SlurmConfig(
        base_url=base_url,
        unix_path=unix_path,
        user=user,
        token=token,
        token_file=token_file,
        partition=option_text(merged, "partition"),
        log_dir=log_dir,
        timeout=option_seconds(merged, "timeout", 30.0),
        exec_grace=option_seconds(merged, "exec_grace", 2.0),
        api=api,
        bin_dir=bin_dir,
        min_job_age=option_seconds(merged, "min_job_age", 300.0),
    )
