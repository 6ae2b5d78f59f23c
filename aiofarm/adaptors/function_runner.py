"""Run one call of a farm Python function: ``python function_runner.py CALL_DIR``.

Reads ``CALL_DIR/../../function.pkl`` (the callable and the submitter's ``sys.path``)
and ``CALL_DIR/input.pkl`` (args, kwargs), calls the function and writes
``CALL_DIR/result.pkl`` atomically: ``{"ok": True, "value": ...}`` or ``{"ok": False,
"type", "message", "traceback"}``. The exit status is 0 on success and 1 when the
function raised, so the farm marks the job (and retries it) like any failed command.

Pickle runs code on load: this trusts whoever wrote the call's files (see
:mod:`aiofarm.functions`). Needs only the standard library, and cloudpickle when the
function or a value is one plain pickle cannot carry (loading imports it by itself).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import traceback
from typing import Any


def _write(path: str, record: dict[str, Any]) -> None:
    # Plain pickle first: importing cloudpickle costs more than most calls (~50 ms);
    # it is needed only for values plain pickle refuses (lambdas, local classes).
    try:
        data = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        import cloudpickle  # type: ignore[import-untyped]

        data = cloudpickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _failure(exc: BaseException) -> dict[str, Any]:
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return {
        "ok": False,
        "type": name,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(kind, exc, exc.__traceback__)),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: function_runner.py CALL_DIR", file=sys.stderr)
        return 2
    call_dir = os.path.abspath(args[0])
    result = os.path.join(call_dir, "result.pkl")
    # A stale result from an earlier attempt must not pass for this one's.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(result)
    # The runner's own directory is sys.path[0]; the function's modules come from the
    # submitter's path.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    try:
        with open(os.path.join(call_dir, "..", "..", "function.pkl"), "rb") as f:
            payload = pickle.loads(f.read())
    except BaseException as exc:
        # sys_path is inside the payload: a function from an unreachable module fails here.
        _write(result, _failure(exc))
        print(f"function_runner: cannot load the function: {exc!r}", file=sys.stderr)
        return 1
    for p in reversed(payload.get("sys_path", [])):
        if p not in sys.path and os.path.isdir(p):
            sys.path.insert(0, p)
    try:
        func = pickle.loads(payload["function"])
        with open(os.path.join(call_dir, "input.pkl"), "rb") as f:
            call_args, call_kwargs = pickle.loads(f.read())
        value = func(*call_args, **call_kwargs)
    except BaseException as exc:
        record = _failure(exc)
        _write(result, record)
        sys.stderr.write(record["traceback"])
        return 1
    try:
        _write(result, {"ok": True, "value": value})
    except BaseException as exc:
        _write(result, _failure(exc))
        print(f"function_runner: cannot pickle the result: {exc!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
