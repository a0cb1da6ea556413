"""A model version's files laid out as a directory on the node, for a backend to load.

The artifact store keeps files by content hash; a serving backend wants a Hugging Face
directory (``config.json``, weights, tokenizer). The directory is made of symbolic links
to the store's read-only blobs, built aside and renamed into place, so a replica never
sees a half-built model and two processes building it at once both end with one copy.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path, PurePosixPath

from spark_trainer.models import ModelVersion
from spark_trainer.settings import Settings
from spark_trainer.storage.base import ArtifactStore

COMPLETE_MARKER = ".sparktrainer-complete"


def deployment_dir(settings: Settings, deployment_id: str) -> Path:
    return settings.data_dir / "deployments" / deployment_id


def model_dir(settings: Settings, model_id: str) -> Path:
    return settings.data_dir / "deployments" / "models" / model_id


def materialize(store: ArtifactStore, model: ModelVersion, target: Path) -> Path:
    if (target / COMPLETE_MARKER).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    building = target.with_name(f"{target.name}.building-{secrets.token_hex(4)}")
    try:
        for model_file in model.files:
            relative = PurePosixPath(model_file.path)
            # The registry stores normalised relative paths; never trust that blindly.
            if relative.is_absolute() or ".." in relative.parts or not relative.parts:
                raise ValueError(f"unsafe file path in model {model.id}: {model_file.path!r}")
            destination = building.joinpath(*relative.parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            local = store.local_path(model_file.hash)
            if local is not None:
                destination.symlink_to(local)
            else:
                with destination.open("wb") as handle:
                    for chunk in store.open_range(model_file.hash):
                        handle.write(chunk)
        (building / COMPLETE_MARKER).touch()
        try:
            building.rename(target)
        except OSError:
            if not (target / COMPLETE_MARKER).exists():
                raise
            # Another process built the same directory first; its copy is as good.
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return target
