"""Runs one job's command and records how it ended. Standard library only.

The local executor runs this file's source
(``python -I -S -c SOURCE EXIT_FILE COMMAND WORKING_DIR BARRIER_FD GO_FD``), as the job's user,
as the leader of the job's new process group. It enters WORKING_DIR, runs
``/bin/sh -c COMMAND`` there in that group, waits for it, and writes its exit status to
EXIT_FILE. The file is what lets a restarted server learn how a job ended while it was
down. SIGTERM sent to the group reaches the command directly; the shim notes it and keeps
waiting, so a command that traps SIGTERM to save a checkpoint can finish doing so.

BARRIER_FD is the write end of a pipe the executor reads until it closes: closed empty
once the command runs in WORKING_DIR, or after the reason the shim could not enter it.
The shim enters it itself, as the job's user: ``Popen(cwd=...)`` enters it before
switching users, so a root server would enter a 0700 directory that the command then
cannot use. The pipe closes only once the command runs so that a SIGTERM sent as soon as
the launch returns reaches the command: closed any earlier, the signal could reach the
shim alone, and the command it then started ran on until the SIGKILL.

GO_FD is the read end of a pipe the executor writes ``go`` to, then closes, once it has
recorded where this process is (its handle, beside the job's directory). The command
starts only after that: a server killed in between leaves no command running that no
restarted server could find. Closed without ``go``, the shim exits without running it.
"""

import json
import os
import signal
import subprocess
import sys


def main() -> int:
    exit_file, command, working_dir, barrier, go = sys.argv[1:6]
    terminated = False

    def note_termination(signum: int, frame: object) -> None:
        nonlocal terminated
        terminated = True

    signal.signal(signal.SIGTERM, note_termination)
    try:
        try:
            os.chdir(working_dir)
        except OSError as exc:
            os.write(int(barrier), (exc.strerror or str(exc)).encode())
            return 1
        released = b""
        while chunk := os.read(int(go), 16):
            released += chunk
        if released != b"go":
            return 1
        # The handler is a Python function, so the exec'd command starts with SIGTERM at
        # its default disposition, not inheriting the shim's.
        child = subprocess.Popen(["/bin/sh", "-c", command])
    finally:
        os.close(int(barrier))
    returncode = child.wait()
    tmp = exit_file + ".tmp"
    with open(tmp, "w") as handle:  # noqa: PTH123 - stdlib-only and fast to start
        json.dump({"returncode": returncode, "terminated": terminated}, handle)
    os.replace(tmp, exit_file)  # noqa: PTH105 - stdlib-only and fast to start
    return returncode if returncode >= 0 else 128 - returncode


if __name__ == "__main__":
    sys.exit(main())
