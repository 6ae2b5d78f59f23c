"""Small programs the reliability tests run as jobs."""

from __future__ import annotations

#: prints ``port N`` once listening on 127.0.0.1, then answers every connection with
#: what it receives in capitals, each connection in a thread of its own
ECHO_SERVER = (
    "import socket, threading\n"
    "s = socket.socket()\n"
    "s.bind(('127.0.0.1', 0))\n"
    "s.listen(512)\n"
    "print('port', s.getsockname()[1], flush=True)\n"
    "def serve(c):\n"
    "    while (d := c.recv(1024)):\n"
    "        c.sendall(d.upper())\n"
    "    c.close()\n"
    "while True:\n"
    "    c, _ = s.accept()\n"
    "    threading.Thread(target=serve, args=(c,), daemon=True).start()\n"
)
