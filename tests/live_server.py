"""An app served by a real uvicorn on a thread of the test process, for tests that need
a socket (jobs calling back, raw connections, many concurrent clients)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def serving(
    app: Any, *, listener: socket.socket | None = None, start_timeout: float = 20
) -> Iterator[uvicorn.Server]:
    """Serves ``app`` on ``listener`` (a bound socket, when the port must be known before
    the app is built) or on a free port; stops it on exit."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False)
    )
    thread = threading.Thread(
        target=server.run,
        kwargs={"sockets": [listener]} if listener is not None else {},
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def port_of(server: uvicorn.Server) -> int:
    port: int = server.servers[0].sockets[0].getsockname()[1]
    return port


def bound_socket() -> socket.socket:
    """A socket bound to a free loopback port, to be served by ``serving(listener=…)``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock
