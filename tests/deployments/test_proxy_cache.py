"""What the endpoint caches, seen from another API process.

A second ``DeploymentProxy`` on the same database stands for another API process: it has
cached the route table and the caller's credential, and nothing in it is told about the
change (only the process whose supervisor made a change reloads at once). It must still
notice a deleted deployment, a changed replica set, a revoked key and a disabled user
within the lifetimes the README documents. The replicas are small real HTTP servers on
loopback; the rows are written as the supervisor and the services write them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import update
from starlette.requests import Request
from starlette.types import Message

from spark_trainer.context import AppContext
from spark_trainer.deployments import service
from spark_trainer.deployments.proxy import (
    AUTH_TTL_SECONDS,
    ROUTE_TTL_SECONDS,
    DeploymentProxy,
)
from spark_trainer.kit.time import utcnow
from spark_trainer.models import (
    Deployment,
    DeploymentKey,
    DeploymentReplica,
    DeploymentStatus,
    ReplicaState,
    User,
)
from tests.conftest import Account
from tests.deployments.stub_replicas import Deployed, replica_row

# How long a test waits for a change the proxy must notice within ``lifetime``: a wide
# margin on a loaded machine; the tests end as soon as the change is seen.
PATIENCE = 10.0


class OtherProcess:
    """A DeploymentProxy on the test's database with an event loop of its own."""

    def __init__(self, ctx: AppContext) -> None:
        self.proxy = DeploymentProxy(ctx.session_factory, ctx.tokens.key)
        self.loop = asyncio.new_event_loop()

    def answer(self, credential: str, deployment_id: str) -> tuple[int, bytes]:
        """GET v1/models through the proxy's ASGI path: the status and body."""

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        scope = {
            "type": "http",
            "method": "GET",
            "path": f"/api/deployments/{deployment_id}/v1/models",
            "query_string": b"",
            "headers": [(b"accept", b"application/json")],
        }
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        async def forward() -> tuple[int, bytes]:
            response = await self.proxy.forward(
                Request(scope, receive), credential, deployment_id, "v1/models"
            )
            await response(scope, receive, send)
            body = b"".join(m.get("body", b"") for m in sent[1:])
            return int(sent[0]["status"]), body

        return self.loop.run_until_complete(forward())

    def call(self, credential: str, deployment_id: str) -> str:
        """The name of the replica that answered."""
        status, body = self.answer(credential, deployment_id)
        assert status == 200, body
        return str(json.loads(body)["replica"])

    def close(self) -> None:
        self.loop.run_until_complete(self.proxy.aclose())
        self.loop.close()


@pytest.fixture
def other_process(ctx: AppContext) -> Iterator[OtherProcess]:
    other = OtherProcess(ctx)
    yield other
    other.close()


def _served_by(other: OtherProcess, credential: str, deployment_id: str) -> set[str]:
    return {other.call(credential, deployment_id) for _ in range(6)}


def _eventually(check: Callable[[], bool], what: str, lifetime: float) -> None:
    deadline = time.monotonic() + lifetime + PATIENCE
    while not check():
        assert time.monotonic() < deadline, f"{what}: not noticed (documented: {lifetime} s)"
        time.sleep(0.05)


def _refused(
    other: OtherProcess, credential: str, deployment_id: str, status: int, error: str
) -> bool:
    """Whether the call is answered ``status`` with the spec's error JSON."""
    answered, body = other.answer(credential, deployment_id)
    if answered != status:
        return False
    assert json.loads(body)["error"] == error
    return True


def test_a_cached_route_notices_a_deleted_deployment(
    ctx: AppContext,
    alice: Account,
    replicas: Callable[[str], int],
    deploy: Callable[[dict[str, int]], Deployed],
    other_process: OtherProcess,
) -> None:
    deployed = deploy({"one": replicas("one")})
    assert other_process.call(alice.token, deployed.id) == "one"
    with ctx.session_factory.begin() as session:
        # What DELETE and then the supervisor write: stopping, then stopped.
        session.execute(
            update(Deployment)
            .where(Deployment.id == deployed.id)
            .values(status=DeploymentStatus.STOPPED, stopped_at=utcnow())
        )
        session.execute(
            update(DeploymentReplica)
            .where(DeploymentReplica.deployment_id == deployed.id)
            .values(state=ReplicaState.STOPPED, port=None)
        )
    _eventually(
        lambda: _refused(other_process, alice.token, deployed.id, 404, "Not Found"),
        "a stopped deployment answering 404",
        ROUTE_TTL_SECONDS,
    )


def test_a_cached_route_follows_the_replica_set(
    ctx: AppContext,
    alice: Account,
    replicas: Callable[[str], int],
    deploy: Callable[[dict[str, int]], Deployed],
    other_process: OtherProcess,
) -> None:
    deployed = deploy({"one": replicas("one"), "two": replicas("two")})
    assert _served_by(other_process, alice.token, deployed.id) == {"one", "two"}

    # Scaled to one: the replica scaled away drains (no new requests).
    with ctx.session_factory.begin() as session:
        session.execute(
            update(DeploymentReplica)
            .where(
                DeploymentReplica.deployment_id == deployed.id,
                DeploymentReplica.slot == deployed.slots["two"],
            )
            .values(state=ReplicaState.DRAINING)
        )
    _eventually(
        lambda: _served_by(other_process, alice.token, deployed.id) == {"one"},
        "a draining replica taken out",
        ROUTE_TTL_SECONDS,
    )

    # Scaled to two again: the new replica gets requests once healthy.
    three = replicas("three")
    with ctx.session_factory.begin() as session:
        session.add(replica_row(deployed.id, 2, three))
    _eventually(
        lambda: _served_by(other_process, alice.token, deployed.id) == {"one", "three"},
        "a new healthy replica used",
        ROUTE_TTL_SECONDS,
    )

    # Every replica unhealthy: 503, not a request to a replica the supervisor took out.
    with ctx.session_factory.begin() as session:
        session.execute(
            update(DeploymentReplica)
            .where(DeploymentReplica.deployment_id == deployed.id)
            .values(state=ReplicaState.UNHEALTHY)
        )
    _eventually(
        lambda: _refused(other_process, alice.token, deployed.id, 503, "Service Unavailable"),
        "no healthy replica answering 503",
        ROUTE_TTL_SECONDS,
    )


def test_a_revoked_key_and_a_disabled_user_stop_working(
    ctx: AppContext,
    alice: Account,
    replicas: Callable[[str], int],
    deploy: Callable[[dict[str, int]], Deployed],
    other_process: OtherProcess,
) -> None:
    deployed = deploy({"one": replicas("one")})
    with ctx.session_factory.begin() as session:
        user = session.get(User, alice.user.id)
        assert user is not None
        created = service.create_key(session, user, deployed.id, "app")
    # Both credentials resolved once, so both are in the proxy's cache.
    assert other_process.call(created.key, deployed.id) == "one"
    assert other_process.call(alice.token, deployed.id) == "one"

    with ctx.session_factory.begin() as session:
        session.execute(
            update(DeploymentKey).where(DeploymentKey.id == created.id).values(revoked_at=utcnow())
        )
        session.execute(update(User).where(User.id == alice.user.id).values(is_active=False))
    _eventually(
        lambda: _refused(other_process, created.key, deployed.id, 401, "Unauthorized"),
        "a revoked deployment key refused",
        AUTH_TTL_SECONDS,
    )
    _eventually(
        lambda: _refused(other_process, alice.token, deployed.id, 401, "Unauthorized"),
        "a disabled user's token refused",
        AUTH_TTL_SECONDS,
    )


def test_after_a_supervisor_pass_a_new_deployment_is_served_at_once(
    alice: Account,
    replicas: Callable[[str], int],
    deploy: Callable[[dict[str, int]], Deployed],
    other_process: OtherProcess,
) -> None:
    first = deploy({"one": replicas("one")})
    assert other_process.call(alice.token, first.id) == "one"
    # The table was just loaded; a request for a deployment it lacks waits for the
    # reload the pass asked for rather than answering 404.
    second = deploy({"two": replicas("two")})
    other_process.proxy.invalidate()
    assert other_process.call(alice.token, second.id) == "two"
    assert other_process.call(alice.token, first.id) == "one"
