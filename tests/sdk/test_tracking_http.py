"""``sparktrainer.log``'s HTTP path (jobs running elsewhere): bounded retries, real sockets."""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sparktrainer import SparkTrainerClient
from sparktrainer.tracking import _encode, _HttpSink
from tests.sdk.conftest import LiveServer


class Flaky:
    """A real HTTP server that answers ``failures`` 503s (Retry-After: 0), then 200s."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.bodies: list[dict[str, Any]] = []
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                flaky.bodies.append(body)
                if len(flaky.bodies) <= flaky.failures:
                    self.send_response(503)
                    self.send_header("Retry-After", "0")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_HttpSink, "BACKOFF", 0.01)
    yield


def test_retries_until_delivered(fast_backoff: None) -> None:
    flaky = Flaky(failures=2)
    sink = _HttpSink(flaky.url, "job-1", "stj_token")
    sink.write(_encode({"loss": 0.5}, 1, 1_700_000_000.5))
    sink.flush()
    assert len(flaky.bodies) == 3  # two 503s, then delivered
    point = {"metrics": {"loss": 0.5}, "ts": 1_700_000_000.5, "step": 1}
    assert all(body == {"points": [point]} for body in flaky.bodies)


def test_gives_up_after_bounded_attempts(fast_backoff: None) -> None:
    flaky = Flaky(failures=100)
    sink = _HttpSink(flaky.url, "job-1", "stj_token")
    sink.write(_encode({"loss": 0.5}, 1, time.time()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sink.flush()
    assert len(flaky.bodies) == _HttpSink.ATTEMPTS
    assert any("1 metric points lost" in str(w.message) for w in caught)


def test_posts_to_a_live_server(live_server: LiveServer) -> None:
    client = SparkTrainerClient(base_url=live_server.url, api_key=live_server.api_key)
    job = client.jobs.create(name="remote", command="sleep 30", gpu_count=0)
    try:
        while client.jobs.get(job.id).status != "running":
            time.sleep(0.1)
        sink = _HttpSink(live_server.url, job.id, live_server.api_key)
        for step in range(3):
            sink.write(_encode({"loss": 1.0 / (step + 1)}, step, time.time()))
        sink.flush()
        # Points are stored in batches, shortly after they are accepted.
        deadline = time.monotonic() + 10
        steps: list[int] = []
        while steps != [0, 1, 2] and time.monotonic() < deadline:
            series = client.jobs.metrics(job.id, names=["loss"]).metrics
            steps = list(series[0].steps) if series else []
            time.sleep(0.1)
        assert steps == [0, 1, 2]
    finally:
        client.jobs.cancel(job.id)
