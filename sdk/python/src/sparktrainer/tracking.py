"""``sparktrainer.log``: report metrics from inside a training job.

Standard library only, safe to import anywhere, and cheap to call in a training loop.

Under SparkTrainer's executor the job's environment names a metrics file
(``SPARKTRAINER_METRICS_FILE``); each call appends one JSON line to it, which the platform
picks up within milliseconds. A job running elsewhere can report over HTTP instead: with
``SPARKTRAINER_API_URL``, ``SPARKTRAINER_JOB_ID`` and ``SPARKTRAINER_JOB_TOKEN`` set, points
are batched and posted by a background thread. Outside SparkTrainer, calls warn once and
record nothing, so the same script runs anywhere.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import random
import threading
import time
import urllib.error
import urllib.request
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import IO

__all__ = ["flush", "log"]

_lock = threading.Lock()
_sink: _Sink | None = None


class _Sink(ABC):
    @abstractmethod
    def write(self, line: str) -> None:
        """Takes one point, as its JSON text (see :func:`_encode`)."""

    def flush(self) -> None:  # noqa: B027 - most sinks buffer nothing
        """Delivers what is buffered."""


class _FileSink(_Sink):
    def __init__(self, path: str) -> None:
        # Unbuffered, appending: each point is one write() of one whole line, at once
        # visible to the platform, which reads only complete lines.
        self._handle: IO[bytes] = open(path, "ab", buffering=0)  # noqa: SIM115, PTH123

    def write(self, line: str) -> None:
        self._handle.write(f"{line}\n".encode())


class _HttpSink(_Sink):
    INTERVAL = 0.5
    MAX_BATCH = 5_000
    # A batch is tried this many times over connection failures, 429, 502, 503 and 504,
    # waiting BACKOFF * 2**n seconds (with jitter, or the server's Retry-After, capped).
    ATTEMPTS = 5
    BACKOFF = 0.5
    MAX_WAIT = 10.0
    RETRY_STATUSES = frozenset({429, 502, 503, 504})

    def __init__(self, api_url: str, job_id: str, token: str) -> None:
        self._url = f"{api_url.rstrip('/')}/api/jobs/{job_id}/metrics"
        self._token = token
        self._buffer: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="sparktrainer-metrics", daemon=True)
        self._thread.start()

    def write(self, line: str) -> None:
        with self._cond:
            self._buffer.append(line)
            if len(self._buffer) >= self.MAX_BATCH:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait(self.INTERVAL)
            self.flush()

    def flush(self) -> None:
        with self._cond:
            batch, self._buffer = self._buffer, []
        for start in range(0, len(batch), self.MAX_BATCH):
            self._post(batch[start : start + self.MAX_BATCH])

    def _post(self, points: list[str]) -> None:
        request = urllib.request.Request(  # noqa: S310 - the platform's own URL
            self._url,
            data=f'{{"points":[{",".join(points)}]}}'.encode(),
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
            method="POST",
        )
        for attempt in range(1, self.ATTEMPTS + 1):
            retry_after: str | None = None
            try:
                with urllib.request.urlopen(request, timeout=10):  # noqa: S310
                    return
            except urllib.error.HTTPError as exc:
                if exc.code not in self.RETRY_STATUSES:
                    problem: Exception = exc
                    break
                problem, retry_after = exc, exc.headers.get("Retry-After")
            except (urllib.error.URLError, OSError) as exc:
                problem = exc
            if attempt < self.ATTEMPTS:
                time.sleep(self._delay(attempt, retry_after))
        warnings.warn(f"sparktrainer: {len(points)} metric points lost: {problem}", stacklevel=2)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        try:
            asked = float(retry_after) if retry_after else None
        except ValueError:
            asked = None
        if asked is not None:
            return min(self.MAX_WAIT, max(0.0, asked))
        backoff = min(self.MAX_WAIT, self.BACKOFF * 2.0 ** (attempt - 1))
        return backoff / 2 + random.uniform(0, backoff / 2)  # noqa: S311 - jitter


class _NullSink(_Sink):
    def write(self, line: str) -> None:
        pass


def _get_sink() -> _Sink:
    global _sink
    with _lock:
        if _sink is None:
            metrics_file = os.environ.get("SPARKTRAINER_METRICS_FILE")
            api_url = os.environ.get("SPARKTRAINER_API_URL")
            job_id = os.environ.get("SPARKTRAINER_JOB_ID")
            token = os.environ.get("SPARKTRAINER_JOB_TOKEN")
            if metrics_file:
                _sink = _FileSink(metrics_file)
            elif api_url and job_id and token:
                _sink = _HttpSink(api_url, job_id, token)
            else:
                warnings.warn(
                    "sparktrainer.log: not running under SparkTrainer; metrics are not recorded",
                    stacklevel=3,
                )
                _sink = _NullSink()
            atexit.register(_sink.flush)
        return _sink


def log(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Records one point: ``sparktrainer.log({"loss": 0.45, "lr": 1e-4}, step=100)``.

    ``step`` defaults to one more than the previous point's. Values must be finite numbers;
    the name ``step`` is reserved.
    """
    if step is not None and (type(step) is not int or step < 0):
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError("step must be a non-negative integer")
        step = int(step)
    line = _encode(metrics, step, time.time())
    sink = _get_sink() if _sink is None else _sink
    with _lock:
        sink.write(line)


# Each metric name's JSON, computed once: most jobs log the same few names all along.
_names: dict[str, str] = {}
_MAX_NAMES = 10_000


def _encode(metrics: Mapping[str, float], step: int | None, ts: float) -> str:
    """The point's JSON line, as json.dumps would write it, built directly: a float's repr
    is its JSON. Raises on a value that is not a finite number."""
    parts = []
    for name, value in metrics.items():
        # x - x is 0.0 for a finite float only.
        if type(value) is not float or value - value != 0.0:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"metric {name!r} must be a number, not {type(value).__name__}")
            if not math.isfinite(value):
                raise ValueError(f"metric {name!r} is {value}; only finite values are recorded")
            value = float(value)
        key = _names.get(name)
        if key is None:
            key = json.dumps(str(name))
            if len(_names) < _MAX_NAMES:
                _names[name] = key
        parts.append(f"{key}:{value!r}")
    if not parts:
        raise ValueError("log() needs at least one metric")
    tail = "" if step is None else f',"step":{step}'
    return f'{{"metrics":{{{",".join(parts)}}},"ts":{ts!r}{tail}}}'


def flush() -> None:
    """Delivers buffered points now (also done at interpreter exit)."""
    _get_sink().flush()
