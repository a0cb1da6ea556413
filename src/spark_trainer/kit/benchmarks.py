"""The benchmarks an evaluation runs, apart from the tables that record them.

The evaluation job's program reads this without importing SQLAlchemy or the API's web
stack (``models`` and ``evaluations.run`` both take it from here).
"""

from __future__ import annotations

from enum import StrEnum


class Benchmark(StrEnum):
    MMLU = "mmlu"
    COCO = "coco"
    SAFETY = "safety"
