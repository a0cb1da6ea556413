from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from spark_trainer.models import Tier
from tests.conftest import Account
from tests.evaluations.reference import letter_logprobs, prompt

# Short questions in the tiny model's vocabulary keep a 1-shot prompt inside its
# 128-token window.
SUBJECTS = {
    "abstract_algebra": "mathematics",
    "college_physics": "physics",
    "high_school_computer_science": "computer_science",
}
# How many of each subject's two questions get the model's own choice as the answer:
# the expected accuracies are then 1, 0.5 and 0, overall 0.5.
RIGHT = {"abstract_algebra": 2, "college_physics": 1, "high_school_computer_science": 0}
CHOICES = ["yes", "no", "true", "false"]


@pytest.fixture(scope="session")
def mmlu_questions(tiny_lm: Path) -> dict[str, Any]:
    """Dev and test rows (table layout) whose expected scores follow from log-likelihoods
    computed here, independently of the evaluation code."""
    dev, tests, prompts = [], [], []
    for n, subject in enumerate(SUBJECTS):
        shot = {"question": f"the answer {n}", "choices": CHOICES, "answer": n % 4}
        dev.append({**shot, "subject": subject, "split": "dev"})
        for i in range(2):
            question = {"question": f"question {i} about science {n}", "choices": CHOICES}
            prompts.append(prompt(subject, [shot], question))
            tests.append({**question, "subject": subject, "split": "test"})
    logprobs = letter_logprobs(tiny_lm, prompts)
    for row, scores in zip(tests, logprobs, strict=True):
        best = max(range(4), key=lambda k: scores[k])
        index = int(row["question"].split()[1])
        row["answer"] = best if index < RIGHT[row["subject"]] else (best + 1) % 4
    return {"dev": dev, "test": tests, "logprobs": logprobs}


@pytest.fixture
def alice(make_account: Callable[..., Account]) -> Account:
    # Premium: waiting on a job that loads a model polls more than 100 times a minute.
    return make_account("alice", tier=Tier.PREMIUM)
