"""Run every benchmark in bench/ (files named bench_*.py), or the ones named on the command line.

Each benchmark module has ``main() -> bool``: it measures gproc and a reference in the same run,
prints one line per figure with the ratio and its target, and returns whether every target held.
Benchmarks are never part of the test suite: timings belong here, not in assertions.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(HERE.parent))
    names = argv or sorted(p.stem for p in HERE.glob("bench_*.py"))
    ok = True
    for name in names:
        module = importlib.import_module(f"bench.{name.removesuffix('.py')}")
        print(f"## {module.__name__}: {(module.__doc__ or '').strip().splitlines()[0]}", flush=True)
        ok = module.main() and ok
        print(flush=True)
    print("all targets met" if ok else "SOME TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
