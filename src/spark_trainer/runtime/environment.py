"""What a job runs as, and what it sees: its OS user, its directory, its environment.

A job must not be able to become the server. When the server runs as root, jobs run as
``SPARKTRAINER_JOB_USER`` (default ``nobody``): their directories belong to that user,
while the data directory's own files (database, secret key) stay the server's, mode 0600,
in a directory the job user may traverse but not list. A job's environment is built from
an allowlist of the server's variables (``SPARKTRAINER_JOB_ENV_ALLOWLIST``), the
platform's variables and the job's own ``environment``; nothing else of the server's
environment (database URLs, cloud keys, ``PGPASSWORD``) reaches it.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from spark_trainer.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_ROOT_JOB_USER = "nobody"
CHECK_TIMEOUT_SECONDS = 30.0


class JobUserError(Exception):
    """The configured job user cannot run jobs; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class JobUser:
    """The OS user jobs run as. ``name`` None: the server's own user (no switch)."""

    name: str | None = None
    uid: int | None = None
    gid: int | None = None
    # The interpreter that runs the executor's shim (stdlib only) as this user.
    shim_python: str = sys.executable
    configured: bool = False

    @property
    def switches(self) -> bool:
        return self.name is not None

    @classmethod
    def from_settings(cls, settings: Settings) -> JobUser:
        name = settings.job_user
        configured = name is not None
        if name is None:
            if os.geteuid() != 0:
                return cls()
            name = DEFAULT_ROOT_JOB_USER
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            if configured:
                raise JobUserError(
                    f"SPARKTRAINER_JOB_USER={name}: no such user. Create it "
                    f"(useradd --system {name}) or set SPARKTRAINER_JOB_USER to an existing one."
                ) from None
            logger.warning("no user %r to run jobs as; jobs run as the server's user", name)
            return cls()
        if entry.pw_uid == os.geteuid():
            return cls()
        return cls(name=name, uid=entry.pw_uid, gid=entry.pw_gid, configured=configured)

    def checked(self) -> JobUser:
        """Checks at start-up that this user can run the server's interpreter and import
        the SDK; says plainly what to do where it cannot.

        Configured explicitly: jobs still run as this user (the shim falls back to a
        system ``python3`` it can run), and the message says why SDK jobs will fail. Not
        configured (the root default): jobs run as the server's user, with the message.
        """
        if not self.switches:
            return self
        problem = self._probe(sys.executable, "import sparktrainer")
        if problem is None:
            return self
        fix = (
            f"Jobs run as '{self.name}' (SPARKTRAINER_JOB_USER), which cannot {problem}. "
            f"Fix: install SparkTrainer where '{self.name}' can read it (a virtual "
            "environment outside a 0700 home directory, e.g. under /opt), or set "
            "SPARKTRAINER_JOB_USER to a user that can run it."
        )
        if not self.configured:
            logger.error(
                "%s Until then jobs run as the server's own user and can read its data "
                "directory; set SPARKTRAINER_JOB_USER=root to accept that and silence this.",
                fix,
            )
            return JobUser()
        fallback = shutil.which("python3", path="/usr/bin:/bin:/usr/local/bin")
        if fallback is None or self._probe(fallback, "pass") is not None:
            raise JobUserError(fix)
        logger.error("%s Job commands still run; ones that use the SDK will fail.", fix)
        return JobUser(self.name, self.uid, self.gid, shim_python=fallback, configured=True)

    def _probe(self, python: str, code: str) -> str | None:
        try:
            result = subprocess.run(
                [python, "-c", code],
                user=self.uid,
                group=self.gid,
                extra_groups=[],
                env={"PATH": "/usr/bin:/bin"},
                cwd="/",
                capture_output=True,
                timeout=CHECK_TIMEOUT_SECONDS,
                check=False,
            )
        except OSError as exc:
            return f"run {python} ({exc.strerror or exc})"
        except subprocess.TimeoutExpired:
            return f"run {python} within {CHECK_TIMEOUT_SECONDS:.0f} s"
        if result.returncode != 0:
            last = result.stderr.decode(errors="replace").strip().splitlines()[-1:]
            return f"run `{python} -c '{code}'` ({last[0] if last else result.returncode})"
        return None

    def protect_data_dir(self, data_dir: Path, jobs_dir: Path, database_file: Path | None) -> None:
        """The job user may pass through the data directory to its job's directory, but
        not list it or read the server's own files: the database, the secret key."""
        if not self.switches:
            return
        for directory in (data_dir, jobs_dir):
            directory.chmod(0o711)
        server_files = [p for p in data_dir.iterdir() if p.is_file() and not p.is_symlink()]
        if database_file is not None:
            server_files.extend(
                database_file.with_name(database_file.name + suffix)
                for suffix in ("", "-wal", "-shm", "-journal")
            )
        for path in server_files:
            if path.exists():
                path.chmod(0o600)

    def own(self, paths: Iterable[Path]) -> None:
        if self.uid is None or self.gid is None:
            return
        for path in paths:
            os.chown(path, self.uid, self.gid)


def prepare_job_dir(
    job_dir: Path, directories: Iterable[Path], metrics_file: Path, user: JobUser
) -> None:
    """Creates a job's directory, its subdirectories and metrics file, owned by the job's
    user (0700, so other jobs cannot read each other's files)."""
    job_dir.mkdir(parents=True, exist_ok=True)
    made = [job_dir]
    for directory in directories:
        directory.mkdir(exist_ok=True)
        made.append(directory)
    metrics_file.touch()
    made.append(metrics_file)
    user.own(made)
    if user.switches:
        job_dir.chmod(0o700)


def job_environment(
    *,
    base: Mapping[str, str],
    requested: Mapping[str, str],
    job_id: str,
    gpus: tuple[int, ...],
    output_dir: Path,
    metrics_file: Path,
    api_url: str,
    token: str,
    allow: Iterable[str],
    home: Path | None,
) -> dict[str, str]:
    """The environment a job's command sees: allowlisted server variables, then the
    job's own ``environment``, then the platform's variables, which win (a job cannot
    choose its GPUs by setting ``CUDA_VISIBLE_DEVICES`` itself).

    ``PATH`` starts with the server interpreter's directory, so ``python`` in a job is the
    one that has the SDK; the job's ``environment`` may replace it.
    """
    env = {name: base[name] for name in allow if name in base and name != "PATH"}
    interpreter_dir = str(Path(sys.executable).parent)
    server_path = [p for p in base.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(":") if p]
    env["PATH"] = ":".join([interpreter_dir, *(p for p in server_path if p != interpreter_dir)])
    # A job running as another user gets its work directory as its home (caches land
    # there); one running as the server's user keeps the server's.
    if home is not None:
        env["HOME"] = str(home)
    elif "HOME" in base:
        env["HOME"] = base["HOME"]
    env.update(requested)
    env.update(
        {
            "SPARKTRAINER_JOB_ID": job_id,
            "SPARKTRAINER_OUTPUT_DIR": str(output_dir),
            "SPARKTRAINER_METRICS_FILE": str(metrics_file),
            "SPARKTRAINER_API_URL": api_url,
            "SPARKTRAINER_JOB_TOKEN": token,
            # NVML numbers GPUs in PCI bus order; CUDA must use the same numbering.
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env
