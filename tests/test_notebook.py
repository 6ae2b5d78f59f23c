"""docs/examples/quickstart.ipynb runs headless on a real IPython kernel (nbclient), as a
user's notebook would: top-level await, a client opened in one cell and closed in
another, aiofarm's results rendered to HTML and the progress displays shown.

Also the HTML of each display on its own (escaping, tables, what is never shown)."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from aiofarm import (
    CompletionResult,
    Job,
    JobList,
    JobStatus,
    LogLine,
    LogPage,
    Pool,
    Task,
    TaskList,
)

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "examples" / "quickstart.ipynb"


def _html(cell: Any) -> list[str]:
    return [o["data"]["text/html"] for o in cell.outputs if "text/html" in o.get("data", {})]


def test_quickstart_notebook_runs_on_a_real_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from aiofarm.drivers.local.connect import stop_service

    nb = nbformat.read(NOTEBOOK, as_version=4)
    with tempfile.TemporaryDirectory(prefix="aiofarm-nb-") as state:
        monkeypatch.setenv("AIOFARM_URL", f"local://{state}")
        try:
            client = nbclient.NotebookClient(
                nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": state}}
            )
            client.execute()
        finally:
            stop_service(state, cancel_jobs=True)
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.get("output_type") == "error"]
    assert not errors, errors
    by_source = {c.source.splitlines()[0]: c for c in code}

    (job_card,) = _html(by_source['job = await farm.jobs.start([sys.executable, "-c", "print(\'hello from the farm\')"], name="hello", labels={"demo": "notebook"})'])
    assert "hello" in job_card and "aiofarm-status" in job_card and "demo=notebook" in job_card

    wait_cell = by_source["result = await farm.jobs.wait(job.id, progress=True)"]
    progress, result = _html(wait_cell)
    assert "aiofarm-progress" in progress and "succeeded" in progress  # updated in place to the end
    assert "aiofarm-succeeded" in result

    batch = by_source[next(s for s in by_source if s.startswith("jobs = await farm.jobs.submit("))]
    bar, table = _html(batch)
    assert "<progress" in bar and "3/3" in bar
    assert table.count("<tr>") == 1 + 3 and "frame 2" in table
    (listed,) = _html(by_source["async with farm.jobs.list(where=where.labels[\"demo\"] == \"notebook\") as found:"])
    assert "<b>4</b> jobs" in listed
    (tasks,) = _html(by_source["await farm.jobs.tasks(job.id)"])
    assert "<table" in tasks and "succeeded" in tasks
    (log,) = _html(by_source["await farm.logs.page(job.id)"])
    assert "hello from the farm" in log and "aiofarm-log" in log
    (pools,) = _html(by_source["await farm.pools.list()"])
    assert "default" in pools
    assert by_source["await farm.aclose()"].outputs == []


def test_html_is_escaped_and_keeps_secrets_out() -> None:
    now = datetime.now(timezone.utc)
    job = Job(
        id="j<1>", status=JobStatus.FAILED, driver="dummy", name="<script>alert(1)</script>",
        labels={"team": "fx"}, exit_code=3, created_at=now, raw={"token": "s3cret"},
    )  # fmt: skip
    html = job._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html and "s3cret" not in html
    task = Task(id="t1", job_id=job.id, status=JobStatus.FAILED, attempts=2, exit_code=3, reason="boom & bust")
    result = CompletionResult(job, JobStatus.FAILED, (task,), timedelta(seconds=1.5))
    html = result._repr_html_()
    assert "1.5 s" in html and "boom &amp; bust" in html and "aiofarm-failed" in html
    assert TaskList([task])._repr_html_().count("<tr>") == 2
    many = JobList([job] * 250)._repr_html_()
    assert "<b>250</b> jobs" in many and "and 50 more jobs" in many and many.count("<tr>") == 201
    page = LogPage((LogLine(now, "stderr", "a < b", job_id="j1"), LogLine(None, "stdout", "ok")), None)
    html = page._repr_html_()
    assert "a &lt; b" in html and "j1" in html and "color:#dc3545" in html
    assert "gpu" in Pool(id="1", name="gpu", slots=2)._repr_html_()


def test_progress_is_text_outside_a_notebook(capsys: pytest.CaptureFixture[str]) -> None:
    from aiofarm.progress import count_display, status_display

    assert status_display("j1", None) is None  # None: only in a notebook
    show = status_display("j1", True)
    assert show is not None
    show(Job(id="j1", status=JobStatus.RUNNING, driver="dummy"))
    show(Job(id="j1", status=JobStatus.SUCCEEDED, driver="dummy", exit_code=0))
    counter = count_display(2, "finished", True)
    counter.add()
    counter.add(failed=1)
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == ["job j1: running", "job j1: succeeded (exit code 0)"]
    assert err[-1].endswith("finished: 2/2, 1 failed")
    silent = count_display(2, "finished", False)
    silent.add(2)
    assert capsys.readouterr().err == ""
