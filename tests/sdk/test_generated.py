"""What the SDKs derive from the server is current, and they call only routes it has.

Fails when ``sdk/openapi.json``, the generated Python models or the derived blocking
client are stale (run ``scripts/generate-sdks``), and when an SDK calls a route the
OpenAPI document lacks (in the manner of Prefect's ``test_client_routes.py``).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import sparktrainer

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sdk_generate", ROOT / "sdk" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


def test_committed_openapi_document_is_current() -> None:
    assert GEN.OPENAPI.read_text() == GEN.openapi_document(), "run scripts/generate-sdks"


def test_generated_python_models_are_current() -> None:
    assert GEN.PY_MODELS.read_text() == GEN.python_models(), "run scripts/generate-sdks"


def test_blocking_client_matches_the_async_source() -> None:
    expected = GEN.sync_sources()
    actual = {p.name: p.read_text() for p in sorted(GEN.SYNC_DIR.glob("*.py"))}
    assert actual == expected, "run scripts/generate-sdks"


def test_every_reference_in_the_openapi_document_resolves() -> None:
    # openapi-typescript refuses a document with a dangling $ref (the validator does not).
    text = GEN.OPENAPI.read_text()
    schemas = json.loads(text)["components"]["schemas"]
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', text))
    assert refs, "the scan found the references"
    assert refs - set(schemas) == set()


def _python_routes() -> set[tuple[str, str]]:
    """Every (method, route) literal passed to the transport in the SDK's async source."""
    routes: set[tuple[str, str]] = set()
    for path in GEN.ASYNC_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in {"request", "stream", "send_raw", "_get"}:
                continue
            literals = [a.value for a in node.args if isinstance(a, ast.Constant)]
            if node.func.attr == "_get":
                literals = ["GET", *literals]
            if len(literals) >= 2 and str(literals[1]).startswith("/"):
                routes.add((str(literals[0]), str(literals[1])))
    return routes


def test_every_route_the_python_sdk_calls_exists() -> None:
    document = json.loads(GEN.OPENAPI.read_text())
    known = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    called = _python_routes()
    assert len(called) >= 30  # the scan found the calls (it would pass vacuously otherwise)
    assert called - known == set()


def test_import_sparktrainer_stays_light() -> None:
    code = (
        "import sys, sparktrainer; "
        "heavy = {'httpx', 'pydantic', 'typer', 'rich'} & set(sys.modules); "
        "assert not heavy, heavy; "
        "from sparktrainer import SparkTrainerClient; assert 'httpx' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert callable(sparktrainer.log)
