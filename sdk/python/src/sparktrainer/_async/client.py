"""The client, ``AsyncSparkTrainerClient``. ``_async/`` is the source of ``_sync/``.

A thin layer over the generated models (``sparktrainer.models``): each method is one API
call, named after what it does, taking keyword arguments and answering a typed model.
Every call names its route exactly as the OpenAPI document does (the route-drift test
checks them all against it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from sparktrainer import models
from sparktrainer._async.streams import AsyncLogStream, AsyncMetricStream
from sparktrainer._async.transport import AsyncAuth, AsyncTransport
from sparktrainer._common import (
    CHUNK,
    Multipart,
    ProgressCallback,
    RetryPolicy,
    aiterate,
    async_sleep,
    env_base_url,
    etag_md5,
    open_part,
)
from sparktrainer.errors import RangeNotSatisfiableError, StreamError

M = TypeVar("M", bound=BaseModel)


def _body(**values: Any) -> dict[str, Any]:
    """A JSON body without the arguments left unset (the server's defaults apply)."""
    return {k: v for k, v in values.items() if v is not None}


class AsyncResource:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def _get(self, model: type[M], route: str, **kwargs: Any) -> M:
        response = await self._t.request("GET", route, **kwargs)
        return model.model_validate_json(response.content)


class Jobs(AsyncResource):
    async def create(
        self,
        *,
        name: str,
        command: str,
        gpu_count: int | None = None,
        priority: int | None = None,
        environment: Mapping[str, str] | None = None,
        experiment_id: str | None = None,
        dataset_id: str | None = None,
        dataset_version: str | None = None,
        model_name: str | None = None,
        timeout_seconds: int | None = None,
        working_dir: str | None = None,
        max_retries: int | None = None,
    ) -> models.JobRead:
        """Submits a job; it answers at once with ``status == "pending"``."""
        body = _body(
            name=name,
            command=command,
            gpu_count=gpu_count,
            priority=priority,
            environment=dict(environment) if environment is not None else None,
            experiment_id=experiment_id,
            dataset_id=dataset_id,
            dataset_version=dataset_version,
            model_name=model_name,
            timeout_seconds=timeout_seconds,
            working_dir=working_dir,
            max_retries=max_retries,
        )
        response = await self._t.request("POST", "/api/jobs", json=body)
        return models.JobRead.model_validate_json(response.content)

    async def list(
        self, *, status: str | None = None, limit: int = 20, offset: int = 0
    ) -> models.PageJobRead:
        params = {"status": status, "limit": limit, "offset": offset}
        return await self._get(models.PageJobRead, "/api/jobs", params=params)

    async def get(self, job_id: str) -> models.JobDetail:
        return await self._get(models.JobDetail, "/api/jobs/{job_id}", path={"job_id": job_id})

    async def cancel(self, job_id: str) -> models.JobRead:
        """Cancels a job; :class:`~sparktrainer.errors.ConflictError` if it has ended."""
        response = await self._t.request(
            "POST", "/api/jobs/{job_id}/cancel", path={"job_id": job_id}
        )
        return models.JobRead.model_validate_json(response.content)

    async def logs(
        self,
        job_id: str,
        *,
        stream: str = "stdout",
        tail: int | None = None,
        offset: int | None = None,
    ) -> str:
        params = {"stream": stream, "tail": tail, "offset": offset}
        response = await self._t.request(
            "GET", "/api/jobs/{job_id}/logs", path={"job_id": job_id}, params=params
        )
        return response.text

    def follow_logs(
        self, job_id: str, *, stream: str = "stdout", offset: int = 0
    ) -> AsyncLogStream:
        """The log as it is written, until the job ends."""
        return AsyncLogStream(self._t, job_id, stream=stream, offset=offset)

    def stream_metrics(
        self, job_id: str, *, after: int = 0, max_reconnects: int = 10
    ) -> AsyncMetricStream:
        """Stored then live metric points, ending when the job ends (resumes on drops)."""
        return AsyncMetricStream(self._t, job_id, after=after, max_reconnects=max_reconnects)

    async def metrics(
        self,
        job_id: str,
        *,
        names: Sequence[str] | None = None,
        step_min: int | None = None,
        step_max: int | None = None,
        max_points: int | None = None,
    ) -> models.MetricsHistory:
        params = {
            "name": list(names) if names else None,
            "step_min": step_min,
            "step_max": step_max,
            "max_points": max_points,
        }
        return await self._get(
            models.MetricsHistory,
            "/api/jobs/{job_id}/metrics",
            path={"job_id": job_id},
            params=params,
        )

    async def log_metrics(
        self, job_id: str, points: Sequence[Mapping[str, Any]]
    ) -> models.MetricsAccepted:
        """Posts points ``{"step": 1, "metrics": {"loss": 0.4}}`` for a running job."""
        response = await self._t.request(
            "POST",
            "/api/jobs/{job_id}/metrics",
            path={"job_id": job_id},
            json={"points": [dict(p) for p in points]},
        )
        return models.MetricsAccepted.model_validate_json(response.content)

    async def wait(self, job_id: str, *, poll: float = 1.0) -> models.JobDetail:
        """Waits until the job has ended and answers it."""
        while True:
            job = await self.get(job_id)
            if job.status in ("completed", "failed", "cancelled"):
                return job
            await async_sleep(poll)


class Experiments(AsyncResource):
    async def create(
        self,
        *,
        name: str,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        metric_goals: Mapping[str, str] | None = None,
    ) -> models.ExperimentRead:
        body = _body(
            name=name,
            description=description,
            tags=dict(tags) if tags is not None else None,
            metric_goals=dict(metric_goals) if metric_goals is not None else None,
        )
        response = await self._t.request("POST", "/api/experiments", json=body)
        return models.ExperimentRead.model_validate_json(response.content)

    async def list(
        self,
        *,
        name: str | None = None,
        tags: Sequence[str] | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> models.PageExperimentRead:
        params = {"name": name, "tag": list(tags) if tags else None, "limit": limit}
        params["offset"] = offset
        return await self._get(models.PageExperimentRead, "/api/experiments", params=params)

    async def get(self, experiment_id: str) -> models.ExperimentDetail:
        return await self._get(
            models.ExperimentDetail,
            "/api/experiments/{experiment_id}",
            path={"experiment_id": experiment_id},
        )

    async def runs(
        self,
        experiment_id: str,
        *,
        sort: str | None = None,
        order: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> models.PageRunRead:
        params = {"sort": sort, "order": order, "limit": limit, "offset": offset}
        return await self._get(
            models.PageRunRead,
            "/api/experiments/{experiment_id}/runs",
            path={"experiment_id": experiment_id},
            params=params,
        )


class Datasets(AsyncResource):
    async def upload(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> models.DatasetDetail:
        """Uploads a file as a dataset (or its next version), streamed from disk.

        ``name`` defaults to the file's stem; ``progress(sent, total)`` is called as the
        file's bytes go out.
        """
        file = Path(path)
        body = Multipart({"name": name or file.stem}, file, file.name, progress)
        response = await self._t.request(
            "POST",
            "/api/datasets",
            headers={"Content-Type": body.content_type, "Content-Length": str(body.length)},
            content_factory=lambda: aiterate(body.chunks()),
        )
        return models.DatasetDetail.model_validate_json(response.content)

    async def list(
        self, *, name: str | None = None, limit: int = 20, offset: int = 0
    ) -> models.PageDatasetRead:
        params = {"name": name, "limit": limit, "offset": offset}
        return await self._get(models.PageDatasetRead, "/api/datasets", params=params)

    async def get(self, dataset_id: str) -> models.DatasetDetail:
        return await self._get(
            models.DatasetDetail, "/api/datasets/{dataset_id}", path={"dataset_id": dataset_id}
        )

    async def versions(self, dataset_id: str) -> models.DatasetVersionList:
        return await self._get(
            models.DatasetVersionList,
            "/api/datasets/{dataset_id}/versions",
            path={"dataset_id": dataset_id},
        )

    async def download(
        self,
        dataset_id: str,
        destination: str | Path,
        *,
        version: str = "latest",
        progress: ProgressCallback | None = None,
    ) -> Path:
        """Downloads a version to ``destination``, resuming where an earlier try stopped.

        Bytes go to ``<destination>.part`` first; an interrupted download (this call's or a
        previous process's) continues with a ``Range`` request. The whole file is checked
        against the server's md5 ``ETag`` before it is renamed into place.
        """
        return await _download(
            self._t,
            "/api/datasets/{dataset_id}/versions/{version}/download",
            {"dataset_id": dataset_id, "version": version},
            Path(destination),
            progress,
        )


class Models(AsyncResource):
    async def list(
        self,
        *,
        name: str | None = None,
        tag: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> models.PageModelRead:
        params = {"name": name, "tag": tag, "limit": limit, "offset": offset}
        return await self._get(models.PageModelRead, "/api/models", params=params)

    async def get(self, model_id: str) -> models.ModelDetail:
        return await self._get(
            models.ModelDetail, "/api/models/{model_id}", path={"model_id": model_id}
        )

    async def register(
        self, *, job_id: str, name: str | None = None, description: str | None = None
    ) -> models.ModelDetail:
        """Registers a completed job's output as a new model version."""
        body = _body(job_id=job_id, name=name, description=description)
        response = await self._t.request("POST", "/api/models", json=body)
        return models.ModelDetail.model_validate_json(response.content)

    async def tag(self, model_id: str, tag: str) -> models.ModelDetail:
        response = await self._t.request(
            "POST", "/api/models/{model_id}/tag", path={"model_id": model_id}, json={"tag": tag}
        )
        return models.ModelDetail.model_validate_json(response.content)

    async def untag(self, model_id: str, tag: str) -> models.ModelDetail:
        response = await self._t.request(
            "DELETE", "/api/models/{model_id}/tag/{tag}", path={"model_id": model_id, "tag": tag}
        )
        return models.ModelDetail.model_validate_json(response.content)

    async def download_file(
        self,
        model_id: str,
        file_path: str,
        destination: str | Path,
        *,
        progress: ProgressCallback | None = None,
    ) -> Path:
        """Downloads one file of a model version (resumable, md5-checked)."""
        return await _download(
            self._t,
            "/api/models/{model_id}/files/{path}",
            {"model_id": model_id, "path": file_path},
            Path(destination),
            progress,
        )


class Gpus(AsyncResource):
    async def list(self) -> list[models.GpuRead]:
        response = await self._t.request("GET", "/api/gpus")
        return [models.GpuRead.model_validate(item) for item in response.json()]


class SystemMetrics(AsyncResource):
    async def get(self) -> models.SystemMetricsRead:
        """CPU, memory, disk and network use of the API's machine."""
        return await self._get(models.SystemMetricsRead, "/api/metrics")


class Users(AsyncResource):
    async def me(self) -> models.UserRead:
        return await self._get(models.UserRead, "/api/auth/me")

    async def list(self, *, limit: int = 20, offset: int = 0) -> models.PageUserRead:
        params = {"limit": limit, "offset": offset}
        return await self._get(models.PageUserRead, "/api/users", params=params)

    async def get(self, user_id: str) -> models.UserRead:
        return await self._get(models.UserRead, "/api/users/{user_id}", path={"user_id": user_id})

    async def create(
        self,
        *,
        username: str,
        password: str,
        role: str | None = None,
        tier: str | None = None,
    ) -> models.UserRead:
        body = _body(username=username, password=password, role=role, tier=tier)
        response = await self._t.request("POST", "/api/users", json=body)
        return models.UserRead.model_validate_json(response.content)

    async def update(
        self,
        user_id: str,
        *,
        role: str | None = None,
        tier: str | None = None,
        is_active: bool | None = None,
        password: str | None = None,
    ) -> models.UserRead:
        body = _body(role=role, tier=tier, is_active=is_active, password=password)
        response = await self._t.request(
            "PATCH", "/api/users/{user_id}", path={"user_id": user_id}, json=body
        )
        return models.UserRead.model_validate_json(response.content)


class ApiKeys(AsyncResource):
    async def list(self) -> list[models.ApiKeyRead]:
        response = await self._t.request("GET", "/api/auth/api-keys")
        return [models.ApiKeyRead.model_validate(item) for item in response.json()]

    async def create(self, name: str) -> models.ApiKeyCreated:
        """Creates an API key; its secret (``.key``) is in this answer only."""
        response = await self._t.request("POST", "/api/auth/api-keys", json={"name": name})
        return models.ApiKeyCreated.model_validate_json(response.content)

    async def revoke(self, key_id: str) -> None:
        await self._t.request("DELETE", "/api/auth/api-keys/{key_id}", path={"key_id": key_id})


class Hpo(AsyncResource):
    """Hyperparameter studies: each trial runs ``command`` as a job, ``@@name@@`` replaced by
    the trial's (shell-quoted) value of parameter ``name``."""

    async def create(
        self,
        *,
        name: str,
        search_space: Mapping[str, Mapping[str, Any]],
        n_trials: int,
        command: str,
        objective: str | None = None,
        parallelism: int | None = None,
        metric: str | None = None,
        metric_value: str | None = None,
        gpu_count: int | None = None,
        sampler: str | None = None,
        seed: int | None = None,
        pruner: str | None = None,
        pruner_startup_trials: int | None = None,
        pruner_warmup_steps: int | None = None,
        experiment_id: str | None = None,
        dataset_id: str | None = None,
        dataset_version: str | None = None,
        environment: Mapping[str, str] | None = None,
        timeout_seconds: int | None = None,
    ) -> models.StudyDetail:
        body = _body(
            name=name,
            search_space={k: dict(v) for k, v in search_space.items()},
            n_trials=n_trials,
            command=command,
            objective=objective,
            parallelism=parallelism,
            metric=metric,
            metric_value=metric_value,
            gpu_count=gpu_count,
            sampler=sampler,
            seed=seed,
            pruner=pruner,
            pruner_startup_trials=pruner_startup_trials,
            pruner_warmup_steps=pruner_warmup_steps,
            experiment_id=experiment_id,
            dataset_id=dataset_id,
            dataset_version=dataset_version,
            environment=dict(environment) if environment is not None else None,
            timeout_seconds=timeout_seconds,
        )
        response = await self._t.request("POST", "/api/hpo/studies", json=body)
        return models.StudyDetail.model_validate_json(response.content)

    async def list(self, *, limit: int = 20, offset: int = 0) -> models.PageStudyRead:
        params = {"limit": limit, "offset": offset}
        return await self._get(models.PageStudyRead, "/api/hpo/studies", params=params)

    async def get(self, study_id: str) -> models.StudyDetail:
        return await self._get(
            models.StudyDetail, "/api/hpo/studies/{study_id}", path={"study_id": study_id}
        )

    async def cancel(self, study_id: str) -> models.StudyDetail:
        response = await self._t.request(
            "POST", "/api/hpo/studies/{study_id}/cancel", path={"study_id": study_id}
        )
        return models.StudyDetail.model_validate_json(response.content)


class AsyncSparkTrainerClient:
    """The SparkTrainer API.

    ``AsyncSparkTrainerClient(base_url="http://localhost:5001", api_key="stk_…")``, or
    ``username=``/``password=`` (tokens are then obtained and refreshed by the client).
    ``base_url`` defaults to ``$SPARKTRAINER_URL``. ``max_retries`` bounds the retries of
    429/503 answers and connection failures (0 turns them off).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        url = base_url or env_base_url()
        if url is None:
            raise ValueError("base_url is required (or set SPARKTRAINER_URL)")
        self._transport = AsyncTransport(
            url,
            AsyncAuth(api_key=api_key, username=username, password=password),
            timeout=timeout,
            retry=retry or RetryPolicy(max_retries=max_retries),
            http_client=http_client,
        )
        self.jobs = Jobs(self._transport)
        self.experiments = Experiments(self._transport)
        self.datasets = Datasets(self._transport)
        self.models = Models(self._transport)
        self.gpus = Gpus(self._transport)
        self.metrics = SystemMetrics(self._transport)
        self.users = Users(self._transport)
        self.api_keys = ApiKeys(self._transport)
        self.hpo = Hpo(self._transport)

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    @property
    def access_token(self) -> str | None:
        """The current access token when logged in with a password (None with an API key)."""
        return self._transport.auth.tokens.access_token

    async def login(self) -> None:
        """Obtains tokens now rather than at the first call (password logins only)."""
        await self._transport.auth.header(self._transport, force=True)

    async def logout(self) -> None:
        """Revokes this client's refresh-token family (password logins only)."""
        tokens = self._transport.auth.tokens
        if tokens.refresh_token is not None:
            await self._transport.request(
                "POST", "/api/auth/logout", json={"refresh_token": tokens.refresh_token}
            )
            tokens.access_token = tokens.refresh_token = None

    async def health(self) -> dict[str, Any]:
        response = await self._transport.send_raw("GET", "/healthz")
        result: dict[str, Any] = response.json()
        return result

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncSparkTrainerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def _download(
    transport: AsyncTransport,
    route: str,
    path: dict[str, str],
    destination: Path,
    progress: ProgressCallback | None,
) -> Path:
    part = destination.with_name(destination.name + ".part")
    failures = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            async with transport.stream("GET", route, path=path, headers=headers) as response:
                resumed = response.status_code == 206
                done = have if resumed else 0
                total = _total_size(response, done)
                expected = etag_md5(response.headers.get("ETag"))
                with open_part(part, append=resumed) as out:
                    async for chunk in response.aiter_bytes(CHUNK):
                        out.write(chunk)
                        done += len(chunk)
                        failures = 0
                        if progress is not None:
                            progress(done, total)
        except RangeNotSatisfiableError:
            # The part file is already whole (or longer than the file): start over once it
            # fails the check below.
            expected = None
        except httpx.TransportError as exc:
            failures += 1
            delay = transport.retry.delay(failures)
            if delay is None:
                raise StreamError(f"download of {destination.name} lost: {exc}") from exc
            await async_sleep(delay)
            continue
        if expected is not None and _md5(part) != expected:
            part.unlink()
            raise StreamError(f"{destination.name}: content does not match the server's md5")
        if expected is None and have:
            # Without an ETag to compare, a 416 cannot be trusted: fetch the whole file.
            part.unlink()
            have = 0
            continue
        part.replace(destination)
        return destination


def _total_size(response: httpx.Response, done: int) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return done + int(length) if length and length.isdigit() else None


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
