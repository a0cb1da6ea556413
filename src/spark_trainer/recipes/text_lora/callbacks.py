"""Trainer callbacks: live metrics through ``sparktrainer.log`` and a clean stop on SIGTERM."""

from __future__ import annotations

import signal
import time
from types import FrameType
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

import sparktrainer

# Trainer's log keys → the names SparkTrainer's streams and summaries use.
RENAMED = {"learning_rate": "lr"}
# Counters and whole-run figures the Trainer adds to its logs, not per-step metrics.
SKIPPED = {
    "total_flos",
    "num_input_tokens_seen",
    "train_runtime",
    "train_tokens_per_second",
    "train_samples_per_second",
    "train_steps_per_second",
}


class MetricsCallback(TrainerCallback):
    """Sends every Trainer log (loss, lr, epoch, eval_loss, …) to ``sparktrainer.log`` at
    its global step, with ``tokens_per_second`` over the interval since the last log."""

    def __init__(self) -> None:
        self._last_time: float | None = None
        self._last_tokens = 0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        # Measured from here, so a resumed run does not count the tokens of earlier runs.
        self._last_time = time.perf_counter()
        self._last_tokens = int(state.num_input_tokens_seen)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        values = {
            RENAMED.get(key, key): float(value)
            for key, value in logs.items()
            if key not in SKIPPED and isinstance(value, int | float) and not isinstance(value, bool)
        }
        if "loss" in values and self._last_time is not None:
            now = time.perf_counter()
            tokens = int(state.num_input_tokens_seen)
            if now > self._last_time and tokens > self._last_tokens:
                # Every worker's tokens: the Trainer sums num_input_tokens_seen over ranks.
                values["tokens_per_second"] = (tokens - self._last_tokens) / (now - self._last_time)
            self._last_time, self._last_tokens = now, tokens
        if values:
            sparktrainer.log(values, step=state.global_step)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        if state.is_world_process_zero:
            sparktrainer.flush()


class StopOnSignal(TrainerCallback):
    """On SIGTERM (cancel, timeout, preemption): finish the current step, save a
    checkpoint and stop, well inside the grace period before SIGKILL."""

    def __init__(self) -> None:
        self.requested = False
        self.stopped = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def _agreed(self) -> bool:
        """Whether any worker was signalled: all must save at the same step, or the
        collective save would wait forever for the ones that did not."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self.requested
        import torch

        device = (
            torch.device("cuda", torch.cuda.current_device())
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
        flag = torch.tensor([1 if self.requested else 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> TrainerControl:
        if self._agreed():
            self.stopped = True
            control.should_save = True
            control.should_training_stop = True
        return control
