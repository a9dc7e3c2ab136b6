"""Run every benchmark: import each ``benchmarks/bench_*.py`` and call its ``main()``.

``python -m benchmarks`` runs them all with their defaults; ``python -m benchmarks optim solve``
runs only ``bench_optim`` and ``bench_solve``. Options after the names go to the one benchmark
named, through its ``cli(argv)``: ``python -m benchmarks optim --quick --only adam,sgd``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(only: list[str] | None = None, options: list[str] | None = None) -> None:
    found = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]))
    names = [n for n in found if n.startswith("bench_")]
    if only:
        unknown = sorted(set(only) - {n.removeprefix("bench_") for n in names})
        if unknown:
            valid = ", ".join(n.removeprefix("bench_") for n in names)
            print(f"benchmarks: unknown {', '.join(unknown)}; valid: {valid}", file=sys.stderr)
            sys.exit(2)
        names = [n for n in names if n.removeprefix("bench_") in only]
    modules = [importlib.import_module(f"benchmarks.{name}") for name in names]
    if options and (len(modules) != 1 or not hasattr(modules[0], "cli")):
        takes = ", ".join(n.removeprefix("bench_") for n, m in zip(names, modules, strict=True)
                          if hasattr(m, "cli"))  # fmt: skip
        print(f"benchmarks: options ({' '.join(options)}) need exactly one benchmark that takes "
              f"them ({takes})", file=sys.stderr)  # fmt: skip
        sys.exit(2)
    for name, module in zip(names, modules, strict=True):
        print(f"=== benchmarks.{name} ===", flush=True)
        if options:
            module.cli(options)
        else:
            module.main()


if __name__ == "__main__":
    argv = sys.argv[1:]
    first = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    main(argv[:first], argv[first:])
