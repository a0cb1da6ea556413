"""Runs benchmarks: ``python -m bench.run [NAME ...]`` (all of them when none is named).

A benchmark is any module ``bench/<name>.py`` (not starting with ``_``) that defines

    DESCRIPTION: str
    def run(args: argparse.Namespace) -> list[bench._common.Result]: ...
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...   # optional

The figures are printed as a table and saved as JSON under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # ``python bench/run.py``: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import Result, format_table
from bench._loadgen import GENERATORS

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


@dataclass(frozen=True, slots=True)
class Benchmark:
    name: str
    description: str
    run: Callable[[argparse.Namespace], list[Result]]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None


def discover() -> dict[str, Benchmark]:
    found: dict[str, Benchmark] = {}
    for info in sorted(pkgutil.iter_modules([str(BENCH_DIR)]), key=lambda m: m.name):
        if info.ispkg or info.name.startswith("_") or info.name == "run":
            continue
        try:
            module = importlib.import_module(f"bench.{info.name}")
        except Exception as exc:
            # One broken module must not take the others down with it.
            print(f"warning: bench/{info.name}.py skipped: {exc!r}", file=sys.stderr)
            continue
        run = getattr(module, "run", None)
        if not callable(run):
            continue
        found[info.name] = Benchmark(
            name=info.name,
            description=str(getattr(module, "DESCRIPTION", "")),
            run=run,
            add_arguments=getattr(module, "add_arguments", None),
        )
    return found


def build_parser(benchmarks: dict[str, Benchmark]) -> argparse.ArgumentParser:
    listing = "\n".join(f"  {b.name:<16} {b.description}" for b in benchmarks.values())
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Run SparkTrainer benchmarks.",
        epilog=f"benchmarks:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per case")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per case")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument(
        "--generator",
        choices=GENERATORS,
        default="auto",
        help="load generator (auto: wrk if found)",
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk -t (default 1)")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="before each measured case, wait up to this many seconds for other processes "
        "to leave the CPUs idle (0: do not wait; default 60)",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/*.json")
    for benchmark in benchmarks.values():
        if benchmark.add_arguments is not None:
            benchmark.add_arguments(parser)
    return parser


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def save(results: list[Result], names: list[str], args: argparse.Namespace) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    now = datetime.now(UTC)
    path = RESULTS_DIR / f"{now:%Y%m%dT%H%M%SZ}-{'+'.join(names)}.json"
    document = {
        "created_at": now.isoformat(),
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "argv": sys.argv[1:],
        "options": {k: v for k, v in vars(args).items() if k not in {"names", "list"}},
        "results": [r.to_json() for r in results],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    benchmarks = discover()
    parser = build_parser(benchmarks)
    args = parser.parse_args(argv)
    if args.list:
        for b in benchmarks.values():
            print(f"{b.name:<16} {b.description}")
        return 0
    names = args.names or list(benchmarks)
    unknown = [n for n in names if n not in benchmarks]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(benchmarks)}")

    results: list[Result] = []
    failed: list[str] = []
    for name in names:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        try:
            results += benchmarks[name].run(args)
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"== {name} done in {time.monotonic() - started:.1f}s\n", flush=True)

    if results:
        print(format_table(results))
        if not args.no_save:
            print(f"\nsaved {save(results, names, args).relative_to(BENCH_DIR.parent)}")
    if failed:
        print(f"\nFAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
