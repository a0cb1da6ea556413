"""What every benchmark returns, how the runner prints it, and how a benchmark stops the
processes it started."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Result:
    """One row of figures: ``metrics`` maps a name (unit in the name) to a number."""

    benchmark: str
    case: str
    metrics: dict[str, float]
    info: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "benchmark": self.benchmark,
            "case": self.case,
            "metrics": self.metrics,
            "info": self.info,
        }


def format_number(value: float) -> str:
    if value != value:  # NaN
        return "nan"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1 or magnitude == 0:
        return f"{value:.2f}"
    return f"{value:.3f}"


def format_table(results: list[Result]) -> str:
    """A plain-text table: one row per result, one column per metric name seen."""
    columns: list[str] = []
    for result in results:
        for name in result.metrics:
            if name not in columns:
                columns.append(name)
    header = ["benchmark", "case", *columns]
    rows = [
        [
            r.benchmark,
            r.case,
            *(format_number(r.metrics[c]) if c in r.metrics else "" for c in columns),
        ]
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        # Names left-aligned, numbers right-aligned.
        return "  ".join(
            cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def busy_cores(interval_s: float = 1.0) -> float:
    """Cores' worth of CPU the whole machine used over ``interval_s`` (0.0 .. cpu_count)."""
    import psutil

    before = psutil.cpu_times()
    time.sleep(interval_s)
    after = psutil.cpu_times()
    idle = (after.idle - before.idle) + (
        getattr(after, "iowait", 0.0) - getattr(before, "iowait", 0.0)
    )
    total = sum(after) - sum(before)
    cores = psutil.cpu_count() or 1
    return cores * (1 - idle / total) if total > 0 else 0.0


def wait_for_quiet(max_wait_s: float, threshold_cores: float = 0.15) -> float:
    """Waits (up to ``max_wait_s``) until the machine is nearly idle; returns the last
    busy figure. Call it while the benchmark's own processes are idle: anything busy
    then is someone else's work, which would skew the figures on a small machine."""
    deadline = time.monotonic() + max_wait_s
    busy = busy_cores(0.5)
    warned = False
    while busy > threshold_cores and time.monotonic() < deadline:
        if not warned:
            print(
                f"  machine busy ({busy:.2f} cores used by other processes); "
                f"waiting up to {max_wait_s:.0f}s for it to go quiet",
                flush=True,
            )
            warned = True
        busy = busy_cores(1.0)
    if busy > threshold_cores:
        print(f"  WARNING: still {busy:.2f} cores busy elsewhere; figures may be low", flush=True)
    return busy


def stop_process(proc: subprocess.Popen[Any] | None, grace_s: float = 15.0) -> int | None:
    """Stops a process a benchmark started, and whatever it started; returns its exit code.

    SIGTERM, up to ``grace_s`` for it to exit, then SIGKILL; it is reaped either way, also
    when Ctrl-C interrupts the wait. Its descendants, as they were when the stop began, are
    SIGKILLed once it has gone: a server's job processes run in sessions of their own and
    outlive it by design, and an mlflow server's workers may outlive their master. Safe on
    a process that has already exited, and when called twice.
    """
    if proc is None:
        return None
    import psutil

    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        for child in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        psutil.wait_procs(descendants, timeout=10)
    return proc.returncode
