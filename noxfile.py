"""nox sessions: tests, lint, typecheck, bench, reliability. `nox -s tests -- -m "not slurm"`."""

from __future__ import annotations

import glob

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    _install(session)
    session.run("python", "-m", "pytest", *session.posargs)


def _install(session: nox.Session) -> None:
    # `nox --no-venv -s ...` runs in the current environment (e.g. the project's .venv),
    # which already has the package: nothing to install there
    if session.venv_backend != "none":
        session.install("-e", ".[test]")


@nox.session
def reliability(session: nox.Session) -> None:
    """tests/reliability at full length: 2,000 hypothesis examples per property, the
    fault proxy's 1,000 waits per back end, the 60 s load run, 300 Deadline log resets,
    200 Slurm jobs (docs/reliability.md). Cluster parts: `-- -m slurm` under
    `flock -o /work/.slurm.lock`, `-- -m ray` under `flock -o /work/.ray.lock`."""
    _install(session)
    session.env["AIOFARM_RELIABILITY_FULL"] = "1"
    session.run("python", "-m", "pytest", "-m", "reliability", "tests/reliability", "-s", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "aiofarm", "tests", "benchmarks")


@nox.session
def typecheck(session: nox.Session) -> None:
    _install(session)
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Every figure in benchmarks/, each printing its side-by-side table."""
    _install(session)
    for script in sorted(glob.glob("benchmarks/p*.py")):
        session.run("python", script)
