"""The Python SDK against a live server: every call goes over a real socket."""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
import time
from pathlib import Path

import httpx
import pytest

from sparktrainer import AsyncSparkTrainerClient, SparkTrainerClient
from sparktrainer.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    RateLimitError,
    ValidationError,
)
from tests.sdk.conftest import ACCESS_TTL, RATE_WINDOW, STANDARD_LIMIT, LiveServer
from tests.sdk.proxy import cutting_proxy


def logging_job(points: int, delay: float = 0.0) -> str:
    """A job command that logs ``loss`` for steps 0..points-1."""
    script = (
        "import sparktrainer, time\n"
        f"for i in range({points}):\n"
        "    sparktrainer.log({'loss': 1 / (i + 1), 'lr': 0.001}, step=i)\n"
        f"    time.sleep({delay})\n"
    )
    return f'{sys.executable} -c "{script}"'


@pytest.fixture
def client(live_server: LiveServer) -> SparkTrainerClient:
    return SparkTrainerClient(base_url=live_server.url, api_key=live_server.api_key)


def test_job_create_list_get_cancel(client: SparkTrainerClient) -> None:
    job = client.jobs.create(
        name=f"sleeper-{secrets.token_hex(3)}", command="sleep 60", gpu_count=2
    )
    assert job.id.startswith("job-") and job.status == "pending" and job.gpu_count == 2
    listed = client.jobs.list(limit=200)
    assert job.id in [j.id for j in listed.items] and listed.total >= 1
    detail = client.jobs.get(job.id)
    assert detail.name == job.name
    cancelled = client.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    assert client.jobs.get(job.id).events[-1].to_status == "cancelled"


def test_stream_metrics_to_the_end(client: SparkTrainerClient) -> None:
    job = client.jobs.create(name="stream", command=logging_job(30, 0.02), gpu_count=1)
    stream = client.jobs.stream_metrics(job.id)
    points = list(stream)
    assert [p.step for p in points] == list(range(30))
    assert points[3].loss == pytest.approx(1 / 4) and points[3]["lr"] == pytest.approx(0.001)
    assert stream.end is not None and stream.end.status == "completed"
    assert stream.end.exit_code == 0


def test_stream_resumes_without_repeats_or_gaps(
    client: SparkTrainerClient, live_server: LiveServer
) -> None:
    job = client.jobs.create(name="resume", command=logging_job(300), gpu_count=1)
    assert client.jobs.wait(job.id, poll=0.2).status == "completed"
    with cutting_proxy(live_server.url) as proxy:
        proxied = SparkTrainerClient(base_url=proxy.url, api_key=live_server.api_key)
        proxy.cut_after = 6000  # the response headers, then a few dozen points
        stream = proxied.jobs.stream_metrics(job.id)
        steps = [p.step for p in stream]
        assert proxy.cuts == 1 and stream.reconnects >= 1
    assert steps == list(range(300))
    assert stream.end is not None and stream.end.status == "completed"


async def test_async_client(live_server: LiveServer, tmp_path: Path) -> None:
    async with AsyncSparkTrainerClient(
        base_url=live_server.url, api_key=live_server.api_key
    ) as client:
        job = await client.jobs.create(name="async", command=logging_job(5), gpu_count=1)
        steps = [point.step async for point in client.jobs.stream_metrics(job.id)]
        assert steps == [0, 1, 2, 3, 4]
        with pytest.raises(ConflictError):
            await client.jobs.cancel(job.id)
        data = tmp_path / "async.jsonl"
        data.write_text('{"a": 1}\n')
        dataset = await client.datasets.upload(data, name=f"async-{secrets.token_hex(3)}")
        out = await client.datasets.download(dataset.id, tmp_path / "out.jsonl")
        assert out.read_text() == '{"a": 1}\n'
        assert len(await client.gpus.list()) == 4


def test_dataset_upload_with_progress_and_download(
    client: SparkTrainerClient, tmp_path: Path
) -> None:
    source = tmp_path / "train.jsonl"
    source.write_bytes(b"".join(b'{"x": %d}\n' % i for i in range(60_000)))  # ~600 KB
    size = source.stat().st_size
    seen: list[tuple[int, int | None]] = []
    name = f"ds-{secrets.token_hex(3)}"
    dataset = client.datasets.upload(source, name=name, progress=lambda d, t: seen.append((d, t)))
    assert dataset.name == name and dataset.latest_version.size == size
    assert (
        dataset.latest_version.hash
        == hashlib.md5(source.read_bytes(), usedforsecurity=False).hexdigest()
    )
    assert seen[-1] == (size, size) and len(seen) > 1
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert name in [d.name for d in client.datasets.list(name=name).items]
    assert client.datasets.versions(dataset.id).versions[0].version == "v1.0.0"

    out = client.datasets.download(dataset.id, tmp_path / "copy.jsonl", version="v1.0.0")
    assert out.read_bytes() == source.read_bytes()
    assert not (tmp_path / "copy.jsonl.part").exists()


def test_download_resumes_from_a_part_file_and_after_a_cut(
    client: SparkTrainerClient, live_server: LiveServer, tmp_path: Path
) -> None:
    source = tmp_path / "blob.bin"
    source.write_bytes(os.urandom(1_500_000))
    dataset = client.datasets.upload(source, name=f"blob-{secrets.token_hex(3)}")

    # A previous process got the first 500,000 bytes: only the rest is fetched.
    target = tmp_path / "resumed.bin"
    Path(f"{target}.part").write_bytes(source.read_bytes()[:500_000])
    seen: list[int] = []
    client.datasets.download(dataset.id, target, progress=lambda done, _: seen.append(done))
    assert target.read_bytes() == source.read_bytes()
    assert seen[0] > 500_000

    # The connection breaks mid-body: the client resumes with a Range request.
    with cutting_proxy(live_server.url) as proxy:
        proxied = SparkTrainerClient(base_url=proxy.url, api_key=live_server.api_key)
        proxy.cut_after = 700_000
        cut = proxied.datasets.download(dataset.id, tmp_path / "cut.bin")
        assert proxy.cuts == 1 and proxy.connections == 2
    assert cut.read_bytes() == source.read_bytes()


def test_typed_errors(client: SparkTrainerClient, live_server: LiveServer) -> None:
    with pytest.raises(AuthenticationError) as unauthorized:
        SparkTrainerClient(base_url=live_server.url, api_key="stk_wrong").jobs.list()
    assert unauthorized.value.status == 401 and unauthorized.value.error == "Unauthorized"

    with pytest.raises(NotFoundError) as missing:
        client.jobs.get("job-0000000000000000")
    assert missing.value.status == 404 and "job-0000000000000000" in missing.value.message

    job = client.jobs.create(name="quick", command="true", gpu_count=0)
    client.jobs.wait(job.id, poll=0.2)
    with pytest.raises(ConflictError) as conflict:
        client.jobs.cancel(job.id)
    assert conflict.value.status == 409

    with pytest.raises(ValidationError) as invalid:
        client.jobs.create(name="bad", command="true", gpu_count=-1)
    assert invalid.value.status == 400 and "gpu_count" in invalid.value.message

    limited = SparkTrainerClient(
        base_url=live_server.url, api_key=live_server.limited_api_key, max_retries=0
    )
    with pytest.raises(RateLimitError) as limit:
        for _ in range(STANDARD_LIMIT * 2 + 2):
            limited.gpus.list()
    assert limit.value.status == 429
    assert limit.value.retry_after is not None and 0 < limit.value.retry_after <= RATE_WINDOW


def test_retries_after_429_honouring_retry_after(live_server: LiveServer) -> None:
    statuses: list[int] = []
    http = httpx.Client(
        base_url=live_server.url,
        event_hooks={"response": [lambda response: statuses.append(response.status_code)]},
    )
    limited = SparkTrainerClient(
        base_url=live_server.url, api_key=live_server.limited_api_key, http_client=http
    )
    started = time.monotonic()
    for _ in range(STANDARD_LIMIT * 2):
        assert len(limited.gpus.list()) == 4
    assert 429 in statuses  # the limit was hit, and every call still succeeded
    assert statuses.count(200) == STANDARD_LIMIT * 2
    assert time.monotonic() - started >= 0.5  # it waited for the window to reset


def test_token_refresh_across_an_expiry(live_server: LiveServer) -> None:
    statuses: list[tuple[str, int]] = []
    http = httpx.Client(
        base_url=live_server.url,
        event_hooks={"response": [lambda r: statuses.append((r.request.url.path, r.status_code))]},
    )
    client = SparkTrainerClient(
        base_url=live_server.url,
        username="admin",
        password=live_server.admin_password,
        http_client=http,
    )
    assert client.users.me().username == "admin"
    first_access = client.access_token
    first_refresh = client._transport.auth.tokens.refresh_token
    time.sleep(ACCESS_TTL + 0.5)  # the first access token has now expired
    assert client.users.me().username == "admin"
    assert client.access_token != first_access
    paths = [path for path, _ in statuses]
    assert paths.count("/api/auth/login") == 1 and paths.count("/api/auth/refresh") == 1
    assert all(status != 401 for _, status in statuses)  # refreshed before, not after
    # The spent refresh token no longer works.
    spent = httpx.post(f"{live_server.url}/api/auth/refresh", json={"refresh_token": first_refresh})
    assert spent.status_code == 401


def test_other_resources(client: SparkTrainerClient, live_server: LiveServer) -> None:
    gpus = client.gpus.list()
    assert [g.id for g in gpus] == [0, 1, 2, 3]
    assert client.metrics.get().cpu_percent >= 0
    assert client.users.me().role == "admin"
    assert "limited" in [u.username for u in client.users.list(limit=200).items]
    key = client.api_keys.create("temporary")
    assert key.key.startswith("stk_") and key.id in [k.id for k in client.api_keys.list()]
    client.api_keys.revoke(key.id)
    with pytest.raises(AuthenticationError):
        SparkTrainerClient(base_url=live_server.url, api_key=key.key).users.me()
    name = f"exp-{secrets.token_hex(3)}"
    experiment = client.experiments.create(name=name, tags={"task": "sdk"})
    job = client.jobs.create(
        name="run", command=logging_job(3), gpu_count=0, experiment_id=experiment.id
    )
    client.jobs.wait(job.id, poll=0.2)
    runs = client.experiments.runs(experiment.id)
    assert [r.id for r in runs.items] == [job.id]
    assert client.experiments.get(experiment.id).run_count == 1
    history = client.jobs.metrics(job.id, names=["loss"])
    assert history.metrics[0].steps == [0, 1, 2]
    assert client.models.list().total >= 0
