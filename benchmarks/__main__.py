"""Run the benchmarks: `python -m benchmarks [name-substring ...]`; `python -m benchmarks --markdown` prints the
latest figures of every benchmark as the README's table (without running anything).

Each run writes `results/<module>.json` (with the time it ran) and rebuilds `results/latest.json` from every
module's newest results, so running one benchmark updates its figures and keeps the others'. Every benchmark's
figures end with the share of the machine's CPU time the hypervisor took while it ran (stolen: time no process
could use), which says how far its figures can be compared with another run's."""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from benchmarks import Figure, cpu_time_shares, machine_cpu
from localcloud.config import import_functions

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def stolen_figures(name: str, before: dict[str, float] | None, after: dict[str, float] | None) -> list[Figure]:
    shares = cpu_time_shares(before, after)
    if shares is None:  # not Linux (no /proc/stat)
        return []
    what = f"{name}: the machine's CPU time stolen while it ran"
    return [Figure(what, "%", round(shares["stolen"], 1), "the whole benchmark")]


def main(argv: list[str]) -> int:
    import_functions()  # the benchmarks import the functions' packages, as pytest's pythonpath lets the tests
    modules = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    selected = [m for m in modules if not argv or any(arg in m for arg in argv)]
    RESULTS.mkdir(exist_ok=True)
    figures: list[Figure] = []
    failed: list[str] = []
    for name in selected:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        environment = dict(os.environ)
        cpu_before = machine_cpu()
        try:
            result = importlib.import_module(f"benchmarks.{name}").run()
            result += stolen_figures(name, cpu_before, machine_cpu())
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            print(f"   FAILED: {type(exc).__name__}: {exc}", flush=True)
            failed.append(name)
            continue
        finally:  # what one benchmark sets (e.g. DATABASE_URL of its private server) must not reach the next
            os.environ.clear()
            os.environ.update(environment)
        document = {"machine": machine(), "when": now(), "figures": [f.as_dict() for f in result]}
        (RESULTS / f"{name}.json").write_text(json.dumps(document, indent=2))
        print(f"   {len(result)} figures in {time.monotonic() - started:.1f}s", flush=True)
        figures += result
    print_table(figures)
    modules = recorded_modules() | {path.stem: newest(path) for path in sorted(RESULTS.glob("bench_*.json"))}
    (RESULTS / "latest.json").write_text(json.dumps({"machine": machine(), "modules": modules}, indent=2))
    print(f"\nwritten: {RESULTS / 'latest.json'} (the newest figures of every benchmark)")
    return 1 if failed else 0


def now(epoch: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def recorded_modules() -> dict:
    """The figures latest.json holds (it is tracked; the per-module files are not): in a fresh clone a module
    not run again keeps the figures it had instead of dropping out of the table."""
    latest = RESULTS / "latest.json"
    return json.loads(latest.read_text())["modules"] if latest.exists() else {}


def newest(path: Path) -> dict:
    """One module's results, with when they were measured (results written before "when" was kept: the
    file's modification time)."""
    document = json.loads(path.read_text())
    return {"when": now(path.stat().st_mtime), **document}


def markdown() -> int:
    """The README table: every benchmark's newest figures, with when they were measured."""
    modules = json.loads((RESULTS / "latest.json").read_text())["modules"]
    print("| benchmark | result | data volume | goal | |")
    print("|---|---|---|---|---|")
    for document in modules.values():
        for f in document["figures"]:
            met = {True: "met", False: "**missed**", None: ""}[f["met"]]
            print(f"| {f['benchmark']} | {f['value']:,.2f} {f['metric']} | {f['volume']} | {f['goal']} | {met} |")
    when = sorted({document.get("when", "?") for document in modules.values()})
    host = json.loads((RESULTS / "latest.json").read_text())["machine"]
    print(f"\nMeasured {when[0]} to {when[-1]}: {host['cpus']} CPUs, Python {host['python']}, {host['platform']}.")
    return 0


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
    sys.exit(markdown() if sys.argv[1:] == ["--markdown"] else main(sys.argv[1:]))
