"""The Python in the README and in the documentation runs, as written.

- README's taste runs twice in a row, as a script, on a fresh ``local://`` farm of its
  own (``$XDG_DATA_HOME``), and prints what it promises.
- Each page of :data:`PAGES` has its ````python`` blocks run in order in one namespace
  (a later block uses what an earlier one made), with ``farm`` an open client of the
  page's back end(s) (again after a block closed the one it had): ``local://`` (a farm service on a temporary state dir) and/or
  ``dummy://`` (jobs "run" by the contract suite's simulated scheduler). ``Client()``
  in a block reaches the same farm (``AIOFARM_URL``). Top-level ``await`` works, as in
  a notebook; a block that calls ``anyio.run`` runs as a script of its own.
- ````py`` blocks are shown, not run: code of another system (the "coming from"
  pages), another back end's URL, or a signature listing. Pages not in :data:`PAGES`
  (the per-back-end pages, openjd.md, adaptors.md) are written for back ends or
  processes these tests do not start.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

#: page -> the back ends its blocks run against
PAGES: dict[str, tuple[str, ...]] = {
    "quickstart.md": ("local",),
    "jobs.md": ("local",),
    "waiting.md": ("local",),
    "logs.md": ("local",),
    "filters.md": ("local", "dummy"),
    "labels.md": ("local", "dummy"),
    "pools.md": ("local",),
    "functions.md": ("local",),
    "notebooks.md": ("local",),
    "coming-from/deadline.md": ("local",),
    "coming-from/ray.md": ("local",),
    "coming-from/apolo.md": ("local",),
    "coming-from/smedge.md": ("local",),
    "coming-from/descartes-labs.md": ("local",),
}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)


def blocks(text: str, language: str = "python") -> list[tuple[int, str]]:
    """(line number, code) of each fenced block whose info string is ``language``."""
    out = []
    for m in _FENCE.finditer(text):
        if m.group("info").strip().split(" ")[0] != language:
            continue
        indent = len(m.group("indent"))
        body = "".join(line[indent:] for line in m.group("body").splitlines(keepends=True))
        out.append((text.count("\n", 0, m.start("body")) + 1, body))
    return out


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOFARM_")}
    env.update(extra)
    return env


def _stop(state: str) -> None:
    from aiofarm.drivers.local.connect import stop_service

    stop_service(state, cancel_jobs=True)


def test_every_page_with_python_is_either_run_or_explained() -> None:
    """A new page with ```python blocks is run here (or its blocks become ```py)."""
    runnable = {
        str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if blocks(p.read_text())
    }
    not_run = {"openjd.md", "adaptors.md", "ray.md", "slurm.md", "deadline.md"}
    assert runnable - set(PAGES) - not_run == set()
    assert set(PAGES) <= runnable


def test_readme_taste_runs_twice_in_a_row(tmp_path: Path) -> None:
    ((_, taste),) = blocks((ROOT / "README.md").read_text())
    env = _env(XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    try:
        outputs = []
        for _ in range(2):
            proc = subprocess.run(
                [sys.executable, "-c", taste], env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path
            )
            assert proc.returncode == 0, proc.stderr
            outputs.append(proc.stdout)
    finally:
        _stop(str(tmp_path / "data" / "aiofarm"))
    for out in outputs:
        assert "succeeded hi" in out, out
        listed = [line for line in out.splitlines() if line.startswith("render-")]
        assert len(listed) == 1 and listed[0].endswith(" succeeded"), out  # the filtered listing prints its job
    assert outputs[0] != outputs[1]  # each run made jobs of its own


@asynccontextmanager
async def _farm(backend: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    from aiofarm import Client

    if backend == "dummy":
        from tests.backends.dummy import open_client

        monkeypatch.setenv("AIOFARM_URL", "dummy://")
        async with open_client() as farm:
            yield farm
        return
    with tempfile.TemporaryDirectory(prefix="aiofarm-docs-") as state:
        monkeypatch.setenv("AIOFARM_URL", f"local://{state}")
        try:
            async with Client() as farm:
                yield farm
        finally:
            _stop(state)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("page", "backend"), [(page, b) for page, backends in PAGES.items() for b in backends]
)
async def test_page_snippets_run(page: str, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # pages name files from the repository root
    found = blocks((DOCS / page).read_text())
    assert found, f"{page} has no python block"
    async with _farm(backend, monkeypatch) as farm:
        namespace: dict[str, Any] = {"__name__": "__main__", "farm": farm}
        for line, code in found:
            where = f"{page}:{line}"
            if getattr(namespace.get("farm"), "_driver", None) is None:
                # a block's own `async with Client() as farm` (or `aclose()`) closed it
                namespace["farm"] = farm
            if "anyio.run(" in code:
                proc = await anyio.run_process(
                    [sys.executable, "-c", code], env=os.environ.copy(), check=False
                )
                assert proc.returncode == 0, f"{where}\n{proc.stderr.decode()}"
                continue
            compiled = compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            with anyio.fail_after(150):
                try:
                    result = eval(compiled, namespace)
                    if inspect.iscoroutine(result):
                        await result
                except Exception as exc:
                    raise AssertionError(f"{where}: {type(exc).__name__}: {exc}") from exc
