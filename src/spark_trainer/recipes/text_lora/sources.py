"""Where the base model and the dataset come from.

The base model is a local Hugging Face directory, a registered SparkTrainer model
(``model-…``: its files are fetched through the API with the job's own token, checked
against their md5 and cached under ``.sparktrainer/models/<id>`` in the working
directory), or else a hub id that ``from_pretrained`` resolves as usual. The dataset is a
path, a registered dataset (``dataset.id``: fetched the same way into
``.sparktrainer/datasets/<id>/``), or the job's ``SPARKTRAINER_DATASET_PATH``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from spark_trainer.recipes.text_lora.config import RecipeConfig
from spark_trainer.recipes.text_lora.errors import RecipeError

MODEL_ID = re.compile(r"^model-[0-9a-f]{16}$")
CACHE_DIR = Path(".sparktrainer") / "models"
DATASET_CACHE_DIR = Path(".sparktrainer") / "datasets"
# The recipe reads records by file suffix; formats it cannot read are refused in read_records.
_SUFFIXES = {"jsonl": ".jsonl", "json": ".json", "text": ".txt"}
_PATH_LIKE = ("/", "./", "../", "~")
DOWNLOAD_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class BaseModel:
    reference: str
    """What the config named; recorded in the adapter so a loader can find the base."""
    location: str
    """What ``from_pretrained`` gets: a local directory or a hub id."""
    registered_id: str | None


def dataset_path(config: RecipeConfig) -> Path:
    if config.dataset.path:
        return Path(config.dataset.path).expanduser()
    if config.dataset.id:
        return _fetch_dataset(config.dataset.id, config.dataset.version)
    from_job = os.environ.get("SPARKTRAINER_DATASET_PATH")
    if from_job:
        return Path(from_job)
    raise RecipeError(
        "no dataset: set dataset.path in the config, or submit the job with a dataset_id "
        "(the job then gets SPARKTRAINER_DATASET_PATH)"
    )


def resolve_base_model(config: RecipeConfig) -> BaseModel:
    name = config.base_model
    if MODEL_ID.match(name):
        return BaseModel(name, str(_fetch_registered(name)), name)
    local = Path(name).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise RecipeError(
                f"base model '{name}' is not a Hugging Face model directory (it has no config.json)"
            )
        return BaseModel(name, str(local), None)
    if name.startswith(_PATH_LIKE) or name.count("/") > 1:
        raise RecipeError(f"base model directory '{name}' not found (in {Path.cwd()})")
    return BaseModel(name, name, None)


def _api(what: str) -> tuple[str, dict[str, str]]:
    url = os.environ.get("SPARKTRAINER_API_URL")
    token = os.environ.get("SPARKTRAINER_JOB_TOKEN")
    if not url or not token:
        raise RecipeError(
            f"a registered {what} is fetched through the SparkTrainer API, which "
            "needs SPARKTRAINER_API_URL and SPARKTRAINER_JOB_TOKEN: run the recipe as a job"
        )
    return url.rstrip("/"), {"Authorization": f"Bearer {token}"}


def _get_json(client: Any, path: str, what: str, not_found: str) -> dict[str, Any]:
    """The API's JSON answer to a GET, or a RecipeError saying what was not there."""
    response = client.get(path)
    if response.status_code == 404:
        raise RecipeError(not_found)
    if response.status_code != 200:
        raise RecipeError(f"{what}: the API answered {response.status_code}: {response.text[:200]}")
    answer: dict[str, Any] = response.json()
    return answer


def _fetch_dataset(dataset_id: str, version: str) -> Path:
    """A registered dataset version's file, md5-checked and cached by version (a version's
    bytes never change; ``latest`` is looked up each run)."""
    import httpx

    url, headers = _api("dataset (dataset.id)")
    with httpx.Client(base_url=url, headers=headers, timeout=60.0) as client:
        versions: list[dict[str, Any]] = _get_json(
            client,
            f"/api/datasets/{dataset_id}/versions",
            f"dataset '{dataset_id}'",
            f"key 'dataset.id': dataset '{dataset_id}' not found",
        )["versions"]
        chosen = (
            versions[-1]
            if version == "latest" and versions
            else next((v for v in versions if v["version"] == version), None)
        )
        if chosen is None:
            raise RecipeError(
                f"key 'dataset.version': dataset '{dataset_id}' has no version '{version}'"
            )
        suffix = _SUFFIXES.get(chosen["format"])
        if suffix is None:
            raise RecipeError(
                f"dataset '{dataset_id}' {chosen['version']} is {chosen['format']}; the recipe "
                "reads JSONL, JSON or text"
            )
        target = Path.cwd() / DATASET_CACHE_DIR / dataset_id / f"{chosen['version']}{suffix}"
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.part")
        try:
            _download_file(
                client,
                f"/api/datasets/{dataset_id}/versions/{chosen['version']}/download",
                staging,
                chosen["hash"],
                f"dataset '{dataset_id}' {chosen['version']}",
            )
            staging.rename(target)
        finally:
            staging.unlink(missing_ok=True)
    return target


def _fetch_registered(model_id: str) -> Path:
    target = Path.cwd() / CACHE_DIR / model_id
    if (target / "config.json").is_file():
        return target  # versions never change once registered, so a cached copy is good
    import httpx

    url, headers = _api("model (model-…)")
    with httpx.Client(base_url=url, headers=headers, timeout=60.0) as client:
        files: list[dict[str, Any]] = _get_json(
            client,
            f"/api/models/{model_id}",
            f"base model '{model_id}'",
            f"base model '{model_id}' not found in the model registry",
        )["files"]
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{model_id}-", dir=target.parent))
        try:
            for entry in files:
                _download(client, model_id, entry, staging)
            if not (staging / "config.json").is_file():
                raise RecipeError(
                    f"base model '{model_id}' is not a Hugging Face model (no config.json)"
                )
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _download(client: Any, model_id: str, entry: dict[str, Any], root: Path) -> None:
    relative = PurePosixPath(entry["path"])
    if relative.is_absolute() or ".." in relative.parts:
        raise RecipeError(f"base model '{model_id}': unsafe file path {entry['path']!r}")
    destination = root.joinpath(*relative.parts)
    destination.parent.mkdir(parents=True, exist_ok=True)
    _download_file(
        client,
        f"/api/models/{model_id}/files/{relative.as_posix()}",
        destination,
        entry["hash"],
        f"base model '{model_id}': {relative}",
    )


def _download_file(client: Any, url: str, destination: Path, md5: str, what: str) -> None:
    digest = hashlib.md5(usedforsecurity=False)
    with client.stream("GET", url) as response, destination.open("wb") as handle:
        if response.status_code != 200:
            raise RecipeError(f"{what}: the download answered {response.status_code}")
        for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
            digest.update(chunk)
            handle.write(chunk)
    if digest.hexdigest() != md5:
        raise RecipeError(f"{what} arrived corrupted (md5 mismatch)")
