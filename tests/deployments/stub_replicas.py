"""Small real HTTP servers on loopback standing for replicas (conftest's ``replicas``), and
deployment rows for them as the supervisor writes them (``deploy``): no job behind them,
for the proxy's own tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from spark_trainer.kit.time import utcnow
from spark_trainer.models import (
    DeploymentReplica,
    ReplicaState,
)


class ReplicaHandler(BaseHTTPRequestHandler):
    """Answers what it was asked: its name, the method, target, headers and body."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the real backends

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        received = self.rfile.read(length).decode()
        body = json.dumps(
            {
                "replica": self.server.name,  # type: ignore[attr-defined]
                "method": self.command,
                "target": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": received,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Deployed:
    id: str
    slots: dict[str, int]  # replica name -> slot


def replica_row(deployment_id: str, slot: int, port: int) -> DeploymentReplica:
    return DeploymentReplica(
        deployment_id=deployment_id,
        slot=slot,
        node="test-node",
        port=port,
        state=ReplicaState.HEALTHY,
        healthy_since=utcnow(),
    )
