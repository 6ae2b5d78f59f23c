"""``python -m aiofarm.adaptors MODULE:CLASS <command> ...``: run any adaptor class
(an AsyncAdaptor, or an official Adaptor/CommandAdaptor) without writing an entry
point for it. The daemon re-enters through the same command."""

from __future__ import annotations

import pkgutil
import sys


def main() -> int:
    if len(sys.argv) < 2 or ":" not in sys.argv[1]:
        sys.stderr.write("usage: python -m aiofarm.adaptors MODULE:CLASS <command> [arguments]\n")
        return 2
    ref = sys.argv[1]
    try:
        # the command line names the class: resolving it is the point of this entry
        cls = pkgutil.resolve_name(ref)
    except (ImportError, AttributeError, ValueError) as exc:
        sys.stderr.write(f"ERROR: cannot load adaptor {ref}: {exc}\n")
        return 2
    from .cli import EntryPoint

    entry = EntryPoint(cls, reentry=[sys.executable, "-m", "aiofarm.adaptors", ref])
    return entry.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
