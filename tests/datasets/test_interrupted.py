"""Uploads that stop halfway leave no dataset, no version and no file, not even a temporary one."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from fastapi.testclient import TestClient

from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.datasets.upload import BATCH_BYTES
from spark_trainer.settings import Settings
from tests.conftest import Account
from tests.datasets.helpers import BOUNDARY, MULTIPART_HEADERS, assert_nothing_kept, multipart

# Files of a few batches, so the upload is well under way (its temporary file written
# to) when it stops.
FILE_BYTES = 3 * BATCH_BYTES
CUT_AT = 2 * BATCH_BYTES + 123


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(max_upload_bytes=4 * FILE_BYTES)


def _wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _temporary_files(settings: Settings) -> list[str]:
    return [p.name for p in (settings.artifacts_root / "tmp").glob("*.part")]


@contextmanager
def _live_server(settings: Settings, ctx: AppContext) -> Iterator[int]:
    """The real app behind real uvicorn (httptools, as ``sparktrainer serve`` runs it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings, ctx), lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    _wait_until(lambda: server.started)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_a_client_that_disconnects_mid_file_leaves_nothing(
    settings: Settings, ctx: AppContext, alice: Account
) -> None:
    body = multipart(("name", None, b"cut-off"), ("file", "big.bin", os.urandom(FILE_BYTES)))
    head = (
        "POST /api/datasets HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        f"Authorization: Bearer {alice.token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with _live_server(settings, ctx) as port:
        conn = socket.create_connection(("127.0.0.1", port))
        conn.sendall(head + body[:CUT_AT])
        # The upload is under way: its bytes are going into a temporary file...
        _wait_until(lambda: bool(_temporary_files(settings)))
        conn.close()
        # ...which goes away with the connection.
        _wait_until(lambda: not _temporary_files(settings))
    assert_nothing_kept(ctx)


def test_a_body_that_ends_before_the_closing_boundary_is_400_and_leaves_nothing(
    client: TestClient, alice: Account, ctx: AppContext
) -> None:
    body = multipart(("name", None, b"truncated"), ("file", "big.bin", os.urandom(FILE_BYTES)))
    response = client.post(
        "/api/datasets",
        content=body[:CUT_AT],
        headers={**alice.headers, **MULTIPART_HEADERS},
    )
    assert response.status_code == 400
    assert response.json()["message"] == "The multipart body ended before its closing boundary"
    assert_nothing_kept(ctx)


def test_an_invalid_name_before_the_file_stops_the_upload_before_anything_is_stored(
    client: TestClient, alice: Account, ctx: AppContext
) -> None:
    body = multipart(("name", None, b"not a name"), ("file", "big.bin", os.urandom(FILE_BYTES)))
    response = client.post(
        "/api/datasets", content=body, headers={**alice.headers, **MULTIPART_HEADERS}
    )
    assert response.status_code == 400
    assert_nothing_kept(ctx)
