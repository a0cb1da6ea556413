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

import importlib.util
import logging
import os
import pwd
import shlex
import shutil
import site
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from spark_trainer.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_ROOT_JOB_USER = "nobody"
CHECK_TIMEOUT_SECONDS = 30.0
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
# Under the data directory: the interpreter jobs run when the job user cannot run the
# server's own (see ``JobUser.checked``).
JOB_PYTHON_DIR = "job-python"
SDK_PROBE = "import sparktrainer"


class JobUserError(Exception):
    """The configured job user cannot run jobs; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class JobUser:
    """The OS user jobs run as. ``name`` None: the server's own user (no switch)."""

    name: str | None = None
    uid: int | None = None
    gid: int | None = None
    # The interpreter a job's ``PATH`` starts with, which also runs the executor's shim.
    python: str = sys.executable
    configured: bool = False

    @property
    def switches(self) -> bool:
        return self.name is not None

    @classmethod
    def from_settings(cls, settings: Settings, *, quiet: bool = False) -> JobUser:
        """``quiet``: without the warning that the default user is missing (for a caller
        that only asks whether jobs switch users; the engine's start says it once)."""
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
            if not quiet:
                logger.warning("no user %r to run jobs as; jobs run as the server's user", name)
            return cls()
        if entry.pw_uid == os.geteuid():
            return cls()
        return cls(name=name, uid=entry.pw_uid, gid=entry.pw_gid, configured=configured)

    def checked(self, data_dir: Path, jobs_dir: Path) -> JobUser:
        """Checks at start-up that this user can reach the job directories, run the
        server's interpreter and import the SDK, and finds a way where it cannot.

        The usual obstacle is an interpreter under a 0700 home (pyenv or a virtual
        environment under ``/root``). Then jobs get ``DATA_DIR/job-python``: a virtual
        environment on a system interpreter of the same Python version, whose site
        directory points at the server's packages, so a job's ``python`` imports the same
        SDK and libraries, as the job user, without opening the home directory.

        Where nothing works, the message says what to do. The isolation stays: jobs still
        run as this user with any interpreter it can run (commands work; ones importing the
        SDK fail until fixed). Only where it cannot reach the job directories or run any
        interpreter at all does the default user give way to the server's own (logged); a
        configured one is then a start-up error.
        """
        if not self.switches:
            return self
        if self._run(["/bin/sh", "-c", 'cd "$1"', "sh", str(jobs_dir)]) is not None:
            self._give_up(
                f"cannot enter {jobs_dir}. Fix: put SPARKTRAINER_DATA_DIR where "
                f"'{self.name}' can pass through every parent directory (not under a 0700 home)."
            )
            return JobUser()
        problem = self._probe(sys.executable, SDK_PROBE)
        if problem is None:
            return self
        layered = _layered_python(data_dir / JOB_PYTHON_DIR)
        layered_problem = self._probe(layered, SDK_PROBE) if layered is not None else None
        if layered is not None and layered_problem is None:
            logger.info(
                "jobs run as %r with %s (the server's interpreter is out of its reach)",
                self.name,
                layered,
            )
            return replace(self, python=layered)
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        stand_in = (
            f"nor {layered_problem}"
            if layered_problem is not None
            else f"and no {version} it can run was found to stand in"
        )
        fix = (
            f"cannot {problem}, {stand_in}. Fix: "
            "install SparkTrainer where that user can read it (a virtual environment outside "
            f"a 0700 home directory, e.g. under /opt), or install {version} system-wide, or set "
            "SPARKTRAINER_JOB_USER to a user that can run it."
        )
        fallback = next(
            (
                candidate
                for candidate in (layered, shutil.which("python3", path=SYSTEM_PATH))
                if candidate is not None and self._probe(candidate, "pass") is None
            ),
            None,
        )
        if fallback is None:
            self._give_up(fix)
            return JobUser()
        logger.error(
            "Jobs run as '%s' (SPARKTRAINER_JOB_USER), which %s Job commands still run; "
            "ones that import the SDK fail.",
            self.name,
            fix,
        )
        return replace(self, python=fallback)

    def _give_up(self, fix: str) -> None:
        """No way to run jobs as this user: a start-up error where it was chosen
        explicitly, else jobs run as the server's own user, said loudly."""
        message = f"Jobs run as '{self.name}' (SPARKTRAINER_JOB_USER), which {fix}"
        if self.configured:
            raise JobUserError(message)
        logger.error(
            "%s Until then jobs run as the server's own user and can read its data "
            "directory; set SPARKTRAINER_JOB_USER=root to accept that and silence this.",
            message,
        )

    def _probe(self, python: str, code: str) -> str | None:
        """None if this user can run ``python -c code``, else what it cannot do."""
        return self._run([python, "-c", code])

    def _run(self, argv: list[str]) -> str | None:
        try:
            result = subprocess.run(
                argv,
                user=self.uid,
                group=self.gid,
                extra_groups=[],
                env={"PATH": SYSTEM_PATH},
                cwd="/",
                capture_output=True,
                timeout=CHECK_TIMEOUT_SECONDS,
                check=False,
            )
        except OSError as exc:
            return f"run {argv[0]} ({exc.strerror or exc})"
        except subprocess.TimeoutExpired:
            return f"run {argv[0]} within {CHECK_TIMEOUT_SECONDS:.0f} s"
        if result.returncode != 0:
            last = result.stderr.decode(errors="replace").strip().splitlines()[-1:]
            return f"run `{shlex.join(argv)}` ({last[0] if last else result.returncode})"
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


def _layered_python(directory: Path) -> str | None:
    """Makes ``directory`` a virtual environment on a system interpreter of the server's
    Python version whose site directory adds the server's own, so it imports what the
    server does (the same minor version keeps compiled extensions loadable), and holds a
    copy of the SDK. Returns its ``python``, or None when there is no such interpreter.
    """
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = shutil.which(version, path=SYSTEM_PATH)
    if base is None:
        return None
    bin_dir = directory / "bin"
    site_dir = directory / "lib" / version / "site-packages"
    site_dir.mkdir(parents=True, exist_ok=True)
    bin_dir.mkdir(exist_ok=True)
    _write(
        directory / "pyvenv.cfg",
        f"home = {Path(base).parent}\ninclude-system-site-packages = false\n",
    )
    # addsitedir, not a plain path line: the server's own .pth files (editable installs)
    # must be processed too.
    _write(
        site_dir / "sparktrainer-server.pth",
        "".join(f"import site; site.addsitedir({path!r})\n" for path in site.getsitepackages()),
    )
    # The SDK itself (small, standard library only for `log`) is copied: it then imports
    # even where the server's site directory is out of the job user's reach too.
    sdk = importlib.util.find_spec("sparktrainer")
    if sdk is not None and sdk.origin is not None:
        target = site_dir / "sparktrainer"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(
            Path(sdk.origin).parent, target, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in ("python", "python3", version):
        link = bin_dir / name
        tmp = bin_dir / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(base)
        tmp.replace(link)
    for path in (directory, directory / "lib", directory / "lib" / version, site_dir, bin_dir):
        path.chmod(0o755)
    return str(bin_dir / "python")


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o644)
    tmp.replace(path)


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
    python: str,
) -> dict[str, str]:
    """The environment a job's command sees: allowlisted server variables, then the
    job's own ``environment``, then the platform's variables, which win (a job cannot
    choose its GPUs by setting ``CUDA_VISIBLE_DEVICES`` itself).

    ``PATH`` starts with the directory of ``python`` (the job user's interpreter, see
    ``JobUser.checked``), so ``python`` in a job is one that has the SDK; the job's
    ``environment`` may replace it.
    """
    env = {name: base[name] for name in allow if name in base and name != "PATH"}
    interpreter_dir = str(Path(python).parent)
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
