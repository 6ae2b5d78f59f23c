"""A stand-in for a render application that an adaptor keeps running between tasks:
a line-oriented REPL on stdin/stdout, like a DCC's command port.

    python repl_app.py [--startup-delay S]
    -> loading (with a delay; "abort" cuts it short), then ready
    render NAME STEPS DELAY   "rendering NAME", progress lines ("progress 50.0"), "done NAME"
                              ("abort" on stdin meanwhile stops it: "aborted NAME")
    fail MESSAGE              "error: MESSAGE"
    echo TEXT                 TEXT
    crash CODE                exits with CODE at once
    quit                      "bye", exit 0
"""

from __future__ import annotations

import select
import sys
import time


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def wait_or_abort(seconds: float) -> bool:
    """Sleep ``seconds``; True if an ``abort`` line arrived meanwhile."""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([sys.stdin], [], [], left)
        if ready:
            line = sys.stdin.readline()
            if not line or line.strip() == "abort":
                return True


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["--startup-delay"]:
        say("loading")
        if wait_or_abort(float(args[1])):
            say("loading aborted")
    say("ready")
    for raw in sys.stdin:
        words = raw.split()
        if not words:
            continue
        cmd, rest = words[0], words[1:]
        if cmd == "render":
            name, steps, delay = rest[0], int(rest[1]), float(rest[2])
            say(f"rendering {name}")
            aborted = False
            for step in range(1, steps + 1):
                if wait_or_abort(delay):
                    aborted = True
                    break
                say(f"progress {step * 100.0 / steps}")
            say(f"aborted {name}" if aborted else f"done {name}")
        elif cmd == "fail":
            say("error: " + " ".join(rest))
        elif cmd == "echo":
            say(" ".join(rest))
        elif cmd == "crash":
            return int(rest[0]) if rest else 3
        elif cmd == "quit":
            say("bye")
            return 0
        elif cmd == "abort":
            say("nothing to abort")
        else:
            say(f"error: unknown command {cmd}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
