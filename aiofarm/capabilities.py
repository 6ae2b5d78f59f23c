"""What a driver can do, checked once, in the client layer, before the driver is called.

A driver declares operations and parameters in ``Driver.capabilities`` (see
:class:`~aiofarm.models.Capability`). Every public call that reaches a driver first
calls :func:`require` for the operation and for each parameter it was given, so a
parameter a back end cannot honour raises ``UnsupportedError(driver, "op.param")``
instead of being silently ignored, and no driver repeats the check.

A parameter has a *neutral* value (:data:`NEUTRAL`: what the API does when the
parameter is left alone). A driver without the parameter's capability honours only
that value, or the one value its back end always behaves as, declared in
``Driver.fixed_parameters`` (Deadline suspends by interrupting running tasks:
``{PAUSE_STOP_WORK: True}``). ``None`` always passes: "the back end's own way".
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Union

from .errors import UnsupportedError
from .models import Capability

if TYPE_CHECKING:
    from .drivers.base import Driver
    from .models import JobSpec

__all__ = ["NEUTRAL", "native_value", "require", "require_spec"]

_STREAMS = frozenset({"stdout", "stderr"})

#: the value of each parameter that every driver is taken to honour
NEUTRAL: Mapping[Capability, object] = MappingProxyType(
    {
        Capability.SUBMIT_TTY: False,
        Capability.SUBMIT_STDIN: False,
        Capability.SUBMIT_RETRIES: 0,
        Capability.SUBMIT_MAX_FAILED_TASKS: None,
        Capability.SUBMIT_MAX_WORKERS: None,
        Capability.SUBMIT_ENVIRONMENTS: None,
        Capability.CANCEL_STOP_WORK: True,
        Capability.PAUSE_STOP_WORK: False,
        Capability.LOGS_SINCE: None,
        Capability.LOGS_TIMESTAMPS: False,
        Capability.LOGS_STREAMS: _STREAMS,
        Capability.LOGS_TASK: None,
        Capability.LOGS_ATTEMPT: None,
        Capability.ATTACH_BATCH_STEP: None,
        Capability.ATTACH_STEP: None,
        Capability.EXEC_TTY: False,
        Capability.WORKERS_STOP_WORK: False,
        Capability.FUNCTIONS_MAX_CONCURRENCY: None,
    }
)

_OPERATION = object()


#: a driver class (before the client opens) or the open driver (which may know more)
DriverInfo = Union["Driver", "type[Driver]"]


def native_value(driver: DriverInfo, capability: Capability) -> object:
    """The value of a parameter that ``driver`` honours without its capability."""
    return driver.fixed_parameters.get(capability, NEUTRAL.get(capability))


def require(
    driver: DriverInfo, capability: Capability, value: object = _OPERATION, *, detail: str = ""
) -> None:
    """Raise ``UnsupportedError`` naming ``driver`` and ``capability`` unless the driver
    can do it: an operation it declares, or a parameter ``value`` it honours."""
    if capability in driver.capabilities:
        return
    if value is not _OPERATION and capability.parameter is not None:
        if value is None or value == native_value(driver, capability):
            return
        if not detail:
            native = native_value(driver, capability)
            detail = f"{capability.parameter}={value!r} cannot be honoured"
            if capability in driver.fixed_parameters:
                detail += f" (it always behaves as {capability.parameter}={native!r})"
    raise UnsupportedError(driver.name, capability.value, detail)


def require_spec(driver: DriverInfo, spec: JobSpec, field: str) -> None:
    """Every capability submitting ``spec`` needs (``field`` names it in errors)."""
    require(driver, Capability.SUBMIT)
    if spec.template is not None:
        require(driver, Capability.SUBMIT_TEMPLATE)
    if spec.paused:
        require(driver, Capability.PAUSE, detail=f"{field}.paused: the back end cannot hold a job")
    for capability, value in (
        (Capability.SUBMIT_TTY, spec.tty),
        (Capability.SUBMIT_STDIN, spec.stdin),
        (Capability.SUBMIT_RETRIES, spec.retries),
        (Capability.SUBMIT_MAX_FAILED_TASKS, spec.max_failed_tasks),
        (Capability.SUBMIT_MAX_WORKERS, spec.max_workers),
        (Capability.SUBMIT_ENVIRONMENTS, len(spec.options.get("openjd_environments") or ()) or None),
    ):
        if capability not in driver.capabilities and value != NEUTRAL[capability]:
            require(driver, capability, value, detail=f"{field}.{capability.parameter}={value!r}")
