"""The built-in backend's ``logprobs`` and ``echo`` on /v1/completions: the model's own
log-probabilities, checked against a forward pass computed here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from spark_trainer.deployments.server import Generator, build_app

PROMPT = "the model learns to answer"


@pytest.fixture(scope="module")
def served(tiny_lm: Path) -> Any:
    generator = Generator(tiny_lm, None, "cpu", 1)
    with TestClient(build_app(generator, "tiny", "local")) as client:
        yield client, generator


def _reference(generator: Generator, text: str) -> tuple[list[int], list[list[float]]]:
    import torch

    ids = generator.tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = generator.model(input_ids=ids).logits[0]
    return ids[0].tolist(), torch.log_softmax(logits.float(), dim=-1).tolist()


def test_echo_scores_the_prompt(served: Any) -> None:
    client, generator = served
    response = client.post(
        "/v1/completions",
        json={"prompt": PROMPT, "max_tokens": 0, "echo": True, "logprobs": 2},
    )
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["text"] == PROMPT
    scored = choice["logprobs"]
    ids, reference = _reference(generator, PROMPT)
    assert "".join(scored["tokens"]) == PROMPT
    assert scored["text_offset"][0] == 0 and scored["token_logprobs"][0] is None
    for position in range(1, len(ids)):
        expected = reference[position - 1][ids[position]]
        assert math.isclose(scored["token_logprobs"][position], expected, abs_tol=1e-4)
        top = scored["top_logprobs"][position]
        assert len(top) <= 2 and max(top.values()) == pytest.approx(
            max(reference[position - 1]), abs=1e-4
        )


def test_generated_tokens_carry_their_logprobs(served: Any) -> None:
    client, generator = served
    response = client.post(
        "/v1/completions",
        json={"prompt": PROMPT, "max_tokens": 4, "temperature": 0, "logprobs": 1},
    )
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    scored = choice["logprobs"]
    assert "".join(scored["tokens"]).replace("<|endoftext|>", "") == choice["text"]
    ids, reference = _reference(generator, PROMPT + choice["text"])
    prompt_length = len(generator.tokenizer(PROMPT).input_ids)
    # Greedy: each generated token is the most likely one, and its logprob is the model's.
    for k, logprob in enumerate(scored["token_logprobs"]):
        position = prompt_length + k
        if position >= len(ids):
            break  # an end-of-text token, which the text does not show
        assert math.isclose(logprob, reference[position - 1][ids[position]], abs_tol=1e-4)
        assert math.isclose(logprob, max(reference[position - 1]), abs_tol=1e-4)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prompt": "a", "logprobs": 9}, "logprobs must be an integer from 0 to 5"),
        ({"prompt": "a", "max_tokens": 0}, "max_tokens must be a positive integer"),
        ({"prompt": "a", "logprobs": 1, "stream": True}, "logprobs are not streamed"),
    ],
)
def test_bad_logprobs_requests_answer_400(served: Any, body: Any, message: str) -> None:
    client, _ = served
    response = client.post("/v1/completions", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
