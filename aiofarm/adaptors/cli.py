"""The adaptor command line, compatible with openjd-adaptor-runtime 0.9.x:

    <Adaptor> run [--init-data D] [--run-data D] [--path-mapping-rules D]
    <Adaptor> daemon start [--init-data D] [--path-mapping-rules D] [--connection-file F]
    <Adaptor> daemon run [--run-data D] [--connection-file F]
    <Adaptor> daemon stop [--connection-file F]
    <Adaptor> show-config | version-info
    <Adaptor> is-compatible --openjd-adaptor-cli-version X.Y --integration-data-interface-version X.Y

``D`` is JSON or YAML inline, ``file://PATH``, or (aiofarm) ``-`` for stdin. Without
``--connection-file`` the daemon is found through ``OPENJD_ADAPTOR_SOCKET``, which
``daemon start`` announces with an ``openjd_env:`` line. aiofarm adds
``--startup-timeout`` and ``--idle-timeout`` to ``daemon start``. Exit status: 0 for
success or cancel, 1 for a failure, 2 for bad arguments.
"""

from __future__ import annotations

import json
import os
import sys

from . import protocol
from .config import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_STARTUP_TIMEOUT,
    IDLE_TIMEOUT_KEY,
    STARTUP_TIMEOUT_KEY,
    ConfigError,
    runtime_config,
    seconds,
)

TYPE_CHECKING = False  # not typing's: importing typing is paid per task (mypy reads it as true)
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from types import SimpleNamespace
    from typing import Any, NoReturn

    Namespace = argparse.Namespace | SimpleNamespace

_DATA_HELP = "JSON or YAML, inline, as file://PATH, or - to read it from stdin"


def _load_data(text: str) -> dict[str, Any]:
    # named as the official type function: argparse shows it in "invalid ... value"
    return protocol.load_data(text)


def _parser_class() -> type[argparse.ArgumentParser]:
    # argparse on first use: the per-task commands are parsed without it
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            self.print_usage(sys.stderr)
            self.exit(2, f"{self.prog}: error: {message}\n")

    return _Parser


class EntryPoint:
    """``EntryPoint(MyAdaptor).start()`` in the adaptor package's ``__main__``, as with
    the official runtime. ``MyAdaptor`` is an :class:`~aiofarm.adaptors.AsyncAdaptor`
    or an official ``Adaptor``/``CommandAdaptor`` subclass (run through the shim).

    Or ``EntryPoint(load, name="MyAdaptor")`` with ``load`` a function that imports and
    returns the class: ``daemon run`` and ``daemon stop`` (once per task) then never
    import the adaptor, nor the application libraries it imports.

    ``reentry`` is the command that starts this adaptor again (for ``daemon _serve``);
    by default ``python -m <the adaptor's package>`` (with a loader: the package being
    run as ``__main__``). ``serve_protocol="openjd"`` makes ``daemon start`` launch a
    backend that speaks only the official start-up (argv)."""

    def __init__(
        self,
        adaptor: type | Callable[[], type],
        *,
        name: str | None = None,
        reentry: Sequence[str] | None = None,
        serve_protocol: str = "aiofarm",
    ) -> None:
        if isinstance(adaptor, type):
            self._class: type | None = adaptor
            self._load: Callable[[], type] | None = None
            self.name = name or adaptor.__name__
        else:
            if not name:
                raise ValueError("EntryPoint(load, name=...) needs the adaptor's class name")
            self._class, self._load, self.name = None, adaptor, name
        self.reentry = list(reentry) if reentry is not None else None
        self.serve_protocol = serve_protocol

    @property
    def adaptor_class(self) -> type:
        if self._class is None:
            assert self._load is not None
            self._class = self._load()
        return self._class

    # -- parsing ----------------------------------------------------------------------
    def build_parser(self) -> argparse.ArgumentParser:
        _Parser = _parser_class()
        parser = _Parser(prog="adaptor_runtime", usage=f"{self.name} <command> [arguments]")
        commands = parser.add_subparsers(dest="command", title="commands", parser_class=_Parser)
        commands.add_parser("show-config", help="Print the runtime configuration and exit.")
        commands.add_parser("version-info", help="Print the CLI and data interface versions and exit.")
        compat = commands.add_parser(
            "is-compatible", help="Check the installed versions against the expected ones."
        )
        compat.add_argument("--openjd-adaptor-cli-version", metavar="<Major.Minor>", required=True)
        compat.add_argument(
            "--integration-data-interface-version", metavar="<Major.Minor>", required=True
        )

        def data(p: argparse.ArgumentParser, *names: str) -> None:
            for option in names:
                p.add_argument(option, default="", type=_load_data, help=_DATA_HELP)

        run = commands.add_parser("run", help="Run start, run, stop and cleanup in one go.")
        data(run, "--init-data", "--path-mapping-rules", "--run-data")

        daemon = commands.add_parser("daemon", help="Run the adaptor as a background daemon.")
        sub = daemon.add_subparsers(
            dest="subcommand", title="subcommands", required=True, metavar="{start,run,stop}",
            parser_class=_Parser,
        )  # fmt: skip
        serve = sub.add_parser("_serve")
        data(serve, "--init-data", "--path-mapping-rules")
        serve.add_argument("--connection-file")
        serve.add_argument("--bootstrap-log-file")
        serve.add_argument("--aiofarm-stdin", action="store_true")
        start = sub.add_parser("start")
        data(start, "--init-data", "--path-mapping-rules")
        start.add_argument("--connection-file")
        start.add_argument("--startup-timeout", type=float, metavar="SECONDS")
        start.add_argument("--idle-timeout", type=float, metavar="SECONDS")
        drun = sub.add_parser("run")
        data(drun, "--run-data")
        drun.add_argument("--connection-file")
        stop = sub.add_parser("stop")
        stop.add_argument("--connection-file")
        return parser

    # -- entry ------------------------------------------------------------------------
    def start(self, argv: Sequence[str] | None = None) -> NoReturn:
        sys.exit(self.main(argv))

    def main(self, argv: Sequence[str] | None = None) -> int:
        given = sys.argv[1:] if argv is None else list(argv)
        parser: argparse.ArgumentParser | None = None
        args: Namespace | None = _per_task_args(given)
        if args is None:
            parser = self.build_parser()
            args = parser.parse_args(given)
        if hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(encoding="utf-8")
        if args.command == "version-info":
            return self._version_info()
        if args.command == "is-compatible":
            assert parser is not None
            return self._is_compatible(parser, args)
        if not args.command:
            assert parser is not None
            parser.print_help()
            parser.error("No command was provided.")
        try:
            config = runtime_config()
        except ConfigError as exc:
            return _fail(str(exc))
        if args.command == "show-config":
            return self._show_config(config)
        from .frontend import FrontendError

        try:
            return self._dispatch(args, config)
        except (FrontendError, ConfigError, protocol.DataError, ValueError) as exc:
            return _fail(str(exc))

    def _dispatch(self, args: Namespace, config: dict[str, Any]) -> int:
        level = str(config.get("log_level", "INFO"))
        if args.command == "run":
            import anyio

            from .output import StdoutSink, route_logging
            from .standalone import run_all

            sink = StdoutSink()
            with route_logging(sink, level):
                return anyio.run(
                    run_all, self.adaptor_class, args.init_data, args.path_mapping_rules, args.run_data, sink
                )
        sub = args.subcommand
        if sub == "_serve":
            return self._serve(args, level)
        # the frontends: synchronous and standard library only (daemon run is per task)
        from . import frontend

        emit = frontend.stdout_line
        info = _info_lines(emit, level)
        if sub == "start":
            startup = args.startup_timeout or seconds(config, STARTUP_TIMEOUT_KEY, DEFAULT_STARTUP_TIMEOUT)
            idle = args.idle_timeout or seconds(config, IDLE_TIMEOUT_KEY, DEFAULT_IDLE_TIMEOUT)
            return frontend.daemon_start(
                self._reentry(),
                args.connection_file,
                args.init_data,
                args.path_mapping_rules,
                official_backend=self.serve_protocol == "openjd",
                startup_timeout=startup,
                idle_timeout=idle,
                emit=emit,
                info=info,
            )
        if sub == "run":
            return frontend.daemon_run(args.connection_file, args.run_data, emit, info)
        return frontend.daemon_stop(args.connection_file, emit, info)

    def _serve(self, args: Namespace, level: str) -> int:
        import anyio

        from .standalone import serve_daemon

        if not args.connection_file:
            return _fail("--connection-file is required for the '_serve' command but was not provided.")
        if args.bootstrap_log_file:
            _bootstrap_log(args.bootstrap_log_file)
        init_data, path_mapping = args.init_data, args.path_mapping_rules
        idle = DEFAULT_IDLE_TIMEOUT
        if args.aiofarm_stdin:
            raw = sys.stdin.read()
            if not raw.strip():  # the frontend died before handing over the data
                return _fail("no start-up data on stdin (the starting frontend is gone)")
            payload = json.loads(raw)
            init_data = payload.get("init_data") or {}
            path_mapping = payload.get("path_mapping_rules") or {}
            idle = float(payload.get("idle_timeout") or DEFAULT_IDLE_TIMEOUT)
        else:
            idle = seconds(runtime_config(), IDLE_TIMEOUT_KEY, DEFAULT_IDLE_TIMEOUT)
        return anyio.run(
            lambda: serve_daemon(
                self.adaptor_class,
                init_data,
                path_mapping,
                connection_file=os.path.abspath(args.connection_file),
                strict_token=bool(args.aiofarm_stdin),
                idle_timeout=idle,
                announce=bool(args.aiofarm_stdin),
                level=level,
            )
        )

    def _reentry(self) -> list[str]:
        if self.reentry is not None:
            return self.reentry
        if self._class is None:
            spec = getattr(sys.modules.get("__main__"), "__spec__", None)
            if spec is not None and spec.parent:
                return [sys.executable, "-m", spec.parent]
        module = sys.modules.get(self.adaptor_class.__module__)
        package = getattr(module, "__package__", None)
        if not package:
            raise ValueError(
                f"{self.adaptor_class.__module__} is not in a package; pass reentry= to EntryPoint"
            )
        return [sys.executable, "-m", package]

    # -- informational commands -------------------------------------------------------
    def interface_version(self) -> str:
        from .legacy import is_official_adaptor, official_interface_version

        if is_official_adaptor(self.adaptor_class):
            return official_interface_version(self.adaptor_class)
        return str(getattr(self.adaptor_class, "integration_data_interface_version", "0.1"))

    def _version_info(self) -> int:
        name = self.name
        cli = protocol.format_version(protocol.ADAPTOR_CLI_VERSION)
        data = self.interface_version()
        _print_yaml({"OpenJD Adaptor CLI Version": cli, f"{name} Data Interface Version": data})
        return 0

    def _is_compatible(self, parser: argparse.ArgumentParser, args: Namespace) -> int:
        name = self.name
        try:
            expected = (
                protocol.parse_version(args.openjd_adaptor_cli_version),
                protocol.parse_version(args.integration_data_interface_version),
            )
        except ValueError as exc:
            parser.error(str(exc))
        installed = (protocol.ADAPTOR_CLI_VERSION, protocol.parse_version(self.interface_version()))
        ok = protocol.compatible(installed[0], expected[0]) and protocol.compatible(
            installed[1], expected[1]
        )
        fmt = protocol.format_version
        detail = (
            "\nInstalled:"
            f"\n\tOpenJD Adaptor CLI Version: {fmt(installed[0])}"
            f"\n\t{name} Data Interface Version: {fmt(installed[1])}"
            "\nExpected:"
            f"\n\tOpenJD Adaptor CLI Version: {fmt(expected[0])}"
            f"\n\t{name} Data Interface Version: {fmt(expected[1])}"
        )
        if not ok:
            parser.error("Installed interface versions are incompatible with expected:" + detail)
        print("Installed interface versions are compatible with expected:" + detail)
        return 0

    def _show_config(self, config: dict[str, Any]) -> int:
        _print_yaml(config)
        return 0


#: the commands a session runs per task, and their options
_PER_TASK = {"run": ("--run-data", "--connection-file"), "stop": ("--connection-file",)}


def _per_task_args(argv: Sequence[str]) -> SimpleNamespace | None:
    """``daemon run`` and ``daemon stop`` whose options are spelt in full: the namespace
    the parser would give, without building it (its help formatter imports shutil, and
    these run once per task). Anything else (help, an abbreviation, a value that is not
    JSON/YAML or looks like an option) is None, and the parser parses it and words any
    error exactly as before."""
    if len(argv) < 2 or argv[0] != "daemon" or argv[1] not in _PER_TASK:
        return None
    options = _PER_TASK[argv[1]]
    values: dict[str, str] = {}
    rest = list(argv[2:])
    while rest:
        name, eq, value = rest.pop(0).partition("=")
        if name not in options:
            return None
        if not eq:
            if not rest:
                return None
            value = rest.pop(0)
        if value.startswith("-") and value != "-":
            return None
        values[name] = value
    from types import SimpleNamespace

    args = SimpleNamespace(command="daemon", subcommand=argv[1], connection_file=values.get("--connection-file"))
    if "--run-data" in options:
        try:
            args.run_data = _load_data(values.get("--run-data", ""))
        except protocol.DataError:
            return None
    return args


def _info_lines(emit: Callable[[str], None], level: str) -> Callable[[str], None]:
    """The runtime's own INFO lines, formatted as its log records are (``INFO: ...``)."""
    if level not in ("DEBUG", "INFO"):
        return lambda message: None
    return lambda message: emit(f"INFO: {message}")


def _bootstrap_log(path: str) -> None:
    """An official frontend that started this daemon shows this file's lines (and an
    error when it is missing) once the connection file exists."""
    import time

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        import logging

        logging.getLogger("aiofarm.adaptors").warning(
            "Cannot write the bootstrap log %s: %s", path, exc.strerror or exc
        )
        return
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"[{stamp}][INFO    ] Running in background daemon mode (aiofarm).\n")


def _print_yaml(value: dict[str, Any]) -> None:
    import yaml  # type: ignore[import-untyped]

    print(yaml.dump(value, indent=2))


def _fail(message: str) -> int:
    from .frontend import stderr

    stderr(f"ERROR: {message}")
    return 1


def main(adaptor_class: type, argv: Sequence[str] | None = None) -> NoReturn:
    """``main(MyAdaptor)``: the adaptor's console entry point."""
    EntryPoint(adaptor_class).start(argv)
