"""SparkTrainer's Python SDK.

Inside a training job: ``sparktrainer.log({"loss": 0.45}, step=100)``.
"""

from sparktrainer.tracking import flush, log

__version__ = "0.1.0"
__all__ = ["__version__", "flush", "log"]
