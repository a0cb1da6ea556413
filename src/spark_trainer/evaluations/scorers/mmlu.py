"""MMLU, scored the standard way.

Prompt (the original format, as lm-evaluation-harness writes it)::

    The following are multiple choice questions (with answers) about {subject}.

    {dev question}
    A. {choice}
    B. {choice}
    C. {choice}
    D. {choice}
    Answer: {letter}

    … (``num_shots`` dev examples of the same subject, in their file order)
    {question}
    A. …
    Answer:

The model's answer is the letter whose continuation (``" A"``, ``" B"``, …) has the
highest log-likelihood after ``Answer:``.

Questions come in either public layout: the original per-subject CSV files (no header:
question, A, B, C, D, answer letter) in a tar or zip archive (``dev/x_dev.csv``,
``test/x_test.csv``, …), or one table with ``question``, ``subject``, ``choices`` (a list)
and ``answer`` (index or letter) columns as JSONL or Parquet, optionally with a ``split``
column; with no dataset, ``cais/mmlu`` is loaded from the Hugging Face Hub through
``datasets`` (and cached there).
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
import time
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from spark_trainer.evaluations.scorers.mmlu_subjects import expand, format_subject

LETTERS = ("A", "B", "C", "D")
HUB_DATASET = "cais/mmlu"
PARQUET_MAGIC = b"PAR1"


class DataError(ValueError):
    """The questions cannot be read as MMLU."""


@dataclass(frozen=True, slots=True)
class Question:
    subject: str
    question: str
    choices: tuple[str, str, str, str]
    answer: int


Split = dict[str, list[Question]]  # subject → questions, in file order


# --- prompts ---------------------------------------------------------------------------


def header(subject: str) -> str:
    return (
        "The following are multiple choice questions (with answers) about "
        f"{format_subject(subject)}.\n\n"
    )


def format_example(question: Question, *, with_answer: bool) -> str:
    text = question.question.strip()
    for letter, choice in zip(LETTERS, question.choices, strict=True):
        text += f"\n{letter}. {choice}"
    text += "\nAnswer:"
    if with_answer:
        text += f" {LETTERS[question.answer]}\n\n"
    return text


def build_prompt(question: Question, shots: Sequence[Question]) -> str:
    prompt = header(question.subject)
    for shot in shots:
        prompt += format_example(shot, with_answer=True)
    return prompt + format_example(question, with_answer=False)


# --- reading the layouts ---------------------------------------------------------------


def _answer_index(value: Any, where: str) -> int:
    if isinstance(value, str) and value.strip().upper() in LETTERS:
        return LETTERS.index(value.strip().upper())
    if isinstance(value, int | float) and int(value) == value and 0 <= int(value) < 4:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and 0 <= int(value) < 4:
        return int(value)
    raise DataError(f"{where}: answer {value!r} is not A-D or 0-3")


def _question(row: dict[str, Any], where: str, subject: str | None = None) -> Question:
    subject = subject or row.get("subject")
    if not isinstance(subject, str) or not subject:
        raise DataError(f"{where}: no subject")
    choices = row.get("choices")
    if choices is not None and hasattr(choices, "tolist"):
        choices = choices.tolist()
    if not isinstance(choices, list) or len(choices) != 4:
        raise DataError(f"{where}: choices must be a list of four")
    question = row.get("question")
    if not isinstance(question, str):
        raise DataError(f"{where}: question must be text")
    return Question(
        subject=subject,
        question=question,
        choices=(str(choices[0]), str(choices[1]), str(choices[2]), str(choices[3])),
        answer=_answer_index(row.get("answer"), where),
    )


def _add(splits: dict[str, Split], split: str, question: Question) -> None:
    splits.setdefault(split, {}).setdefault(question.subject, []).append(question)


def _csv_rows(data: bytes, name: str, subject: str) -> Iterable[Question]:
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig")))
    for number, row in enumerate(reader, start=1):
        if not row:
            continue
        if len(row) != 6:
            raise DataError(f"{name} line {number}: expected 6 columns, found {len(row)}")
        yield Question(
            subject=subject,
            question=row[0],
            choices=(row[1], row[2], row[3], row[4]),
            answer=_answer_index(row[5], f"{name} line {number}"),
        )


def _archive_members(path: Path) -> Iterable[tuple[str, bytes]]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    yield info.filename, archive.read(info)
        return
    with tarfile.open(path) as archive:
        for member in archive:
            if member.isfile():
                handle = archive.extractfile(member)
                if handle is not None:
                    yield member.name, handle.read()


def _read_archive(path: Path) -> dict[str, Split]:
    splits: dict[str, Split] = {}
    for name, data in _archive_members(path):
        stem = PurePosixPath(name).name
        if not stem.endswith(".csv") or stem.startswith("."):
            continue
        subject, _, split = stem[: -len(".csv")].rpartition("_")
        if not subject:
            continue
        for question in _csv_rows(data, name, subject):
            _add(splits, split, question)
    if not splits:
        raise DataError("the archive holds no <subject>_<split>.csv files")
    return splits


def _read_table_rows(rows: Iterable[dict[str, Any]], default_split: str) -> dict[str, Split]:
    splits: dict[str, Split] = {}
    for number, row in enumerate(rows, start=1):
        split = row.get("split") or default_split
        _add(splits, str(split), _question(row, f"row {number}"))
    return splits


def _jsonl_rows(path: Path) -> Iterable[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"line {number}: not JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise DataError(f"line {number}: not an object")
                yield row


def _parquet_rows(path: Path) -> Iterable[dict[str, Any]]:
    import pyarrow.parquet as pq

    yield from pq.read_table(path).to_pylist()


def read_file(path: Path, default_split: str) -> dict[str, Split]:
    """split → subject → questions, from a file in either layout (told apart by content)."""
    with path.open("rb") as handle:
        head = handle.read(512)
    if head.startswith(PARQUET_MAGIC):
        return _read_table_rows(_parquet_rows(path), default_split)
    if zipfile.is_zipfile(path) or tarfile.is_tarfile(path):
        return _read_archive(path)
    return _read_table_rows(_jsonl_rows(path), default_split)


def load_hub(split: str, dev_split: str = "dev") -> dict[str, Split]:
    """``cais/mmlu`` (config ``all``) through ``datasets``, cached in its usual cache."""
    from datasets import load_dataset

    splits: dict[str, Split] = {}
    for name in dict.fromkeys((split, dev_split)):
        for number, row in enumerate(load_dataset(HUB_DATASET, "all", split=name), start=1):
            _add(splits, name, _question(dict(row), f"{HUB_DATASET} {name} row {number}"))
    return splits


# --- scoring -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scored:
    question: Question
    logprobs: tuple[float, float, float, float]

    @property
    def predicted(self) -> int:
        return max(range(4), key=lambda i: self.logprobs[i])

    @property
    def correct(self) -> bool:
        return self.predicted == self.question.answer


LogprobScorer = Callable[[Sequence[str]], Iterable[Sequence[float]]]


def select(
    splits: dict[str, Split],
    *,
    subjects: Sequence[str] | None,
    split: str,
    dev: dict[str, list[Question]] | None,
    num_shots: int,
    max_per_subject: int | None,
) -> tuple[list[tuple[Question, list[Question]]], dict[str, tuple[str, ...]]]:
    """The questions to ask with their shots, and what each requested name covers."""
    if split not in splits:
        raise DataError(f"no '{split}' split; found {sorted(splits)}")
    questions = splits[split]
    dev = dev if dev is not None else splits.get("dev", {})
    requested: dict[str, tuple[str, ...]] = (
        {name: expand(name) for name in subjects}
        if subjects
        else {s: (s,) for s in sorted(questions)}
    )
    wanted = sorted({s for covered in requested.values() for s in covered if s in questions})
    if not wanted:
        raise DataError("none of the requested subjects has questions in the dataset")
    work: list[tuple[Question, list[Question]]] = []
    for subject in wanted:
        shots = dev.get(subject, [])[:num_shots]
        if len(shots) < num_shots:
            raise DataError(
                f"{num_shots}-shot needs {num_shots} dev examples of '{subject}'; "
                f"found {len(shots)}"
            )
        chosen = questions[subject][:max_per_subject] if max_per_subject else questions[subject]
        work.extend((q, shots) for q in chosen)
    return work, requested


def score(
    work: Sequence[tuple[Question, list[Question]]],
    scorer: LogprobScorer,
    *,
    batch: int,
    progress: Callable[[int], None],
) -> tuple[list[Scored], float, float]:
    """Scores every question; returns them with the scoring phase's wall and CPU seconds
    (the process's CPU: on a shared machine it tells the work apart from the waiting)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    scored: list[Scored] = []
    for start in range(0, len(work), batch):
        chunk = work[start : start + batch]
        prompts = [build_prompt(q, shots) for q, shots in chunk]
        for (question, _), row in zip(chunk, scorer(prompts), strict=True):
            scored.append(Scored(question, (row[0], row[1], row[2], row[3])))
        progress(len(scored))
    return scored, time.perf_counter() - started, time.process_time() - cpu_started


def summarize(
    scored: Sequence[Scored],
    requested: dict[str, tuple[str, ...]],
    num_shots: int,
    seconds: float,
    cpu_seconds: float,
) -> dict[str, Any]:
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for item in scored:
        counts = per[item.question.subject]
        counts[0] += int(item.correct)
        counts[1] += 1
    correct = sum(c for c, _ in per.values())
    total = sum(t for _, t in per.values())
    groups: dict[str, dict[str, int]] = {}
    for name, covered in requested.items():
        g_correct = sum(per[s][0] for s in covered if s in per)
        g_total = sum(per[s][1] for s in covered if s in per)
        if g_total:
            groups[name] = {"correct": g_correct, "total": g_total}
    return {
        "overall_accuracy": correct / total if total else 0.0,
        "subjects": {name: c["correct"] / c["total"] for name, c in groups.items()},
        "counts": groups,
        "per_subject": {
            s: {"accuracy": c / t, "correct": c, "total": t} for s, (c, t) in sorted(per.items())
        },
        "num_shots": num_shots,
        "questions": total,
        "correct": correct,
        "scoring_seconds": round(seconds, 4),
        "scoring_cpu_seconds": round(cpu_seconds, 4),
        "questions_per_second": round(total / seconds, 2) if seconds > 0 else None,
    }


def lm_scorer(lm: Any, batch_size: int) -> LogprobScorer:
    """Log-likelihood of each letter after the prompt, with a :class:`LoadedLM`."""
    letters = [lm.encode(f" {letter}") for letter in LETTERS]
    prefix = letters[0][:-1]
    shared = all(len(ids) == len(prefix) + 1 and ids[:-1] == prefix for ids in letters)

    def run(prompts: Sequence[str]) -> Iterable[Sequence[float]]:
        contexts = [lm.encode(p) for p in prompts]
        if shared:
            # One forward pass a question: the continuations differ in their last token.
            last = [ids[-1] for ids in letters]
            for prefix_logprob, row in lm.prefixed_next_token_logprobs(
                contexts, prefix, batch_size
            ):
                yield [prefix_logprob + float(row[t]) for t in last]
        else:
            for context in contexts:
                yield [lm.continuation_logprob(context, ids) for ids in letters]

    return run


def endpoint_scorer(base_url: str, model: str | None, *, token: str | None) -> LogprobScorer:
    """Log-likelihood of each letter after the prompt from an OpenAI-compatible
    ``/completions`` route that returns logprobs (the built-in backend, vLLM): the prompt
    with the letter appended is sent with ``echo`` and ``logprobs``, and the letter's
    tokens (those at or after the prompt's end in the echoed text) are summed, as
    lm-evaluation-harness does with such APIs. One generated token is asked for (some
    servers refuse 0) and ignored."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=120.0)

    def letter_logprob(prompt: str, letter: str) -> float:
        body: dict[str, Any] = {
            "prompt": prompt + f" {letter}",
            "max_tokens": 1,
            "temperature": 0,
            "echo": True,
            "logprobs": 0,
        }
        if model is not None:
            body["model"] = model
        response = client.post("/completions", json=body)
        if response.status_code != 200:
            raise ValueError(
                f"the endpoint answered {response.status_code} to a logprobs request: "
                f"{response.text[:300]}"
            )
        scored = response.json()["choices"][0].get("logprobs")
        if not scored or not scored.get("token_logprobs"):
            raise ValueError("the endpoint returns no logprobs; MMLU needs them")
        end = len(prompt) + len(letter) + 1
        values = [
            value
            for offset, value in zip(scored["text_offset"], scored["token_logprobs"], strict=True)
            if len(prompt) <= offset < end and value is not None
        ]
        if not values:
            raise ValueError("the endpoint's logprobs do not cover the answer letter")
        return float(sum(values))

    def run(prompts: Sequence[str]) -> Iterable[Sequence[float]]:
        for prompt in prompts:
            yield [letter_logprob(prompt, letter) for letter in LETTERS]

    return run
