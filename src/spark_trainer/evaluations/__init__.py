"""Evaluations: benchmark runs of registered models (MMLU, COCO, safety probes).

Every evaluation is a job through the one scheduler: ``service.create`` checks the body,
resolves the model and datasets to stored files, and submits a job running
``python -m spark_trainer.evaluations.run``; when the job has ended, the result collector
(``collector.record_outcome``, idempotent) copies its ``results.json`` onto the
evaluation. The scorers (``scorers/``) run inside the job only, so the API process never
imports torch.
"""
