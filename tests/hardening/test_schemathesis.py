"""schemathesis over the whole OpenAPI document, against a live server, on both backends.

The checks are the ones ``--checks all`` names for responses: no 5xx, only documented
status codes, content types, headers and bodies that match the document. A failure is
fixed in the server (or in what the document says it does), never by loosening a check.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.hardening.conftest import StartServer

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)
# Streams never end while their job runs: a request to one would only time out.
STREAMING = r"(/stream$|^/ws/)"


def test_schemathesis_finds_nothing(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server(
        # Fuzzed commands are never run: the fake executor only records them.
        SPARKTRAINER_EXECUTOR="fake",
        # The fuzzer sends far more than a person would; 429s would hide everything else.
        SPARKTRAINER_RATE_LIMIT_PREMIUM_PER_MINUTE="1000000",
    )
    token = server.login()["Authorization"]
    config = tmp_path / "schemathesis.toml"
    # Requests with methods a path does not have test only the unsupported_method check,
    # which is not among ours; they would double the run's length.
    config.write_text("[phases.coverage]\nunexpected-methods = []\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config),
            "run",
            f"{server.base}/openapi.json",
            "--header",
            f"Authorization: {token}",
            "--checks",
            ",".join(CHECKS),
            "--phases",
            "coverage,fuzzing",
            "--max-examples",
            "3",
            # One worker: with several threads, hypothesis' lambda descriptions call
            # ast.parse concurrently, which CPython 3.11 can fail with "SystemError: AST
            # constructor recursion depth mismatch" (a crash of the tool, not a finding).
            "--workers",
            "1",
            "--exclude-path-regex",
            STREAMING,
            "--seed",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-20_000:] + result.stderr[-5_000:]
