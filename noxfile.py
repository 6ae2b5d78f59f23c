"""nox sessions: tests, lint, typecheck, bench. `nox -s tests -- -m "not slurm"`."""

from __future__ import annotations

import glob

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "aiofarm", "tests", "benchmarks")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Every figure in benchmarks/, each printing its side-by-side table."""
    session.install("-e", ".[test]")
    for script in sorted(glob.glob("benchmarks/p*.py")):
        session.run("python", script)
