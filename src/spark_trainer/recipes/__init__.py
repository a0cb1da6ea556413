"""Training recipes: ready-made training programs a job runs with ``python -m``.

A recipe is an ordinary job command (``python -m spark_trainer.recipes.text_lora --config
config.yaml``); it reads what SparkTrainer gives every job (``SPARKTRAINER_OUTPUT_DIR``,
``SPARKTRAINER_DATASET_PATH``, the metrics file) and nothing the server keeps to itself.
"""
