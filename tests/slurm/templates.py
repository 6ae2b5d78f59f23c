"""An OpenJD template whose step runs in sessions on Slurm, for the session tests."""

from __future__ import annotations

from typing import Any


def session_template(marker: str, frames: int, run: str) -> dict[str, Any]:
    """Frames ``1..frames`` (``{{Task.Param.F}}``), each running ``sh -c run``, under an
    environment that appends ``enter`` and ``exit`` to ``marker`` and sets ENTERED=yes."""
    return {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "sessions",
        "jobEnvironments": [{
            "name": "Env",
            "script": {"actions": {
                "onEnter": {"command": "sh", "args": ["-c", f"echo enter >> {marker}; echo 'openjd_env: ENTERED=yes'"]},
                "onExit": {"command": "sh", "args": ["-c", f"echo exit >> {marker}"]},
            }},
        }],
        "steps": [{
            "name": "S",
            "parameterSpace": {"taskParameterDefinitions": [{"name": "F", "type": "INT", "range": f"1-{frames}"}]},
            "script": {"actions": {"onRun": {"command": "sh", "args": ["-c", run]}}},
        }],
    }
