"""Run every benchmark: import each ``benchmarks/bench_*.py`` and call its ``main()``.

``python -m benchmarks`` runs them all with their defaults; ``python -m benchmarks optim solve``
runs only ``bench_optim`` and ``bench_solve``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(only: list[str] | None = None) -> None:
    found = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]))
    names = [n for n in found if n.startswith("bench_")]
    if only:
        unknown = sorted(set(only) - {n.removeprefix("bench_") for n in names})
        if unknown:
            valid = ", ".join(n.removeprefix("bench_") for n in names)
            print(f"benchmarks: unknown {', '.join(unknown)}; valid: {valid}", file=sys.stderr)
            sys.exit(2)
        names = [n for n in names if n.removeprefix("bench_") in only]
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"=== benchmarks.{name} ===", flush=True)
        module.main()


if __name__ == "__main__":
    main(sys.argv[1:])
