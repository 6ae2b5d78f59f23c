"""Optional OpenTelemetry spans, checked with the SDK's in-memory exporter in a child
interpreter (a tracer provider can be set once per process): names
``aiofarm.<subsystem>.<verb>``, counts as attributes, never an env value or a
command; nothing at all while no provider is configured."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk")

SECRET = "s3cr3t-env-value"

SCRIPT = textwrap.dedent(
    f"""
    import json, sys
    import anyio
    configure = sys.argv[1] == "configured"
    if configure:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    import aiofarm
    from aiofarm import tracing

    async def main():
        async with aiofarm.Client(sys.argv[2]) as farm:
            job = await farm.jobs.start(["echo", "COMMAND-TEXT"], env={{"API_TOKEN": "{SECRET}"}}, name="traced")
            await farm.jobs.wait(job.id, timeout=60)
            async with farm.logs.stream(job.id, follow=False) as lines:
                out = [line.text async for line in lines]
            try:
                await farm.jobs.get("no-such-job")
            except aiofarm.JobNotFound:
                pass
        return out

    out = anyio.run(main)
    spans = []
    if configure:
        for s in exporter.get_finished_spans():
            spans.append({{"name": s.name, "attributes": dict(s.attributes or {{}}),
                          "status": s.status.status_code.name, "description": s.status.description}})
    print(json.dumps({{"enabled": tracing.enabled(), "out": out, "spans": spans,
                      "sdk_loaded": "opentelemetry.sdk" in sys.modules}}))
    """
)


def _run(tmp_path: Path, mode: str) -> dict[str, object]:
    url = f"local://{tmp_path}/state?embedded=true"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode, url], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_spans_when_a_provider_is_configured(tmp_path: Path) -> None:
    got = _run(tmp_path, "configured")
    assert got["enabled"] is True
    assert got["out"] == ["COMMAND-TEXT"]
    spans = got["spans"]
    assert isinstance(spans, list)
    names = {s["name"] for s in spans}
    assert {"aiofarm.jobs.submit", "aiofarm.jobs.wait", "aiofarm.logs.stream", "aiofarm.driver.submit",
            "aiofarm.driver.get_jobs", "aiofarm.driver.read_log"} <= names, names
    for s in spans:
        assert s["name"].count(".") == 2 and s["name"].startswith("aiofarm."), s["name"]
        attrs = s["attributes"]
        assert attrs["aiofarm.driver"] == "local"
        assert set(attrs) <= {"aiofarm.driver", "aiofarm.job_count", "aiofarm.request_count"}
        text = json.dumps(s)
        assert SECRET not in text and "COMMAND-TEXT" not in text and "echo" not in text
    submit = next(s for s in spans if s["name"] == "aiofarm.jobs.submit")
    assert submit["attributes"]["aiofarm.job_count"] == 1
    calls = [s for s in spans if s["name"].startswith("aiofarm.driver.")]
    assert all(s["attributes"]["aiofarm.request_count"] == 1 for s in calls)


def test_no_spans_and_no_sdk_without_a_provider(tmp_path: Path) -> None:
    got = _run(tmp_path, "plain")
    assert got["enabled"] is False
    assert got["sdk_loaded"] is False
    assert got["out"] == ["COMMAND-TEXT"]
