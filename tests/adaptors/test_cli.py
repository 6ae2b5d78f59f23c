"""The command line against openjd-adaptor-runtime 0.9.x, byte for byte where a program
reads it: the same adaptor class (the official example) driven by both entry points."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .helpers import OFFICIAL, cli

SHIM = "aiofarm.adaptors"
CLASS = "tests.adaptors.official_repl.adaptor:OfficialReplAdaptor"


def both(tmp_path: Path, *args: str, **extra: str) -> tuple[object, object]:
    """(official, aiofarm) results of the same command, each with its own $HOME."""
    (tmp_path / "o").mkdir(exist_ok=True)
    (tmp_path / "a").mkdir(exist_ok=True)
    official = cli(OFFICIAL, *args, home=tmp_path / "o", **extra)
    ours = cli(SHIM, CLASS, *args, home=tmp_path / "a", **extra)
    return official, ours


def payload(text: str) -> str:
    """Output without the official runtime's start-up log lines."""
    return "\n".join(
        line for line in text.splitlines() if not line.startswith(("INFO: ", "WARNING: "))
    )


def test_version_info_is_the_same_yaml(tmp_path: Path) -> None:
    official, ours = both(tmp_path, "version-info")
    assert official.returncode == ours.returncode == 0  # type: ignore[attr-defined]
    assert payload(official.stdout) == payload(ours.stdout)  # type: ignore[attr-defined]
    assert "OpenJD Adaptor CLI Version: '0.1'" in ours.stdout  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("cli_version", "data_version", "code"),
    [("0.1", "0.1", 0), ("0.2", "0.1", 2), ("0.1", "1.0", 2), ("x", "0.1", 2)],
)
def test_is_compatible_same_text_and_status(
    tmp_path: Path, cli_version: str, data_version: str, code: int
) -> None:
    official, ours = both(
        tmp_path,
        "is-compatible",
        "--openjd-adaptor-cli-version",
        cli_version,
        "--integration-data-interface-version",
        data_version,
    )
    assert official.returncode == ours.returncode == code  # type: ignore[attr-defined]
    assert payload(official.stdout) == payload(ours.stdout)  # type: ignore[attr-defined]
    assert official.stderr == ours.stderr  # type: ignore[attr-defined]


def test_show_config_layers_without_writing_files(tmp_path: Path) -> None:
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"log_level": "DEBUG", "deactivate_telemetry": True}))
    official, ours = both(tmp_path, "show-config", RUNTIME_CONFIG_PATH=str(extra))
    assert official.returncode == ours.returncode == 0  # type: ignore[attr-defined]
    assert payload(official.stdout) == payload(ours.stdout)  # type: ignore[attr-defined]
    assert "log_level: DEBUG" in ours.stdout  # type: ignore[attr-defined]
    # the official runtime creates an empty user configuration; aiofarm writes nothing
    assert (tmp_path / "o" / ".openjd").exists()
    assert not (tmp_path / "a" / ".openjd").exists()


def test_user_layer_overrides_default(tmp_path: Path) -> None:
    user = tmp_path / "a" / ".openjd" / "adaptors" / "runtime"
    user.mkdir(parents=True)
    (user / "configuration.json").write_text('{"log_level": "WARNING"}')
    ours = cli(SHIM, CLASS, "show-config", home=tmp_path / "a")
    assert "log_level: WARNING" in ours.stdout


def test_data_that_is_not_a_mapping_is_a_usage_error(tmp_path: Path) -> None:
    official, ours = both(tmp_path, "run", "--init-data", "[1]")
    assert official.returncode == ours.returncode == 2  # type: ignore[attr-defined]
    assert "invalid _load_data value: '[1]'" in ours.stderr  # type: ignore[attr-defined]


def test_missing_connection_file_fails_with_status_1(tmp_path: Path) -> None:
    official, ours = both(tmp_path, "daemon", "run", "--connection-file", str(tmp_path / "nope.json"))
    assert official.returncode == ours.returncode == 1  # type: ignore[attr-defined]
    assert "Traceback" not in ours.stderr  # type: ignore[attr-defined]
    assert "nope.json" in ours.stderr  # type: ignore[attr-defined]


def test_run_reads_yaml_file_and_stdin_data(tmp_path: Path) -> None:
    home = tmp_path / "a"
    home.mkdir()
    run_data = tmp_path / "run.yaml"
    run_data.write_text("frame: 7\nsteps: 2\n")
    done = cli(
        "examples.adaptors.repl_adaptor",
        "run",
        "--init-data",
        "-",
        "--run-data",
        f"file://{run_data}",
        home=home,
        input="{}",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "openjd_progress: 100.0" in lines and "openjd_status: frame 7 done" in lines


def test_run_failure_exits_1_with_the_official_message(tmp_path: Path) -> None:
    official, ours = both(tmp_path, "run", "--run-data", '{"fail": "no license"}')
    assert official.returncode == ours.returncode == 1  # type: ignore[attr-defined]
    line = "openjd_fail: Error encountered while running adaptor: no license"
    assert line in official.stdout.splitlines()  # type: ignore[attr-defined]
    assert line in ours.stdout.splitlines()  # type: ignore[attr-defined]


def test_adaptor_config_layers(tmp_path: Path) -> None:
    from aiofarm.adaptors.config import adaptor_config

    module_dir = tmp_path / "mod"
    module_dir.mkdir()
    (module_dir / "Thing.json").write_text('{"log_level": "INFO", "a": 1, "b": 1}')
    home = tmp_path / "home"
    user = home / ".openjd" / "adaptors" / "Thing"
    user.mkdir(parents=True)
    (user / "Thing.json").write_text('{"b": 2, "c": 2}')
    extra = tmp_path / "extra.json"
    extra.write_text('{"c": 3}')
    old = dict(os.environ)
    try:
        os.environ["HOME"] = str(home)
        os.environ["THING_CONFIG_PATH"] = str(extra)
        config = adaptor_config("Thing", str(module_dir))
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert config == {"log_level": "INFO", "a": 1, "b": 2, "c": 3}


def test_path_mapping_rules_map_like_the_official_runtime(tmp_path: Path) -> None:
    rules = {
        "version": "pathmapping-1.0",
        "path_mapping_rules": [
            {"source_path_format": "WINDOWS", "source_path": "Z:\\proj", "destination_path": "/mnt/proj"},
            {"source_path_format": "POSIX", "source_path": "/old/root", "destination_path": "/new"},
        ],
    }
    (tmp_path / "rules.json").write_text(json.dumps(rules))
    for scene in ("Z:\\proj\\shots\\a.blend", "/old/root/b.blend", "/elsewhere/c.blend"):
        official, ours = both(
            tmp_path,
            "run",
            "--path-mapping-rules",
            f"file://{tmp_path / 'rules.json'}",
            "--run-data",
            json.dumps({"frame": 1, "scene": scene}),
        )
        # and aiofarm's own adaptor, mapping with aiofarm.pathmap
        native = cli(
            "examples.adaptors.repl_adaptor",
            "run",
            "--path-mapping-rules",
            f"file://{tmp_path / 'rules.json'}",
            "--run-data",
            json.dumps({"frame": 1, "scene": scene}),
            home=tmp_path / "a",
        )
        assert official.returncode == ours.returncode == native.returncode == 0  # type: ignore[attr-defined]
        mapped = [
            [line.split("scene: ", 1)[1] for line in r.stdout.splitlines() if "scene: " in line]  # type: ignore[attr-defined]
            for r in (official, ours, native)
        ]
        assert mapped[0] == mapped[1] == mapped[2] and len(mapped[0]) == 1, mapped


@pytest.mark.parametrize(
    "argv",
    [
        ["daemon", "run", "--run-data", '{"frame": 3}', "--connection-file", "c.json"],
        ["daemon", "run", "--connection-file=c.json", "--run-data={}"],
        ["daemon", "run", "--run-data", "frame: 3"],  # YAML
        ["daemon", "run"],
        ["daemon", "stop", "--connection-file", "c.json"],
        ["daemon", "stop"],
    ],
)
def test_per_task_commands_parse_as_the_parser_does(argv: list[str]) -> None:
    from aiofarm.adaptors.cli import EntryPoint, _per_task_args

    quick = _per_task_args(argv)
    assert quick is not None
    full = EntryPoint(object, name="X").build_parser().parse_args(argv)
    assert vars(quick) == vars(full)


@pytest.mark.parametrize(
    "argv",
    [
        ["daemon", "run", "--help"],
        ["daemon", "run", "--conn", "c.json"],  # an abbreviation: the parser's to accept
        ["daemon", "run", "--run-data"],  # no value: the parser's error
        ["daemon", "run", "--run-data", "[1, 2]"],  # not a mapping: the parser's error
        ["daemon", "stop", "--run-data", "{}"],
        ["daemon", "start", "--connection-file", "c.json"],
        ["run", "--run-data", "{}"],
    ],
)
def test_anything_else_goes_to_the_parser(argv: list[str]) -> None:
    from aiofarm.adaptors.cli import _per_task_args

    assert _per_task_args(argv) is None
