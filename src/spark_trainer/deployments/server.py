"""The built-in ``transformers`` backend: an OpenAI-compatible server for one causal LM.

``python -m spark_trainer.deployments.server --model DIR --port N`` loads a Hugging Face
model directory (or a peft LoRA adapter on its base, ``--base-model``) on the GPU when one
is visible, else on the CPU, and serves ``/v1/completions``, ``/v1/chat/completions``
(both with ``stream: true`` as server-sent events), ``/v1/models`` and ``/health``. It
starts listening only once the model is loaded, so a passing health check means ready.

Generation is serialised: one ``generate`` at a time per replica, which is what a CPU or
a single small GPU does best anyway; a deployment scales with replicas. Every response
carries ``X-Replica-Id`` (the replica's job id) so callers can see which replica answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MAX_TOKENS = 16


MAX_LOGPROBS = 5


@dataclass(frozen=True, slots=True)
class Sampling:
    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None
    logprobs: int | None = None
    """/v1/completions: how many most likely alternatives to list per token (0 to 5)."""
    echo: bool = False
    """/v1/completions: the prompt comes back in front of the text (and its logprobs)."""


class BadInput(ValueError):
    """A request the OpenAI API would answer with 400 invalid_request_error."""


def parse_sampling(body: dict[str, Any], limit: int, *, chat: bool = False) -> Sampling:
    echo = body.get("echo", False)
    if chat and echo:
        raise BadInput("echo is a /v1/completions option")
    if not isinstance(echo, bool):
        raise BadInput("echo must be true or false")
    logprobs = body.get("logprobs")
    if chat and logprobs not in (None, False):
        raise BadInput("logprobs are served on /v1/completions only")
    if logprobs is not None and (
        not isinstance(logprobs, int) or isinstance(logprobs, bool) or not 0 <= logprobs <= 5
    ):
        raise BadInput(f"logprobs must be an integer from 0 to {MAX_LOGPROBS}")
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens", DEFAULT_MAX_TOKENS))
    # 0 with echo scores the prompt without generating (as OpenAI's API allowed).
    least = 0 if echo else 1
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < least:
        raise BadInput(
            "max_tokens must be 0 or more" if echo else "max_tokens must be a positive integer"
        )
    temperature = body.get("temperature", 1.0)
    top_p = body.get("top_p", 1.0)
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        raise BadInput("temperature must be a number from 0 to 2")
    if not isinstance(top_p, int | float) or not 0 < top_p <= 1:
        raise BadInput("top_p must be a number in (0, 1]")
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, list | tuple) or not all(isinstance(s, str) and s for s in stop):
        raise BadInput("stop must be a string or a list of strings")
    if body.get("n", 1) != 1:
        raise BadInput("only n=1 is supported")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise BadInput("seed must be an integer")
    if logprobs is not None and body.get("stream"):
        raise BadInput("logprobs are not streamed; ask without stream")
    return Sampling(
        min(max_tokens, limit),
        float(temperature),
        float(top_p),
        tuple(stop),
        seed,
        logprobs,
        echo,
    )


class Generator:
    """The loaded model, its tokenizer, and one lock around ``generate``."""

    def __init__(self, model_dir: Path, base_dir: Path | None, device: str, threads: int) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        self.torch = torch
        adapter = (model_dir / "adapter_config.json").is_file()
        if adapter:
            from peft import PeftModel

            base_path = base_dir or Path(
                json.loads((model_dir / "adapter_config.json").read_text())[
                    "base_model_name_or_path"
                ]
            )
            base = AutoModelForCausalLM.from_pretrained(base_path, local_files_only=True)
            model: Any = PeftModel.from_pretrained(base, model_dir, local_files_only=True)
            has_tokenizer = (model_dir / "tokenizer_config.json").is_file()
            tokenizer_dir = model_dir if has_tokenizer else base_path
        else:
            model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
            tokenizer_dir = model_dir
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.model = model.to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        config = self.model.config
        context: Any = getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", 2048
        )
        self.context = int(context)
        self.lock = threading.Lock()

    def prompt_from_messages(self, messages: list[dict[str, Any]]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            return str(text)
        # No chat template (a plain LM): the conventional "role: content" transcript.
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join([*lines, "assistant:"])

    def encode(self, prompt: str, sampling: Sampling) -> Any:
        ids = self.tokenizer(prompt, return_tensors="pt").input_ids
        room = self.context - sampling.max_tokens
        if room < 1:
            raise BadInput(f"max_tokens must be below the model's context of {self.context}")
        return ids[:, -room:].to(self.device)

    def _kwargs(self, ids: Any, sampling: Sampling) -> dict[str, Any]:
        if sampling.seed is not None:
            self.torch.manual_seed(sampling.seed)
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": self.torch.ones_like(ids),
            "max_new_tokens": sampling.max_tokens,
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        }
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            kwargs.update(do_sample=False)
        return kwargs

    def complete(self, ids: Any, sampling: Sampling) -> tuple[str, int, str, dict[str, Any] | None]:
        """(text, completion tokens, finish reason, OpenAI ``logprobs`` or None) for one
        prompt."""
        with self.lock, self.torch.inference_mode():
            # max_tokens 0 (with echo): the prompt is only scored.
            out = self.model.generate(**self._kwargs(ids, sampling)) if sampling.max_tokens else ids
            new = out[0, ids.shape[1] :]
            text = str(self.tokenizer.decode(new, skip_special_tokens=True))
            text, stopped = _apply_stop(text, sampling.stop)
            eos = self.tokenizer.eos_token_id
            ended = (
                stopped or (len(new) > 0 and int(new[-1]) == eos) or len(new) < sampling.max_tokens
            )
            scored = None
            if sampling.logprobs is not None:
                keep = len(new)
                if stopped:
                    # The tokens that make up the text left before the stop string.
                    keep = next(
                        k
                        for k in range(len(new) + 1)
                        if len(self.tokenizer.decode(new[:k], skip_special_tokens=True))
                        >= len(text)
                    )
                scored = self._logprobs(out[:, : ids.shape[1] + keep], ids.shape[1], sampling)
        if sampling.echo:
            prompt = str(self.tokenizer.decode(ids[0], skip_special_tokens=True))
            text = prompt + text
        return text, len(new), "stop" if ended else "length", scored

    def _logprobs(self, out: Any, prompt_length: int, sampling: Sampling) -> dict[str, Any]:
        """The model's own log-probabilities of each token of ``out`` (one forward pass;
        the raw distribution, not the sampling-warped one), in the OpenAI completions
        shape: the completion's tokens, preceded with echo by the prompt's (the very first
        token has no logprob)."""
        logits = self.model(input_ids=out, attention_mask=self.torch.ones_like(out)).logits
        logprobs = self.torch.log_softmax(logits[0].float(), dim=-1)
        sequence = [int(t) for t in out[0]]
        result: dict[str, list[Any]] = {
            "tokens": [],
            "token_logprobs": [],
            "top_logprobs": [],
            "text_offset": [],
        }
        offset = 0
        for position in range(0 if sampling.echo else prompt_length, len(sequence)):
            piece = str(self.tokenizer.decode([sequence[position]]))
            result["tokens"].append(piece)
            result["text_offset"].append(offset)
            offset += len(piece)
            if position == 0:
                result["token_logprobs"].append(None)
                result["top_logprobs"].append(None)
                continue
            row = logprobs[position - 1]
            result["token_logprobs"].append(float(row[sequence[position]]))
            top = None
            if sampling.logprobs:
                values, indices = self.torch.topk(row, sampling.logprobs)
                top = {
                    str(self.tokenizer.decode([int(i)])): float(v)
                    for v, i in zip(values, indices, strict=True)
                }
            result["top_logprobs"].append(top)
        return result

    def stream(self, ids: Any, sampling: Sampling) -> Iterator[str]:
        """Text pieces as they are generated (on a helper thread that holds the lock)."""
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = {**self._kwargs(ids, sampling), "streamer": streamer}

        def run() -> None:
            with self.lock, self.torch.inference_mode():
                self.model.generate(**kwargs)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        yield from streamer
        worker.join()


def _apply_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def build_app(generator: Generator, model_name: str, replica_id: str) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    headers = {"X-Replica-Id": replica_id}
    created = int(time.time())

    def error(status: int, message: str) -> JSONResponse:
        body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
        return JSONResponse(body, status_code=status, headers=headers)

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers=headers)

    async def models(_: Request) -> Response:
        card = {"id": model_name, "object": "model", "created": created, "owned_by": "sparktrainer"}
        return JSONResponse({"object": "list", "data": [card]}, headers=headers)

    async def read_body(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise BadInput("request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadInput("request body must be a JSON object")
        return body

    async def completions(request: Request) -> Response:
        try:
            body = await read_body(request)
            prompt = body.get("prompt", "")
            if isinstance(prompt, list) and len(prompt) == 1:
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise BadInput("prompt must be a string (or a list of one string)")
            return await respond(body, prompt, chat=False)
        except BadInput as exc:
            return error(400, str(exc))

    async def chat(request: Request) -> Response:
        try:
            body = await read_body(request)
            messages = body.get("messages")
            if (
                not isinstance(messages, list)
                or not messages
                or not all(
                    isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role")
                    for m in messages
                )
            ):
                raise BadInput("messages must be a non-empty list of {role, content} objects")
            return await respond(body, generator.prompt_from_messages(messages), chat=True)
        except BadInput as exc:
            return error(400, str(exc))

    async def respond(body: dict[str, Any], prompt: str, *, chat: bool) -> Response:
        sampling = parse_sampling(body, generator.context - 1, chat=chat)
        ids = generator.encode(prompt, sampling)
        ident = ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)
        if body.get("stream"):
            return StreamingResponse(
                _sse(generator, ids, sampling, ident, model_name, chat),
                media_type="text/event-stream",
                headers={**headers, "Cache-Control": "no-cache"},
            )
        text, used, finish, scored = await asyncio.to_thread(generator.complete, ids, sampling)
        prompt_tokens = int(ids.shape[1])
        choice: dict[str, Any] = (
            {"index": 0, "message": {"role": "assistant", "content": text}}
            if chat
            else {"index": 0, "text": text, "logprobs": scored}
        )
        choice["finish_reason"] = finish
        return JSONResponse(
            {
                "id": ident,
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": model_name,
                "choices": [choice],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": used,
                    "total_tokens": prompt_tokens + used,
                },
            },
            headers=headers,
        )

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", models),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ]
    )


async def _sse(
    generator: Generator, ids: Any, sampling: Sampling, ident: str, model: str, chat: bool
) -> AsyncIterator[bytes]:
    created = int(time.time())
    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(piece: str | None, finish: str | None) -> bytes:
        choice: dict[str, Any]
        if chat:
            choice = {"index": 0, "delta": {} if piece is None else {"content": piece}}
        else:
            choice = {"index": 0, "text": piece or "", "logprobs": None}
        choice["finish_reason"] = finish
        event = {"id": ident, "object": kind, "created": created, "model": model}
        event["choices"] = [choice]
        return f"data: {json.dumps(event)}\n\n".encode()

    if chat:
        role = {"id": ident, "object": kind, "created": created, "model": model}
        role["choices"] = [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]
        yield f"data: {json.dumps(role)}\n\n".encode()
    pieces = generator.stream(ids, sampling)
    text = ""
    finish = "length"
    while True:
        piece = await asyncio.to_thread(next, pieces, None)
        if piece is None:
            break
        if not piece:
            continue
        cut, stopped = _apply_stop(text + piece, sampling.stop)
        if stopped:
            if len(cut) > len(text):
                yield chunk(cut[len(text) :], None)
            finish = "stop"
            break
        text += piece
        yield chunk(piece, None)
    yield chunk(None, finish)
    yield b"data: [DONE]\n\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="model or adapter directory")
    parser.add_argument("--base-model", type=Path, help="base model directory of an adapter")
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--device", default="auto", help="auto (GPU when visible), cpu, cuda")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    args = parser.parse_args(argv)

    import uvicorn

    generator = Generator(args.model, args.base_model, args.device, args.threads)
    replica = os.environ.get("SPARKTRAINER_JOB_ID", "local")
    app = build_app(generator, args.served_model_name, replica)
    # SIGTERM: uvicorn stops accepting, lets in-flight requests finish, then exits.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
