"""The uvicorn server ``sparktrainer serve`` runs."""

from __future__ import annotations

import gc
import socket
from types import FrameType

import uvicorn

from spark_trainer.context import AppContext


class StreamEndingServer(uvicorn.Server):
    """Ends open streams (SSE, WebSocket, log follows) as soon as shutdown begins.

    uvicorn waits for open responses to finish before it runs the app's shutdown, so an
    SSE stream, which never ends by itself, would hold every SIGTERM for the whole grace
    period. Ended cleanly, each client reconnects (to another process, or after the
    restart) from its last event id.
    """

    def __init__(self, config: uvicorn.Config, ctx: AppContext) -> None:
        super().__init__(config)
        self._ctx = ctx

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Everything built at start-up (the app, its routes, models and imported modules:
        # most of the heap) lives as long as the process. Frozen, the collector no longer
        # walks it on every full collection, whose pauses otherwise land on live streams'
        # latency.
        gc.collect()
        gc.freeze()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._ctx.hub.shut_down()
