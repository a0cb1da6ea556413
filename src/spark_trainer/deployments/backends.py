"""What each serving backend runs: its command line, its health route, its files.

A replica is a job whose command is built here from the model's files on disk, so the
command a user reads in the job's details is exactly what runs. The external backends
(vLLM, TGI, Triton) are executables on the node; SparkTrainer never depends on their
Python packages (their wheels pin their own torch), it only calls them.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

LISTEN_HOST = "127.0.0.1"  # replicas are reached through the proxy only
# The job's own `python`: its PATH starts with an interpreter the job user can run, which
# the server's (say under a 0700 home) may not be.
JOB_PYTHON = "python"
TRITON_MODEL_VERSION = "1"


class Backend(StrEnum):
    TRANSFORMERS = "transformers"
    VLLM = "vllm"
    TGI = "tgi"
    TRITON = "triton"


EXECUTABLES: dict[Backend, str] = {
    Backend.VLLM: "vllm",
    Backend.TGI: "text-generation-launcher",
    Backend.TRITON: "tritonserver",
}

HEALTH_PATHS: dict[Backend, str] = {
    Backend.TRANSFORMERS: "/health",
    Backend.VLLM: "/health",
    Backend.TGI: "/health",
    Backend.TRITON: "/v2/health/ready",
}

# How long a replica may take from its process starting to passing its health check
# before it counts as failed: vLLM and TGI compile kernels and load large weights.
STARTUP_SECONDS: dict[Backend, float] = {
    Backend.TRANSFORMERS: 300.0,
    Backend.VLLM: 1200.0,
    Backend.TGI: 1200.0,
    Backend.TRITON: 1200.0,
}


@dataclass(frozen=True, slots=True)
class ReplicaFiles:
    """Where a replica's model lives on its node, and how it is served."""

    model_dir: Path
    # A LoRA adapter's base model; None for a full model.
    base_model_dir: Path | None
    served_name: str
    port: int
    gpu_count: int
    # A directory of the deployment's own (Triton's model repository goes there).
    work_dir: Path


def missing_executable(backend: Backend, search_path: str | None = None) -> str | None:
    """The executable a backend needs when it is not on ``search_path`` (default: PATH)."""
    name = EXECUTABLES.get(backend)
    if name is None:
        return None
    return None if shutil.which(name, path=search_path or os.environ.get("PATH")) else name


def command(backend: Backend, files: ReplicaFiles, *, python: str = JOB_PYTHON) -> str:
    """The shell command line of one replica (jobs run ``/bin/sh -c`` on it)."""
    return shlex.join(argv(backend, files, python=python))


def argv(backend: Backend, files: ReplicaFiles, *, python: str = JOB_PYTHON) -> list[str]:
    port = str(files.port)
    name = files.served_name
    model = str(files.model_dir)
    base = str(files.base_model_dir) if files.base_model_dir else None
    if backend == Backend.TRANSFORMERS:
        args = [python, "-m", "spark_trainer.deployments.server", "--model", model]
        if base:
            args += ["--base-model", base]
        return [*args, "--served-model-name", name, "--host", LISTEN_HOST, "--port", port]
    if backend == Backend.VLLM:
        # An adapter is served as a LoRA module on its base, under the deployment's name.
        args = ["vllm", "serve", base or model]
        if base:
            args += ["--enable-lora", "--lora-modules", f"{name}={model}"]
        else:
            args += ["--served-model-name", name]
        return [
            *args,
            "--host",
            LISTEN_HOST,
            "--port",
            port,
            "--tensor-parallel-size",
            str(files.gpu_count),
        ]
    if backend == Backend.TGI:
        args = ["text-generation-launcher", "--model-id", base or model]
        if base:
            args += ["--lora-adapters", f"{name}={model}"]
        return [
            *args,
            "--hostname",
            LISTEN_HOST,
            "--port",
            port,
            "--num-shard",
            str(files.gpu_count),
        ]
    return [
        "tritonserver",
        "--model-repository",
        str(triton_repository(files)),
        "--http-address",
        LISTEN_HOST,
        "--http-port",
        port,
        # One port per replica: the gRPC and metrics listeners would need ports of their own.
        "--allow-grpc=false",
        "--allow-metrics=false",
    ]


def triton_repository(files: ReplicaFiles) -> Path:
    return files.work_dir / "triton"


def write_triton_repository(files: ReplicaFiles) -> Path:
    """Lays out a model repository for Triton's vLLM backend::

    triton/<name>/config.pbtxt      backend "vllm", one model instance
    triton/<name>/1/model.json      vLLM engine arguments (model path, tensor parallel)
    """
    root = triton_repository(files)
    version = root / files.served_name / TRITON_MODEL_VERSION
    version.mkdir(parents=True, exist_ok=True)
    config = (
        'backend: "vllm"\n'
        "\n"
        "# vLLM shards the model over the instance's GPUs itself (tensor_parallel_size).\n"
        "instance_group [\n"
        "  {\n"
        "    count: 1\n"
        "    kind: KIND_MODEL\n"
        "  }\n"
        "]\n"
    )
    engine: dict[str, object] = {
        "model": str(files.base_model_dir or files.model_dir),
        "tensor_parallel_size": files.gpu_count,
        "gpu_memory_utilization": 0.9,
        "disable_log_requests": True,
    }
    if files.base_model_dir is not None:
        engine.update(enable_lora=True)
        (version / "multi_lora.json").write_text(
            json.dumps({files.served_name: str(files.model_dir)}, indent=2) + "\n"
        )
    (root / files.served_name / "config.pbtxt").write_text(config)
    (version / "model.json").write_text(json.dumps(engine, indent=2) + "\n")
    return root
