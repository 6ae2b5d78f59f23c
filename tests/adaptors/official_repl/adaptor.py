"""init data / run data as the example adaptor's (examples/adaptors/repl_adaptor)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
from typing import Any

from openjd.adaptor_runtime.adaptors import Adaptor, SemanticVersion

APP = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
    "examples",
    "adaptors",
    "repl_app.py",
)
_STDOUT = logging.ERROR + 1
_log = logging.getLogger(__name__)


class OfficialReplAdaptor(Adaptor):  # type: ignore[misc]
    def __init__(self, init_data: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(init_data, **kwargs)
        self._proc: subprocess.Popen[str] | None = None
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._canceled = threading.Event()
        self._quitting = False

    @property
    def integration_data_interface_version(self) -> SemanticVersion:
        return SemanticVersion(major=0, minor=1)

    def _reader(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            line = raw.rstrip("\n")
            _log.log(_STDOUT, line)
            m = re.match(r"^progress (\S+)$", line)
            if m:
                self.update_status(progress=float(m.group(1)))
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _expect(self, pattern: str) -> re.Match[str]:
        regex = re.compile(pattern)
        with self._cond:
            while True:
                while self._lines:
                    found = regex.search(self._lines.pop(0))
                    if found:
                        return found
                if self._canceled.is_set():
                    raise _Canceled()
                assert self._proc is not None
                if self._proc.poll() is not None and not self._quitting:
                    raise RuntimeError(
                        f"The application 'repl_app.py' exited unexpectedly (exit code {self._proc.returncode})"
                    )
                self._cond.wait(0.1)

    def _send(self, text: str) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(text + "\n")
        self._proc.stdin.flush()

    def on_start(self) -> None:
        argv = [sys.executable, "-u", APP]
        if self.init_data.get("startup_delay"):
            argv += ["--startup-delay", str(self.init_data["startup_delay"])]
        self.update_status(status_message="starting the application")
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        threading.Thread(target=self._reader, daemon=True).start()
        try:
            self._expect(r"^ready$")
        except _Canceled:
            return
        self.update_status(status_message="application ready")
        if self.init_data.get("fail_in") == "start":
            raise RuntimeError("start failed on request")

    def on_run(self, run_data: dict[str, Any]) -> None:
        self._canceled.clear()
        frame = int(run_data.get("frame", 1))
        if run_data.get("scene"):
            _log.info(f"scene: {self.map_path(str(run_data['scene']))}")
        self.update_status(status_message=f"rendering frame {frame}")
        try:
            if run_data.get("fail"):
                self._send(f"fail {run_data['fail']}")
                found = self._expect(r"^error: (.*)$")
                raise RuntimeError(found.group(1))
            self._send(f"render f{frame} {int(run_data.get('steps', 2))} {float(run_data.get('delay', 0.0))}")
            self._expect(rf"^done f{frame}$")
        except _Canceled:
            return
        self.update_status(status_message=f"frame {frame} done")

    def on_cancel(self) -> None:
        self._canceled.set()
        with self._cond:
            self._cond.notify_all()
        if self._proc is not None and self._proc.poll() is None:
            self._send("abort")

    def on_stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._quitting = True
            self._send("quit")
            self._proc.wait()
        if self.init_data.get("fail_in") == "stop":
            raise RuntimeError("stop failed on request")

    def on_cleanup(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self.init_data.get("fail_in") == "cleanup":
            raise RuntimeError("cleanup failed on request")


class _Canceled(Exception):
    pass
