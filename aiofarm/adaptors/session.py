"""One adaptor session: the adaptor instance, its context and its phase runner, with the
task group that the applications it starts live in."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from .adaptor import AdaptorContext
from .config import adaptor_config
from .legacy import OfficialAdaptorShim, is_official_adaptor, module_dir_of
from .output import OutputSink
from .runner import Hooks, PhaseRunner, Waker

if TYPE_CHECKING:
    from aiofarm.models import PathMappingRule


def rules_from_openjd(data: Mapping[str, Any]) -> list[PathMappingRule]:
    """Rules from an OpenJD path mapping document (``Session.PathMappingRulesFile``)."""
    from aiofarm.models import PathMappingRule

    rules = []
    for raw in data.get("path_mapping_rules", []) or []:
        if not isinstance(raw, Mapping):
            raise ValueError("path mapping rules must be objects")
        try:
            rules.append(
                PathMappingRule(
                    source_os=str(raw["source_path_format"]).lower(),
                    source=str(raw["source_path"]),
                    destination=str(raw["destination_path"]),
                )
            )
        except KeyError as exc:
            raise ValueError(f"a path mapping rule has no {exc.args[0]!r}") from None
    return rules


@contextlib.asynccontextmanager
async def open_session(
    adaptor_cls: type,
    init_data: Mapping[str, Any],
    path_mapping_data: Mapping[str, Any],
    sink: OutputSink,
) -> AsyncIterator[PhaseRunner]:
    """The adaptor's session. On the way out, an adaptor that was started and never
    stopped is stopped and cleaned up (shielded, time-limited), and every application
    it started is terminated: nothing outlives the session."""
    waker = Waker()
    async with anyio.create_task_group() as tg:
        ctx = AdaptorContext(sink, task_group=tg)
        config = adaptor_config(adaptor_cls.__name__, module_dir_of(adaptor_cls))
        hooks: Hooks
        if is_official_adaptor(adaptor_cls):
            hooks = OfficialAdaptorShim(adaptor_cls, init_data, path_mapping_data, config)
        else:
            hooks = adaptor_cls(
                init_data,
                ctx=ctx,
                config=config,
                path_mapping_rules=rules_from_openjd(path_mapping_data),
            )
        runner = PhaseRunner(hooks, ctx, waker)
        ctx._on_application_exit = runner.application_exited
        ctx._on_application_start = runner.application_started
        try:
            yield runner
        finally:
            with anyio.CancelScope(shield=True):
                if runner.started and not runner.stopped:
                    await runner.stop()
                await ctx.terminate_processes()
            tg.cancel_scope.cancel()
