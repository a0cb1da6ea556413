"""Where a job's files live inside its directory, and how its token looks."""

JOB_TOKEN_PREFIX = "stj_"  # noqa: S105 - a prefix, not a secret
METRICS_FILE = "metrics.jsonl"
OUTPUT_DIR = "output"
WORK_DIR = "work"
# A job may write one line here saying why it failed; it becomes the end of status_reason.
REASON_FILE = "reason.txt"
# The executor's handle (beside the job's directory, as `<job id>.handle.json`), written
# as soon as the process exists: the database learns it a moment later, and a server
# killed in between must still find (not requeue) the process.
HANDLE_FILE = "handle.json"
