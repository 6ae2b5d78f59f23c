"""The example adaptor, written once against ``AsyncAdaptor``.

init data: ``{"startup_delay": s, "fail_in": "start"|"stop"|"cleanup"}`` (both optional)
run data:  ``{"frame": n, "steps": k, "delay": s, "fail": "message", "scene": path}``
(``fail`` makes the application report an error for the task)
"""

from __future__ import annotations

import os
import sys
from typing import Any

import anyio

from aiofarm.adaptors import AsyncAdaptor, AsyncProcess, RegexCallback

APP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "repl_app.py")


class ReplAdaptor(AsyncAdaptor):
    integration_data_interface_version = "0.1"
    stop_timeout = 30.0

    app: AsyncProcess | None = None

    async def on_start(self) -> None:
        argv = [sys.executable, "-u", APP]
        if self.init_data.get("startup_delay"):
            argv += ["--startup-delay", str(self.init_data["startup_delay"])]
        self.ctx.status("starting the application")
        self.app = await self.ctx.start_process(
            argv,
            stdout_callbacks=[
                RegexCallback(r"^progress (\S+)$", lambda m: self.ctx.progress(float(m.group(1))))
            ],
        )
        await self.app.expect(r"^ready$", timeout=60)
        self.ctx.status("application ready")
        if self.init_data.get("fail_in") == "start":
            raise RuntimeError("start failed on request")

    async def on_run(self, run_data: dict[str, Any]) -> None:
        assert self.app is not None
        frame = int(run_data.get("frame", 1))
        if run_data.get("scene"):  # a path written on another OS, mapped for this host
            self.ctx.emit(f"scene: {self.map_path(str(run_data['scene']))}")
        self.ctx.status(f"rendering frame {frame}")
        if run_data.get("fail"):
            await self.app.send_line(f"fail {run_data['fail']}")
            found = await self.app.expect(r"^error: (.*)$")
            raise RuntimeError(found.group(1))
        steps = int(run_data.get("steps", 2))
        delay = float(run_data.get("delay", 0.0))
        await self.app.send_line(f"render f{frame} {steps} {delay}")
        await self.app.expect(rf"^done f{frame}$")
        self.ctx.status(f"frame {frame} done")

    async def on_cancel(self) -> None:
        if self.app is not None and self.app.running:
            await self.app.send_line("abort")

    async def on_stop(self) -> None:
        if self.app is not None and self.app.running:
            self.app.expect_exit()
            await self.app.send_line("quit")
            with anyio.move_on_after(10):
                await self.app.wait()
            await self.app.terminate()  # no-op once it has quit
        if self.init_data.get("fail_in") == "stop":
            raise RuntimeError("stop failed on request")

    async def on_cleanup(self) -> None:
        if self.init_data.get("fail_in") == "cleanup":
            raise RuntimeError("cleanup failed on request")


