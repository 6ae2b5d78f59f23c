"""Slurm's client commands on this host (``scontrol``, ``srun``, ``sattach``):
what slurmrestd cannot do (requeue, node states, exec, attach).

Every command runs through :mod:`aiofarm.drivers.childproc`, with this host's
Slurm configuration (never our own ``SLURM_*`` variables, which would confuse the
commands when aiofarm runs inside a job), and, when we are root, as the user
whose permissions Slurm should apply: the one place that decides it
(:meth:`SlurmCommands.identity`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

from ...errors import BackendError, UnsupportedError
from ..childproc import ChildChannel, describe_exit

__all__ = ["SlurmCommands"]

DRIVER = "slurm"
#: scontrol's answer for a job it does not know
INVALID_JOB_ID = "Invalid job id"


class CommandFailed(Exception):
    """A Slurm command exited non-zero (internal: the caller decides what it means)."""

    def __init__(self, argv: Sequence[str], code: int, message: str) -> None:
        self.argv = list(argv)
        self.code = code
        self.message = message
        super().__init__(f"{' '.join(argv[:2])}: {message}")


class SlurmCommands:
    def __init__(self, bin_dir: str | None, user: str, *, grace: float) -> None:
        #: where the commands are (None: PATH), e.g. a site's Slurm module
        self.bin_dir = bin_dir
        #: the driver's own user (the JWT's)
        self.user = user
        self.grace = grace

    def which(self, name: str, feature: str) -> str:
        path = shutil.which(name, path=self.bin_dir) if self.bin_dir else shutil.which(name)
        if path is None:
            where = self.bin_dir or "PATH"
            raise UnsupportedError(DRIVER, feature, f"it needs `{name}`, which is not in {where} on this host")
        return path

    def identity(self, owner: str | None, feature: str) -> tuple[dict[str, str], str | None]:
        """(environment, user to run as): as root, a job's steps are created and its
        state changed as the Slurm user it belongs to (root cannot add a step to
        another user's job); otherwise as ourselves."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        if os.geteuid() != 0 or not owner or owner == "root":
            return env, None
        import pwd

        try:
            pw = pwd.getpwnam(owner)
        except KeyError:
            raise UnsupportedError(DRIVER, feature, f"Slurm user {owner!r} is not a user on this host") from None
        env.update(HOME=pw.pw_dir, USER=owner, LOGNAME=owner)
        return env, owner

    def channel(
        self,
        argv: Sequence[str],
        *,
        owner: str | None,
        feature: str,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        size: tuple[int, int] | None = None,
    ) -> ChildChannel:
        """``argv`` (its first word a Slurm command) with its stdio as the channel."""
        path = self.which(argv[0], feature)
        env, user = self.identity(owner, feature)
        try:
            # raw pty: srun --pty gives the remote end the terminal that interprets keys
            return ChildChannel.start(
                [path, *argv[1:]], cwd="/", env=env, tty=tty, stdin=stdin, stdout=stdout,
                stderr=stderr, size=size, raw=tty, user=user, grace=self.grace,
            )
        except OSError as exc:
            raise BackendError(DRIVER, exc.errno, f"cannot run {argv[0]}: {exc.strerror or exc}") from None

    async def run(self, argv: Sequence[str], *, owner: str | None, feature: str) -> str:
        """Run to the end; its output. CommandFailed on a non-zero exit."""
        channel = self.channel(
            argv, owner=owner, feature=feature, tty=False, stdin=False, stdout=True, stderr=True
        )
        out: list[bytes] = []
        try:
            while (msg := await channel.receive()) is not None:
                out.append(msg.data)
            code = await channel.wait()
        finally:
            await channel.aclose()
        text = b"".join(out).decode(errors="replace").strip()
        if code != 0:
            raise CommandFailed(argv, code or -1, text or describe_exit(code or -1))
        return text
