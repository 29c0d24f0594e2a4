"""Run the benchmarks: `python -m benchmarks [name-substring ...]`."""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from benchmarks import Figure

RESULTS = Path(__file__).parent / "results"
# functions/ is the functions' code root, as in a Lambda zip (pytest sets the same path for the tests).
FUNCTIONS_DIR = Path(__file__).resolve().parent.parent / "functions"


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def main(argv: list[str]) -> int:
    if str(FUNCTIONS_DIR) not in sys.path:
        sys.path.insert(0, str(FUNCTIONS_DIR))
    modules = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    selected = [m for m in modules if not argv or any(arg in m for arg in argv)]
    RESULTS.mkdir(exist_ok=True)
    figures: list[Figure] = []
    failed: list[str] = []
    for name in selected:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        try:
            result = importlib.import_module(f"benchmarks.{name}").run()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            print(f"   FAILED: {type(exc).__name__}: {exc}", flush=True)
            failed.append(name)
            continue
        (RESULTS / f"{name}.json").write_text(
            json.dumps({"machine": machine(), "figures": [f.as_dict() for f in result]}, indent=2)
        )
        print(f"   {len(result)} figures in {time.monotonic() - started:.1f}s", flush=True)
        figures += result
    print_table(figures)
    latest = {"machine": machine(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (RESULTS / "latest.json").write_text(json.dumps({**latest, "figures": [f.as_dict() for f in figures]}, indent=2))
    print(f"\nwritten: {RESULTS / 'latest.json'}")
    return 1 if failed else 0


def print_table(figures: list[Figure]) -> None:
    rows = [
        (
            f.benchmark,
            f"{f.value:,.2f} {f.metric}",
            f.volume,
            f.goal,
            {True: "met", False: "MISSED", None: ""}[f.met],
        )
        for f in figures
    ]
    header = ("benchmark", "result", "volume", "goal", "")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
