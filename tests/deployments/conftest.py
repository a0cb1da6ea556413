from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer

import pytest

from spark_trainer.context import AppContext
from spark_trainer.kit.ids import IdPrefix, new_id
from spark_trainer.models import Deployment, DeploymentStatus, ModelVersion
from spark_trainer.settings import Settings
from tests.conftest import Account
from tests.deployments.stub_replicas import Deployed, ReplicaHandler, replica_row


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    # These tests poll a deployment while it starts; the API's per-user limit is not what
    # they are about.
    return settings_factory(rate_limit_standard_per_minute=100_000)


@pytest.fixture
def replicas() -> Iterator[Callable[[str], int]]:
    """Starts named replica servers; returns each one's port."""
    servers: list[ThreadingHTTPServer] = []

    def start(name: str) -> int:
        server = ThreadingHTTPServer(("127.0.0.1", 0), ReplicaHandler)
        server.name = name  # type: ignore[attr-defined]
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return int(server.server_address[1])

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def deploy(ctx: AppContext, alice: Account) -> Callable[[dict[str, int]], Deployed]:
    def make(ports: dict[str, int]) -> Deployed:
        deployment_id = new_id(IdPrefix.DEPLOYMENT)
        with ctx.session_factory.begin() as session:
            model = ModelVersion(
                id=new_id(IdPrefix.MODEL),
                owner_id=alice.user.id,
                name=f"m-{deployment_id}",
                version=1,
            )
            session.add(model)
            session.flush()
            session.add(
                Deployment(
                    id=deployment_id,
                    owner_id=alice.user.id,
                    name="cached",
                    model_id=model.id,
                    backend="vllm",
                    replicas=len(ports),
                    gpu_count=0,
                    status=DeploymentStatus.RUNNING,
                )
            )
            session.flush()
            for slot, port in enumerate(ports.values()):
                session.add(replica_row(deployment_id, slot, port))
        return Deployed(deployment_id, {name: slot for slot, name in enumerate(ports)})

    return make
