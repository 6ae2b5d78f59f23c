"""Where an adaptor's output goes: straight to stdout (``run``, and every frontend), or
into the daemon's buffer that heartbeats and followers drain.

Lines are formatted as the official runtime formats them, so a session log reads the
same whichever runtime produced it: ``LEVEL: message`` for log records,
``STDOUT: …``/``STDERR: …`` for the application's output, and ``openjd_*`` lines bare
(the session runner parses those).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TextIO

#: Lines that pass through log formatting untouched (the session runner parses them).
OPENJD_LINE = re.compile(r"^openjd_\S+: ")

STDOUT_LEVEL = logging.ERROR + 1
STDERR_LEVEL = logging.ERROR + 2
ADAPTOR_OUTPUT_LEVEL = logging.ERROR + 3
for _level, _name in (
    (STDOUT_LEVEL, "STDOUT"),
    (STDERR_LEVEL, "STDERR"),
    (ADAPTOR_OUTPUT_LEVEL, "ADAPTOR_OUTPUT"),
):
    if logging.getLevelName(_level) != _name:
        logging.addLevelName(_level, _name)


class LineFormatter(logging.Formatter):
    """``LEVEL: message``, except protocol lines, which must reach the session bare."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if OPENJD_LINE.match(message):
            return message
        return super().format(record)


class OutputSink:
    """Receives finished lines from any thread."""

    def emit(self, line: str) -> None:
        raise NotImplementedError


class StdoutSink(OutputSink):
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def emit(self, line: str) -> None:
        stream = self._stream or sys.stdout
        with self._lock, contextlib.suppress(OSError, ValueError):
            stream.write(line + "\n")
            stream.flush()


class BufferSink(OutputSink):
    """The daemon's output buffer, with the official chunk/ack semantics: a heartbeat
    takes everything not yet acknowledged (the previous chunk included) under a new id;
    acknowledging that id drops it. ``wake`` is called (from whichever thread emitted)
    so that long-polls and followers see a line as soon as it exists."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._unacked: list[str] = []
        self._chunk_id: str | None = None
        self._serial = 0
        self.wake: Callable[[], None] = lambda: None

    def emit(self, line: str) -> None:
        with self._lock:
            self._pending.append(line)
        self.wake()

    @property
    def has_output(self) -> bool:
        with self._lock:
            return bool(self._pending or self._unacked)

    def chunk(self) -> tuple[str, str]:
        with self._lock:
            self._serial += 1
            self._unacked.extend(self._pending)
            self._pending.clear()
            self._chunk_id = f"{self._serial}"
            return self._chunk_id, "\n".join(self._unacked)

    def ack(self, chunk_id: str) -> bool:
        with self._lock:
            if self._chunk_id is not None and chunk_id == self._chunk_id:
                self._unacked.clear()
                self._chunk_id = None
                return True
            return False


class SinkHandler(logging.Handler):
    def __init__(self, sink: OutputSink) -> None:
        super().__init__()
        self.sink = sink
        self.setFormatter(LineFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        # An official LoggingSubprocess also logs each application line to a private
        # "stdout-<uuid>" logger for its regex handlers; that copy is not output.
        if record.name.startswith(("stdout-", "stderr-")):
            return
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        for line in text.splitlines() or [""]:
            self.sink.emit(line)


@contextlib.contextmanager
def route_logging(sink: OutputSink, level: str) -> Iterator[SinkHandler]:
    """Send every log record (the runtime's, the adaptor's, a wrapped official adaptor's)
    to ``sink`` for the duration; the root logger's previous state comes back after."""
    root = logging.getLogger()
    handler = SinkHandler(sink)
    old_level = root.level
    old_handlers = list(root.handlers)
    for h in old_handlers:
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for h in old_handlers:
            root.addHandler(h)
        root.setLevel(old_level)
