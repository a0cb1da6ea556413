"""Where a job's files live inside its directory, and how its token looks."""

JOB_TOKEN_PREFIX = "stj_"  # noqa: S105 - a prefix, not a secret
METRICS_FILE = "metrics.jsonl"
OUTPUT_DIR = "output"
WORK_DIR = "work"
# A job may write one line here saying why it failed; it becomes the end of status_reason.
REASON_FILE = "reason.txt"
