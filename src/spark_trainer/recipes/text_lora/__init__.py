"""LoRA fine-tuning of a causal language model: ``python -m spark_trainer.recipes.text_lora``.

Built on ``transformers.Trainer`` and ``peft``. See the README section "Training recipes"
for the configuration, where files go, and how errors, resuming and cancelling work.
"""
